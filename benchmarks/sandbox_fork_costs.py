"""CPU per forked job child, by what the forking process holds: run by bench_sandbox.py.

    python -P benchmarks/sandbox_fork_costs.py executor|template < state.json

Reads the slot state (slot_setup.prepare's answer, the slot's uid and a trivial executor job) as
JSON on stdin and prints JSON: CPU ms (parent + child, fork to reap) per child that installs the
layers cumulatively and then runs `x = 1`, and per child that runs the whole trivial job through the
harness. ``executor`` forks from a process that imported the executor module, as a slot does;
``template`` from one that imported only the layers and the harness (what a template process forked
per job would hold), so the two rows say what a smaller forking process would save. A separate
script, not a function of bench_sandbox.py, so that the benchmark's own imports (httpx, pydantic)
are not in the forking process.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    state = json.load(sys.stdin)
    if sys.argv[1] == "executor":
        from diffucoder.sandbox import executor  # noqa: F401 - mapped into every fork, as in a slot
    from diffucoder.sandbox import harness, isolation

    seccomp = isolation.CompiledSeccomp(bytes.fromhex(state["prepared"]["seccomp_program"]))
    read_paths, uid, job = state["prepared"]["read_paths"], state["uid"], state["job"]
    # as a slot: the runtime's read rules are prepared once, each child adds its own paths
    landlock = isolation.LandlockRules(read_paths) if state["prepared"]["landlock"] else None
    limits = isolation.Limits(memory_mb=1024, cpu_seconds=10, file_mb=16, open_files=64, processes=32)
    steps = {
        "fork_only": [],
        "+rlimits": [lambda: isolation.apply_rlimits(limits)],
        "+uid_drop": [lambda: isolation.drop_privileges(uid)] if uid is not None else [],
        "+seccomp": [isolation.set_no_new_privs, seccomp.load],
        "+landlock": [
            lambda: landlock.restrict(writable=["/tmp", "/dev/null"], readable=[f"/proc/{os.getpid()}"])
        ]
        if landlock
        else [],
    }

    def cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def per_child(actions, body, n: int = 300) -> float:
        before = cpu()
        for _ in range(n):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                for action in actions:
                    action()
                body(write_end)
                os._exit(0)
            os.close(write_end)
            os.waitpid(pid, 0)
            os.close(read_end)
        return round(1000 * (cpu() - before) / n, 3)

    out, applied = {}, []
    for name, actions in steps.items():
        applied += actions
        out[name] = per_child(applied, lambda fd: exec("x = 1"))
    out["+trivial_job_in_harness"] = per_child(applied, lambda fd: harness.run(dict(job), 0, fd))
    with open("/proc/self/maps") as maps:
        out["mappings"] = len(maps.readlines())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
