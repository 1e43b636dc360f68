"""Sandbox throughput and latency against the one-subprocess-per-assert baseline (open-r1's local path).

Prints JSON. Workloads: (a) a trivial program with one assert, (b) HumanEval+ canonical solutions
with their base inputs (io jobs); one job per request (from 4 threads, each on its own kept-alive
httpx connection, and, for (a), through one ``SandboxClient`` the 4 threads share) and batches of 64.
Baselines, measured in the same run: `python -c "<code>\\n<assert>"`
per test with a 5 s timeout, on as many parallel workers as the server has slots, with two
interpreters (``BASELINES``): this checkout's venv (what a naive evaluator here spawns: its start runs
the editable install's import finder) and a venv of the same CPython with nothing installed (a fresh
interpreter per program, ``site`` and all, without any project's start-up cost); ``-S`` on the latter
(no ``site`` at all) is printed as a lower bound no real evaluator uses. Also: the cost of
each isolation layer of a fork-server child, as layers are added one by one, forked from a process
like an executor slot and from one that holds only the layers and the harness (sandbox_fork_costs.py).

    .venv/bin/python benchmarks/bench_sandbox.py [--tasks 40] [--trivial 300]
    .venv/bin/python benchmarks/bench_sandbox.py --image localhost/diffucoder/diffucoder-sandbox:0.1.0 [--rounds 2]

``--image``: the service workloads only, against the sandbox image run with its pod's security
context (non-root, read-only root, no capabilities, default seccomp; diffucoder.k8s.pod_run) with
the host's worker count, and against the host server, both up at once and driven in alternating
rounds (``--rounds``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import httpx
from machine import cpu_info

from diffucoder import benchmark_data
from diffucoder.sandbox import executor, judge, layout, slot_setup
from diffucoder.sandbox.client import Job, SandboxClient
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import local_sandbox
from diffucoder.sandbox.protocol import RunRequest

DATA = Path(benchmark_data.shipped_root()) / benchmark_data.HUMANEVAL_PLUS


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(latencies: list[float], wall: float, n: int) -> dict:
    return {
        "jobs": n,
        "executions_per_s": round(n / wall, 1),
        "p50_ms": round(1000 * pct(latencies, 0.5), 2),
        "p99_ms": round(1000 * pct(latencies, 0.99), 2),
    }


def run_service(url: str, jobs: list[Job], parallel: int) -> dict:
    """Concurrent single-job requests on persistent connections: latency as a trainer sees it."""
    payloads = [{"jobs": [j.payload()]} for j in jobs]
    latencies: list[float] = []

    def worker(chunk):
        with httpx.Client(timeout=60) as http:
            for body in chunk:
                t = time.perf_counter()
                r = http.post(f"{url}/v1/run_batch", json=body).json()["results"][0]
                assert r["infra_error"] is None and "passed" in r["verdicts"], r
                latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(worker, [payloads[i::parallel] for i in range(parallel)]))
    return summary(latencies, time.perf_counter() - started, len(jobs))


def closing(client: SandboxClient) -> contextlib.AbstractContextManager[SandboxClient]:
    """``client``, closed at the end of the block; a client that keeps no connection has no
    ``close`` (this package before keep-alive), which this script still drives for a same-run
    comparison (``PYTHONPATH=<other tree>/src``)."""
    return contextlib.closing(client) if hasattr(client, "close") else contextlib.nullcontext(client)


def server_health(url: str) -> dict:
    with closing(SandboxClient(url)) as client:
        return client.health()


def run_sandboxclient(url: str, jobs: list[Job], parallel: int) -> dict:
    """One-job ``SandboxClient.run`` calls from ``parallel`` threads sharing one client: the
    product path of a caller that scores one program at a time."""
    latencies: list[float] = []
    with closing(SandboxClient(url)) as client:

        def worker(chunk: list[Job]) -> None:
            for job in chunk:
                t = time.perf_counter()
                assert client.run(job).passed == 1
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(worker, [jobs[i::parallel] for i in range(parallel)]))
        wall = time.perf_counter() - started
    return summary(latencies, wall, len(jobs))


def run_batched(url: str, jobs: list[Job], batch: int) -> dict:
    """Throughput as the trainer sends work: run_batch requests of ``batch`` jobs (latency per request)."""
    with closing(SandboxClient(url, SandboxConfig(batch_size=batch, max_concurrent_requests=2))) as client:
        started = time.perf_counter()
        results = client.run_batch(jobs)
        wall = time.perf_counter() - started
    assert all(r.infra_error is None and "passed" in r.verdicts for r in results)
    return {"jobs": len(jobs), "batch": batch, "executions_per_s": round(len(jobs) / wall, 1)}


def is_executor(pid: int) -> bool:
    """A Python process running the executor (bubblewrap's command line names it too)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"diffucoder.sandbox.executor" in argv and not argv[0].endswith(b"bwrap")


def executors(slots: list[int]) -> list[int]:
    """The executor of each slot (below bubblewrap's processes, if any), not its job children."""
    table = executor._parent_map()
    found = []
    for pid, ppid in table.items():
        ancestor = ppid
        while ancestor and ancestor not in slots:
            ancestor = table.get(ancestor, 0)
        # the job children run the executor's code too: only the one whose parent is not one counts
        if (ancestor or pid in slots) and is_executor(pid) and not is_executor(ppid):
            found.append(pid)
    return found


def _stat(pid: int) -> list[int]:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return [int(x) for x in raw[raw.rfind(b")") + 2 :].split()[1:20]]


def _cpu_s(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of ``pid``."""
    fields = [x / os.sysconf("SC_CLK_TCK") for x in _stat(pid)[10:14]]
    return fields[0] + fields[1], fields[2] + fields[3]


def _minor_faults(pid: int) -> tuple[int, int]:
    """(own, reaped children's) minor page faults of ``pid``: after a fork, each page the parent or
    the child writes first is copied (or at least re-mapped) in a fault."""
    fields = _stat(pid)
    return fields[6], fields[7]


def tree_cpu_s(root: int) -> float:
    """CPU seconds used by ``root`` and every process below it, reaped children included. On a shared
    machine wall-clock rates move with other people's load; CPU per job does not."""
    total = 0.0
    for pid in [root, *executor.descendants(root)]:
        try:
            total += sum(_cpu_s(pid))
        except OSError:
            continue  # exited since the scan
    return total


def service_cpu_ms_per_job(url: str, jobs: list[Job]) -> float:
    slot_pid = server_health(url)["slot_pids"][0]
    with open(f"/proc/{slot_pid}/stat") as f:
        server = int(f.read().split(") ")[1].split()[1])  # the slot's parent is the server
    before = tree_cpu_s(server)
    run_batched(url, jobs, 64)
    return round(1000 * (tree_cpu_s(server) - before) / len(jobs), 2)


def cpu_split_ms_per_job(url: str, job: Job, n: int, parallel: int) -> dict:
    """Where the CPU of one-job requests goes: the client (this process: httpx), the server's own
    process (HTTP, validation, judging), the executors' own work (fork, pipes, supervision, job
    dirs) and the job children (isolation layers, the harness, the code, exit)."""
    slots = server_health(url)["slot_pids"]
    server = int(Path(f"/proc/{slots[0]}/stat").read_text().split(") ")[1].split()[1])
    ex = executors(slots)
    faults_before = [_minor_faults(pid) for pid in ex]
    before = [_cpu_s(server), *map(_cpu_s, ex)], os.times()
    run_service(url, [job] * n, parallel)
    after = [_cpu_s(server), *map(_cpu_s, ex)], os.times()
    faults = [
        tuple(a - b for a, b in zip(_minor_faults(pid), old, strict=True))
        for pid, old in zip(ex, faults_before, strict=True)
    ]
    ms = lambda seconds: round(1000 * seconds / n, 2)  # noqa: E731
    client = (after[1].user + after[1].system) - (before[1].user + before[1].system)
    split = {
        "client_httpx": ms(client),
        "server_process": ms(after[0][0][0] - before[0][0][0]),
        "executors_own": ms(sum(a[0] - b[0] for a, b in zip(after[0][1:], before[0][1:], strict=True))),
        "job_children": ms(sum(a[1] - b[1] for a, b in zip(after[0][1:], before[0][1:], strict=True))),
    }
    split["server_side"] = round(split["server_process"] + split["executors_own"] + split["job_children"], 2)
    split["with_client"] = round(split["server_side"] + split["client_httpx"], 2)
    split["minor_faults_per_job_executors_own"] = round(sum(f[0] for f in faults) / n)
    split["minor_faults_per_job_children"] = round(sum(f[1] for f in faults) / n)
    return split


def sandbox_client_cpu_ms_per_run(url: str, job: Job, n: int) -> float:
    """Client CPU per ``SandboxClient.run`` (one job, one request, on the client's kept-alive
    connection): the product path of a caller that sends one job at a time."""
    with closing(SandboxClient(url)) as client:
        client.run(job)  # imports, the process's TLS context and the connection
        before = os.times()
        for _ in range(n):
            assert client.run(job).passed == 1
        after = os.times()
    return round(1000 * ((after.user + after.system) - (before.user + before.system)) / n, 2)


# a fork of a bare interpreter (site only) whose child runs `x = 1` and exits: what any design that
# forks a fresh Python process per job pays at least, whatever that process imported
_BARE_FORK = """
import os
def cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
before = cpu()
for _ in range({n}):
    pid = os.fork()
    if pid == 0:
        exec("x = 1")
        os._exit(0)
    os.waitpid(pid, 0)
print(1000 * (cpu() - before) / {n})
"""


def bare_fork_cpu_ms(n: int = 1000) -> float:
    """CPU ms (parent + child) per forked child of a bare interpreter (see _BARE_FORK)."""
    out = subprocess.run([sys.executable, "-P", "-c", _BARE_FORK.format(n=n)], capture_output=True, text=True)
    return round(float(out.stdout), 3)


def baseline_interpreters(scratch: str) -> dict[str, list[str]]:
    """The fresh interpreters the baseline runs each program in (argv before ``-c PROGRAM``).

    ``checkout_venv``: this checkout's venv, as a naive evaluator here would spawn it; its ``site``
    runs the editable install's import finder. ``clean_venv``: a venv of the same CPython build with
    nothing installed (created in ``scratch``), so its start is the interpreter's and ``site``'s own:
    the fair "fresh interpreter per program". ``clean_venv_no_site``: the same with ``-S``, a lower
    bound (no ``site``, no site-packages) that no evaluator which imports installed packages can use."""
    clean = os.path.join(scratch, "clean-venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(clean)
    python = os.path.join(clean, "bin", "python")
    return {"checkout_venv": [sys.executable], "clean_venv": [python], "clean_venv_no_site": [python, "-S"]}


def site_import_ms(argv: list[str]) -> float:
    """Cumulative import time of ``site`` (``-X importtime -c pass``): the part of an interpreter's
    start that depends on what is installed (0 with ``-S``)."""
    err = subprocess.run([*argv, "-X", "importtime", "-c", "pass"], capture_output=True, text=True).stderr
    for line in err.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[2].strip() == "site":
            return round(int(fields[1]) / 1000, 2)
    return 0.0


def baseline_cpu_ms_per_program(argv: list[str], programs: list[str]) -> float:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_baseline(argv, programs, 2)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(1000 * used / len(programs), 2)


def run_baseline(argv: list[str], programs: list[str], parallel: int) -> dict:
    latencies: list[float] = []

    def one(program: str) -> None:
        t = time.perf_counter()
        subprocess.run([*argv, "-c", program], capture_output=True, timeout=5, check=True)
        latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, programs))
    return summary(latencies, time.perf_counter() - started, len(programs))


TRIVIAL_CODE, TRIVIAL_TEST = "def f(x):\n    return x + 1\n", "assert f(1) == 2"
TRIVIAL_PROGRAM = TRIVIAL_CODE + TRIVIAL_TEST  # what the baseline runs for one trivial job


def baseline(argv: list[str], he_programs: list[str], n_he_jobs: int, n_trivial: int) -> dict:
    """One interpreter's baseline: trivial programs and HumanEval+ inputs, rate and CPU."""
    he = run_baseline(argv, he_programs, 2)
    # the baseline runs one subprocess per input; express it per job too
    he["jobs_per_s"] = round(he["executions_per_s"] * n_he_jobs / len(he_programs), 1)
    return {
        "argv": argv,
        "site_import_ms": site_import_ms(argv),
        "trivial": run_baseline(argv, [TRIVIAL_PROGRAM] * n_trivial, 2),
        "trivial_cpu_ms": baseline_cpu_ms_per_program(argv, [TRIVIAL_PROGRAM] * 100),
        "humaneval_plus": he,
        "humaneval_plus_cpu_ms_per_job": round(
            baseline_cpu_ms_per_program(argv, he_programs[:120]) * len(he_programs) / n_he_jobs, 2
        ),
    }


def ratios(report: dict, base: dict) -> dict:
    """The service against one baseline: rates (service / baseline) and CPU (baseline / service)."""
    cpu, split = report["cpu_ms_per_job"], report["cpu_ms_per_trivial_request"]
    rate = lambda key: round(report[key]["executions_per_s"] / base["trivial"]["executions_per_s"], 2)  # noqa: E731
    return {
        "trivial_jobs_per_s_one_per_request": rate("trivial_service"),
        "trivial_jobs_per_s_one_per_sandboxclient_run": rate("trivial_sandboxclient"),
        "trivial_jobs_per_s_batched": rate("trivial_service_batched"),
        "trivial_cpu_one_per_request_server_side": round(base["trivial_cpu_ms"] / split["server_side"], 2),
        "trivial_cpu_one_per_request_with_client": round(base["trivial_cpu_ms"] / split["with_client"], 2),
        "trivial_cpu_one_per_sandboxclient_run": round(
            base["trivial_cpu_ms"] / (split["server_side"] + split["client_sandboxclient_run"]), 2
        ),
        "trivial_cpu_batched_server_side": round(base["trivial_cpu_ms"] / cpu["trivial_service"], 2),
        "humaneval_plus_jobs_per_s_one_per_request": round(
            report["humaneval_plus_service"]["executions_per_s"] / base["humaneval_plus"]["jobs_per_s"], 2
        ),
        "humaneval_plus_cpu_batched_server_side": round(
            base["humaneval_plus_cpu_ms_per_job"] / cpu["humaneval_plus_service"], 2
        ),
    }


def humaneval_jobs(n_tasks: int) -> tuple[list[Job], list[str]]:
    with gzip.open(DATA, "rt") as f:
        rows = [json.loads(line) for line in f][:n_tasks]
    jobs, baseline = [], []
    for row in rows:
        code = row["prompt"] + row["canonical_solution"]
        jobs.append(Job(code=code, entry_point=row["entry_point"], inputs=row["base_input"]))
        baseline += [f"{code}\n{row['entry_point']}(*{args!r})" for args in row["base_input"]]
    return jobs, baseline


def fork_costs(trivial: Job) -> dict:
    """CPU ms per job child as layers are added and with the trivial job run by the harness, forked
    from a process that holds the executor module (as a slot) and from one that holds only the layers
    and the harness (a template), each in its own interpreter (benchmarks/sandbox_fork_costs.py);
    the fork of a bare interpreter; one /proc scan. CPU rather than wall time: wall time on a shared
    machine is mostly waiting for a core."""
    os.environ[layout.RUNTIME_PATHS_ENV] = json.dumps(layout.discover().paths)  # what the server hands a slot
    uid = 63000 if os.geteuid() == 0 else None
    request = RunRequest.model_validate(trivial.payload())
    state = {
        "uid": uid,
        "prepared": slot_setup.prepare(uid=uid, executor_pid=os.getpid(), server_pid=os.getppid()),
        "job": judge.executor_job(judge.prepare(request, None), SandboxConfig()),
    }
    script = str(Path(__file__).with_name("sandbox_fork_costs.py"))
    out: dict = {}
    for forker in ("executor", "template"):
        run = subprocess.run(
            [sys.executable, "-P", script, forker], input=json.dumps(state), capture_output=True, text=True
        )
        if run.returncode != 0:
            raise RuntimeError(f"sandbox_fork_costs.py {forker} failed:\n{run.stderr}")
        out[f"from_{forker}"] = json.loads(run.stdout)
    out["fork_of_a_bare_interpreter"] = bare_fork_cpu_ms()
    cpu = lambda: sum(os.times()[:4])  # noqa: E731
    before = cpu()
    for _ in range(300):
        executor.descendants(os.getpid())
    out["proc_scan_outside_a_pid_namespace"] = round(1000 * (cpu() - before) / 300, 3)
    return out


def service_workloads(url: str, trivial: Job, he_jobs: list[Job], n_trivial: int) -> dict:
    run_service(url, [trivial] * 20, 2)  # warm-up
    return {
        "trivial_service": run_service(url, [trivial] * n_trivial, 4),
        "trivial_sandboxclient": run_sandboxclient(url, [trivial] * n_trivial, 4),
        "humaneval_plus_service": run_service(url, he_jobs, 4),
        "trivial_service_batched": run_batched(url, [trivial] * n_trivial, 64),
        "humaneval_plus_service_batched": run_batched(url, he_jobs, 64),
    }


def container_vs_host(
    image: str, cfg: SandboxConfig, trivial: Job, he_jobs: list[Job], n: int, rounds: int
) -> dict:
    """The service workloads against the host server and the image's container, both up at once and
    driven in turn for ``rounds`` rounds, so a change in the machine's load hits both alike."""
    from diffucoder.image_build import detect_engine
    from diffucoder.k8s.pod_run import sandbox_container
    from diffucoder.sandbox.local import free_port

    engine = detect_engine().name
    with (
        local_sandbox(cfg) as host,
        sandbox_container(engine, image, port=free_port(), workers=cfg.workers) as (container, _),
    ):
        places = {"host": host, "container": container}
        report: dict = {"machine": cpu_info(), "workers": cfg.workers, "image": image, "rounds": rounds}
        report["layers_active"] = {place: server_health(url)["layers"] for place, url in places.items()}
        runs: dict[str, list[dict]] = {place: [] for place in places}
        for _ in range(rounds):
            for place, url in places.items():
                runs[place].append(service_workloads(url, trivial, he_jobs, n))
    for place, results in runs.items():
        report[place] = {
            key: {stat: [r[key][stat] for r in results] for stat in results[0][key]} for key in results[0]
        }
    report["container_over_host"] = {
        key: round(
            statistics.mean(report["container"][key]["executions_per_s"])
            / statistics.mean(report["host"][key]["executions_per_s"]),
            2,
        )
        for key in report["host"]
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--trivial", type=int, default=300)
    parser.add_argument(
        "--image", default=None, help="the service workloads in this sandbox image and on the host"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="with --image: host/container rounds, alternated"
    )
    args = parser.parse_args()
    cfg = SandboxConfig(workers=2, sandbox_uid_base=62200)
    trivial = Job(code=TRIVIAL_CODE, tests=[TRIVIAL_TEST])
    he_jobs, he_baseline = humaneval_jobs(args.tasks)
    if args.image:
        print(
            json.dumps(
                container_vs_host(args.image, cfg, trivial, he_jobs, args.trivial, args.rounds), indent=2
            )
        )
        return
    report: dict = {"machine": cpu_info(), "workers": cfg.workers}
    with local_sandbox(cfg) as url:
        report["layers_active"] = server_health(url)["layers"]
        report |= service_workloads(url, trivial, he_jobs, args.trivial)
        # CPU times come in clock ticks (10 ms): each is measured over 3x the jobs of the rates
        report["cpu_ms_per_job"] = {
            "trivial_service": service_cpu_ms_per_job(url, [trivial] * (3 * args.trivial)),
            "humaneval_plus_service": service_cpu_ms_per_job(
                url, he_jobs * max(3 * args.trivial // len(he_jobs), 1)
            ),
        }
        report["cpu_ms_per_trivial_request"] = cpu_split_ms_per_job(url, trivial, 3 * args.trivial, 4)
        report["cpu_ms_per_trivial_request"]["client_sandboxclient_run"] = sandbox_client_cpu_ms_per_run(
            url, trivial, args.trivial // 2
        )
    with tempfile.TemporaryDirectory() as scratch:
        report["baselines"] = {
            name: baseline(argv, he_baseline, len(he_jobs), args.trivial)
            for name, argv in baseline_interpreters(scratch).items()
        }
    report["ratios"] = {name: ratios(report, base) for name, base in report["baselines"].items()}
    report["fork_cost_ms"] = fork_costs(trivial)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
