"""The warm fork server: one per slot, forks an isolated child per job and supervises it.

Runs as ``python -m diffucoder.sandbox.executor SLOT`` (optionally inside bubblewrap), reads jobs
and writes raw outcomes as length-prefixed JSON on stdin/stdout. It is trusted code: it never runs
the solution itself, only forks children that drop privileges, install every layer and then run
harness.run. Why a fork server: a fork of this already-warm interpreter with every layer costs a few ms
of CPU, a fraction of a fresh interpreter's start (docs/sandbox.md, "What a job costs"); the less this
process has mapped, the less each fork copies, so it imports little beyond what a job needs and
prepares the slot (libseccomp, the layout checks) in a short-lived child of its own. Why a fresh
fork per job rather than one reused process: nothing of one job (files, environment, threads,
imported modules, leftover processes) can reach the next.

Per-test verdicts survive crashes: if the child dies or hangs in test i, test i gets its verdict and
a fresh child resumes at i+1 (the solution is re-executed), so one slow test costs one test.
"""

from __future__ import annotations

import gc
import json
import os
import select
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from diffucoder.sandbox import framing, harness, isolation, process_budget
from diffucoder.sandbox.codec import decode

GRACE_S = 0.5  # the in-child timer fires first; this is for code that blocks SIGALRM


# --- output capture ------------------------------------------------------------------------------


@dataclass
class CappedBuffer:
    """Keeps the first ``limit`` bytes and counts the rest; reading continues so the writer never stalls."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[: max(room, 0)]
        self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        note = f"\n[... {self.dropped} more bytes dropped]" if self.dropped else ""
        return self.data.decode("utf-8", "replace") + note


# --- process tree --------------------------------------------------------------------------------


def _parent_map() -> dict[int, int]:
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(name)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    parents = _parent_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def kill_descendants() -> int:
    """SIGKILL every process below this executor and reap them; returns how many were killed.

    As child subreaper we adopt orphans, so daemonised grandchildren stay in our tree. We repeat
    until a scan finds nothing, which also catches processes forked while we were killing.
    """
    killed = 0
    for _ in range(1000):
        _reap()
        if not _has_children():
            # every survivor would descend from one of our children (orphans are re-parented to us),
            # so with no children left there is nothing to kill and no need to scan /proc
            return killed
        pids = descendants(os.getpid())
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.001)
    raise isolation.IsolationError("could not kill the job's processes after 1000 rounds")


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# --- one job -------------------------------------------------------------------------------------


class InputsCache:
    """Decoded io inputs kept for the next jobs of the same tier, as the server's record of this slot
    says (pool.SlotInputs). The children inherit them through the fork: no job decodes its inputs."""

    def __init__(self) -> None:
        self.held: dict[str, list[Any]] = {}

    def expand(self, job: dict[str, Any]) -> dict[str, Any]:
        """An io job with its probes and decoded inputs (other jobs as they are)."""
        io = job.pop("io", None)
        if io is None:
            return job
        ref = io["inputs"]
        inputs = [decode(x) for x in io["encoded"]] if "encoded" in io else self.held.get(ref)
        kept = {r: self.held[r] for r in io["hold"] if r in self.held}
        if inputs is not None and ref in io["hold"]:
            kept[ref] = inputs
        self.held = kept
        if inputs is None:
            raise LookupError(f"this slot does not hold the inputs of tier {ref[:12]}")
        job["probes"] = [{"source": io["call"], "mode": "call", "input": i} for i in range(io["count"])]
        job["decoded_inputs"] = inputs
        return job


class Slot:
    """Per-slot state prepared once: uid, seccomp program, landlock rules, job dir root."""

    def __init__(self, index: int, uid_base: int):
        self.index = index
        self.inputs = InputsCache()
        self.is_root = os.geteuid() == 0
        self.uid = uid_base + index if self.is_root else None
        self.server_pid = os.getppid()
        prepared = _prepare_in_child(uid=self.uid, executor_pid=os.getpid(), server_pid=self.server_pid)
        self.seccomp = isolation.CompiledSeccomp(bytes.fromhex(prepared["seccomp_program"]))
        # the runtime's read rules, opened once for every job child (None: a kernel without landlock)
        self.landlock = isolation.LandlockRules(prepared["read_paths"]) if prepared["landlock"] else None
        self.tmp_root = str(prepared["tmp_root"])
        self.problems = list(prepared["problems"])
        self.seccomp_inherited = False
        isolation.set_child_subreaper()

    def confine(self) -> None:
        """Install the seccomp program in the executor itself, once, so that every job child
        inherits it through the fork (a filter can never be removed) instead of handing it to the
        kernel again, which compiles it (BPF JIT) for each child. The executor needs nothing the
        program denies: it forks, pipes, waits, and signals only the processes of its jobs."""
        isolation.set_no_new_privs()
        self.seccomp.load()
        self.seccomp_inherited = True

    def layers(self) -> dict[str, bool]:
        return {
            "unprivileged_uid": self.uid is not None or os.geteuid() != 0,
            "rlimits": True,
            "nproc_binds": self.uid is not None or os.geteuid() != 0,
            "seccomp_no_network": True,
            "landlock_fs": self.landlock is not None,
            "subreaper": True,
            "empty_env": True,
            "private_tmp": True,
            "runtime_readable": not self.problems,
        }


# the environment of every job, besides HOME and TMPDIR (its job dir)
JOB_ENV = {
    "HOME": "/",
    "TMPDIR": "/tmp",
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    # OpenBLAS reserves memory per thread and fails under RLIMIT_AS otherwise
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def use_job_environment() -> None:
    """Replace this process's environment by the jobs' one. The executor does it once, after its
    slot is prepared (it needs nothing of its own environment afterwards), so that each child only
    sets its job dir."""
    os.environ.clear()
    os.environ.update(JOB_ENV)


def _prepare_in_child(**kwargs: Any) -> dict[str, Any]:
    """slot_setup.prepare, run in a forked child that sends its answer back and exits: what it
    imports (libseccomp, subprocess, pathlib...) stays out of this process, which each job's fork
    copies. Raises IsolationError naming what failed."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            from diffucoder.sandbox import slot_setup

            framing.write(write_end, {"prepared": slot_setup.prepare(**kwargs)})
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the executor, named
            framing.write(write_end, {"error": str(exc) or repr(exc)})
        os._exit(0)
    os.close(write_end)
    try:
        answer = framing.read(read_end) or {"error": "the slot's preparation ended without an answer"}
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    if "error" in answer:
        raise isolation.IsolationError(answer["error"])
    return answer["prepared"]


def _child(slot: Slot, job: dict, tmp: str, fds: list[int], out_w: int, err_w: int, body) -> None:
    """In a forked child: install every layer, then run ``body()``. Never returns.

    ``fds`` become descriptors 3, 4, ... in order (the harness's pipes); every other descriptor is
    closed, so a child holds only the pipes it was given."""
    try:
        os.setsid()
        processes = int(job["max_processes"])
        if slot.uid is None:  # the code keeps the server's uid: its budget counts from what the uid holds
            processes = process_budget.shared_uid_limit(budget=processes, server_pid=slot.server_pid)
        if slot.landlock:
            # before the descriptors are rearranged: the slot's rules hold descriptors of the runtime's
            # paths, which that closes (the scan of /proc above is the last read outside them)
            slot.landlock.restrict(writable=[tmp, "/dev/null"], readable=[f"/proc/{os.getpid()}"])
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        moved = [os.dup(fd) for fd in fds]  # out of the way first: a source may sit on a target number
        for target, fd in enumerate(moved, start=3):
            os.dup2(fd, target, inheritable=False)
        os.closerange(3 + len(fds), 65536)
        os.chdir(tmp)
        if os.environ.keys() != JOB_ENV.keys():  # main() gave the executor this environment already
            use_job_environment()
        os.environ["HOME"] = os.environ["TMPDIR"] = tmp
        isolation.apply_rlimits(
            isolation.Limits(
                memory_mb=int(job["memory_mb"]),
                cpu_seconds=int(job["total_time_limit_s"]) + 1,
                file_mb=int(job["max_file_mb"]),
                open_files=int(job["max_open_files"]),
                processes=processes,
            )
        )
        if slot.uid is not None:
            isolation.drop_privileges(slot.uid)
        isolation.set_no_new_privs()
        if not slot.seccomp_inherited:
            slot.seccomp.load()
        os.write(3, b'{"event": "isolated"}\n')  # before any untrusted code: it cannot unsend this
    except BaseException as exc:  # noqa: BLE001 - report, never run the code half-isolated
        os.write(2, f"sandbox isolation failed: {exc!r}\n".encode())
        os._exit(121)
    body()
    os._exit(0)


def run_job(slot: Slot, job: dict) -> dict:
    """Run a job; returns raw per-probe outcomes (judge.py in the server turns them into verdicts)."""
    n = len(job["probes"])
    outcomes: list[dict | None] = [None] * n
    out = CappedBuffer(int(job["max_output_bytes"]))
    err = CappedBuffer(int(job["max_output_bytes"]))
    began = time.monotonic()
    total_deadline = began + float(job["total_time_limit_s"])
    stop_on_failure = bool(job.get("stop_on_failure"))
    program: dict[str, Any] = {"status": "ok"}
    tmp = _make_job_dir(slot)
    try:
        start = 0
        while True:
            events, fate = _attempt(slot, job, start, tmp, out, err, total_deadline)
            if _not_isolated(events, fate):
                return {
                    "infra_error": "the sandbox child could not install its isolation layers: "
                    + err.text()[-500:]
                }
            loaded, failure = _record(events, start, outcomes)
            if failure is not None and failure["status"] == "syntax_error":
                return _finish([{"status": "syntax_error"}] * n, failure, out, err, began)
            wall = fate == "wall"
            # a child that ended without reporting a test never passed it, whatever its exit status
            fate = "timeout" if wall else ("crashed" if fate == "ok" else fate)
            if not loaded:
                # the solution failed or exited before its tests: every remaining test shares that fate
                program = (failure if failure and not wall else None) or {
                    "status": fate,
                    "error": f"the program ended before its tests ran ({fate})",
                }
                for i in range(start, n):
                    outcomes[i] = outcomes[i] or {
                        "status": program["status"],
                        "error": program["error"],
                        "wall": wall,
                    }
                break
            pending = [i for i in range(start, n) if outcomes[i] is None]
            failed = [i for i in range(start, n) if outcomes[i] and outcomes[i]["status"] != "ok"]
            if stop_on_failure and failed and (not pending or failed[0] < pending[0]):
                _skip(outcomes, failed[0] + 1)
                break
            if not pending:
                break
            if any(ev.get("event") == "restart" for ev in events) and not wall:
                start = pending[0]  # the tester stopped after a timeout: fresh processes go on
                if time.monotonic() < total_deadline:
                    continue
            outcomes[pending[0]] = {
                "status": fate,
                "error": f"the child ended during this test ({'job wall-clock limit' if wall else fate})",
                "wall": wall,
            }
            start = pending[0] + 1
            if stop_on_failure:
                _skip(outcomes, start)
                break
            if start < n and time.monotonic() >= total_deadline:
                for i in range(start, n):
                    outcomes[i] = {"status": "timeout", "error": "job wall-clock limit reached", "wall": True}
            if start >= n or time.monotonic() >= total_deadline:
                break
        return _finish(outcomes, program, out, err, began)
    except BaseException:
        kill_descendants()  # each attempt already cleans up after itself; this covers our own failures
        raise
    finally:
        try:
            os.rmdir(tmp)  # most jobs leave their directory empty: one syscall instead of a tree walk
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)


def _make_job_dir(slot: Slot) -> str:
    """A fresh 0700 directory for one job, owned by the code's uid, under a random name (what
    tempfile.mkdtemp does; that module stays out of the fork server)."""
    tmp = os.path.join(slot.tmp_root, f"job-{os.urandom(8).hex()}")
    os.mkdir(tmp, 0o700)
    if slot.uid is not None:
        os.chown(tmp, slot.uid, slot.uid)
    os.chmod(tmp, 0o700)  # whatever the umask took away
    return tmp


def _not_isolated(events: list[dict], fate: str) -> bool:
    """Whether a process of the attempt never installed its isolation layers: the child (or a tester
    job's tester) exited with the isolation failure's code before reporting "isolated", or the tester
    saw its solution process end without the line the solution's isolated child writes first."""
    if fate == "infra" and not any(ev.get("event") == "isolated" for ev in events):
        return True
    return any(ev.get("event") == "solution_not_isolated" for ev in events)


def _skip(outcomes: list[dict | None], start: int) -> None:
    """Tests after the first failure of a stop-on-failure job: never run, never passed."""
    for i in range(start, len(outcomes)):
        outcomes[i] = {"status": "skipped", "error": "not run: an earlier test failed"}


def _record(events: list[dict], start: int, outcomes: list[dict | None]) -> tuple[bool, dict | None]:
    """Store the child's per-test results; returns (solution loaded, load failure or syntax error)."""
    loaded, failure = False, None
    for ev in events:
        kind = ev.get("event")
        if kind == "syntax_error":
            return False, {"status": "syntax_error", "error": str(ev.get("error"))[:500]}
        if kind == "load_failed":
            failure = {"status": str(ev.get("status")), "error": str(ev.get("error"))[:500]}
        elif kind == "loaded":
            loaded = True
        elif (
            kind == "result"
            and loaded
            and type(ev.get("index")) is int
            and start <= ev["index"] < len(outcomes)
        ):
            # (the harness reports results only after "loaded": earlier ones were written by the code)
            outcomes[ev["index"]] = {k: ev.get(k) for k in ("status", "value", "error", "seconds")}
            outcomes[ev["index"]]["wall"] = False
    return loaded, failure


def _finish(outcomes, program, out, err, began) -> dict:
    return {
        "outcomes": outcomes,
        "program": program,
        "stdout": out.text(),
        "stderr": err.text(),
        "duration_s": time.monotonic() - began,
    }


def _attempt(slot, job, start, tmp, out, err, total_deadline) -> tuple[list[dict], str]:
    """One child from test ``start`` on; returns its events and how it ended
    ("ok" | "timeout" | "wall" (the job's wall-clock limit) | "memory" | "crashed")."""
    channel_r, channel_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    child_ends = [channel_w, out_w, err_w]
    if job.get("tester"):
        # the solution answers requests on its own pipe pair; only the tester holds the channel
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        child_ends += [request_r, request_w, reply_r, reply_w]
        solution = os.fork()
        if solution == 0:
            _child(
                slot, job, tmp, [reply_w, request_r], out_w, err_w, lambda: harness.serve_solution(job, 4, 3)
            )
        pid = os.fork()
        if pid == 0:
            body = lambda: harness.run_tester(job, start, 3, 5, 4)  # noqa: E731
            _child(slot, job, tmp, [channel_w, request_w, reply_r], out_w, err_w, body)
    else:
        pid = os.fork()
        if pid == 0:
            _child(slot, job, tmp, [channel_w], out_w, err_w, lambda: harness.run(job, start, 3))
    for fd in child_ends:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    events: list[dict] = []
    partial = b""
    limits = [float(t) for t in job["time_limits_s"]]
    next_test = start  # the probe the child runs next, once it has loaded the program
    loaded = False

    def limit_now() -> float:
        if not loaded:
            return float(job["load_time_limit_s"]) + GRACE_S
        return limits[min(next_test, len(limits) - 1)] + GRACE_S if limits else GRACE_S

    max_events = 3 * len(job["probes"]) + 8  # per probe at most "returned" and "result", plus slack
    test_deadline = time.monotonic() + limit_now()
    fate = "ok"
    streams = {channel_r: None, out_r: out, err_r: err}
    exited = False
    status: int | None = None
    try:
        while not exited and fate == "ok":  # fate changes when the code floods the channel
            now = time.monotonic()
            deadline = min(test_deadline, total_deadline)
            if now >= deadline:
                fate = "wall" if total_deadline <= test_deadline else "timeout"
                break
            ready, _, _ = select.select([*streams, pidfd], [], [], deadline - now)
            for fd in ready:
                if fd == pidfd:
                    exited = True
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    del streams[fd]
                elif fd == channel_r:
                    partial += chunk
                    *lines, partial = partial.split(b"\n")
                    for line in lines:
                        event = _parse_event(line)
                        events.append(event)
                        if event.get("event") == "loaded":
                            loaded = True
                        elif event.get("event") == "result" and type(event.get("index")) is int:
                            next_test = max(next_test, event["index"] + 1)
                        test_deadline = time.monotonic() + limit_now()
                        if event.get("event") == "returned" and event.get("index") == next_test:
                            # the call returned within its limit; encoding and sending a large output
                            # run on the tier's wall clock (EvalPlus times only the call)
                            test_deadline = total_deadline
                    # the harness writes at most a few lines per test; more is the code flooding fd 3
                    if len(partial) > 64 * 1024 * 1024 or len(events) > max_events:
                        fate = "crashed"
                        break
                else:
                    streams[fd].feed(chunk)
        if exited:
            _, status = os.waitpid(pid, 0)
        # the child is gone or out of time: kill it and everything it started, then drain what is left
        kill_descendants()
        for fd, sink in list(streams.items()):
            while select.select([fd], [], [], 0.05)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                if sink is None:
                    partial += chunk
                else:
                    sink.feed(chunk)
        if partial:
            events.extend(_parse_event(line) for line in partial.split(b"\n") if line)
        if fate == "ok" and status is not None:
            fate = _fate_of(status)
        return events, fate
    finally:
        for fd in (channel_r, out_r, err_r, pidfd):
            os.close(fd)


def _fate_of(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "timeout" if sig in (signal.SIGXCPU, signal.SIGKILL) else "crashed"
    code = os.WEXITSTATUS(status)
    return "ok" if code == 0 else ("crashed" if code != 121 else "infra")


def _parse_event(line: bytes) -> dict:
    try:
        ev = json.loads(line)
    except ValueError:
        return {"event": "garbage"}
    return ev if isinstance(ev, dict) else {"event": "garbage"}


def main() -> None:
    # stdout is the protocol channel; anything printed by accident must not corrupt it
    proto_out = os.dup(1)
    os.dup2(2, 1)
    try:
        slot = Slot(int(sys.argv[1]), int(sys.argv[2]))
        use_job_environment()
        slot.confine()
    except (OSError, isolation.IsolationError) as exc:
        framing.write(proto_out, {"ready": False, "error": str(exc)})
        return
    # the objects of the start-up are never collected: a collection would write to each of them
    # after every fork, copying those pages in the executor and the job alike
    gc.freeze()
    hello = {"ready": True, "layers": slot.layers(), "problems": slot.problems, "pid": os.getpid()}
    framing.write(proto_out, hello)
    while True:
        job = framing.read(0)
        if job is None:  # the server closed the pipe: it stopped, or died
            # the job dir root is this executor's alone (its pid in the name) and each job removed
            # its own dir: without this, every slot of every server left one behind in TMPDIR
            shutil.rmtree(slot.tmp_root, ignore_errors=True)
            return
        try:
            result = run_job(slot, slot.inputs.expand(job))
        except Exception as exc:  # noqa: BLE001 - reported as an infrastructure error, never a verdict
            result = {"infra_error": f"executor failed: {exc!r}"}
        framing.write(proto_out, dict(result, seq=job.get("seq")))


if __name__ == "__main__":
    main()
