"""Soak test of one sandbox server under GRPO-shaped load: is it still right, clean and flat after
minutes of mixed honest and hostile traffic?

8 concurrent clients (a trainer's reward workers) each send batches of 64 jobs, one request per
batch, for ``--minutes``. A batch mixes what a policy writes: passing and failing solutions (split
asserts and whole-test programs), syntax errors, programs that exit before their tests, and the
hostile programs of the test suite (infinite loops, sleeping past the limit, fork bombs, memory
hogs, result-pipe forgers, writes outside the sandbox, files and daemons left for the next job).
Every program prints its own job id first, so a result handed to the wrong job is seen.

Checked and printed (exit status 1 if any invariant fails):
- every job answered exactly once, with its own id and the verdicts its kind must get; the server's
  verdict counters add up to exactly the verdicts received (nothing ran twice);
- no processes of the sandbox uids and no job directories left after the run, nothing written
  outside; the job directories and uid processes also sampled while it runs;
- memory of the server and the slots (bwrap + executor, not the job children) each minute, and the
  least-squares slope over the run;
- p50/p99 latency per job (the executor's time) and per batch (the client's), executions/s.

    .venv/bin/python benchmarks/bench_sandbox_soak.py [--minutes 10] [--clients 8] [--batch 64]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from bench_sandbox import executors, is_executor, pct
from machine import cpu_info

from diffucoder.sandbox import executor
from diffucoder.sandbox.client import Job, JobResult, SandboxClient
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import local_sandbox

UID_BASE = 62400
TOKEN = f"diffucoder-soak-{os.getpid()}"
OUTSIDE = [f"/var/tmp/{TOKEN}", f"/tmp/{TOKEN}", f"/dev/shm/{TOKEN}", f"/etc/{TOKEN}"]
ID = re.compile(r"soak-id (\d+)")


@dataclass(frozen=True)
class Kind:
    """A kind of program and the verdicts it must get (``None``: its own check below)."""

    name: str
    weight: int  # jobs of this kind per batch of 64
    code: str
    tests: tuple[str, ...]
    verdicts: tuple[str, ...]
    prints_id: bool = True
    time_limit_s: float | None = None
    memory_mb: int | None = None

    def job(self, job_id: int) -> Job:
        head = f"print('soak-id {job_id}', flush=True)\n" if self.prints_id else ""
        return Job(
            code=head + self.code,
            tests=list(self.tests),
            time_limit_s=self.time_limit_s,
            memory_mb=self.memory_mb,
        )


FORGER = (
    "import os, json\n"
    "for i in range(3):\n"
    "    line = json.dumps({'event': 'result', 'index': i, 'status': 'ok', 'value': {'i': 3}})\n"
    "    os.write(3, (line + '\\n').encode())\n"
    "def add(a, b):\n    return 0\n"
)
FORK_BOMB = (
    "import os, time\nn = 0\nfor _ in range(100000):\n    try:\n        if os.fork() == 0:\n"
    "            time.sleep(60)\n            os._exit(0)\n        n += 1\n    except OSError:\n        break\n"
)
# writes outside its directory and leaves a file, a daemonised sleeper and an environment variable
# behind; asserts it found none of that from the jobs before it
LEAVER = (
    "import os, time\nseen = sorted(os.listdir('.')) + [k for k in os.environ if k.startswith('SOAK')]\n"
    f"written = []\nfor path in {OUTSIDE!r}:\n"
    "    try:\n        open(path, 'w').write('pwned')\n        written.append(path)\n"
    "    except OSError:\n        pass\n"
    "open('leftover', 'w').write('x')\nopen(os.path.join(os.environ['TMPDIR'], 'leftover2'), 'w').write('x')\n"
    "os.environ['SOAK_LEAK'] = '1'\n"
    "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(600)\n    os._exit(0)\n"
)

KINDS = [
    Kind(
        "pass",
        20,
        "def f(x):\n    return x + 1\n",
        ("assert f(1) == 2", "assert f(-1) == 0"),
        ("passed",) * 2,
    ),
    Kind(
        "pass_whole_test",
        8,
        "def is_even(x):\n    return x % 2 == 0\n",
        ("assert all(is_even(2 * i) for i in range(50))",),
        ("passed",),
    ),
    Kind(
        "fail",
        12,
        "def f(x):\n    return x\n",
        ("assert f(1) == 2", "assert f(0) == 0"),
        ("failed", "passed"),
    ),
    Kind(
        "syntax_error",
        4,
        "def f(x)\n    return x\n",
        ("assert f(1) == 1",),
        ("syntax_error",),
        prints_id=False,
    ),
    Kind("exit_before_tests", 3, "import os\nos._exit(0)\n", ("assert 1 == 1",), ("crashed",)),
    Kind(
        "infinite_loop",
        3,
        "def f():\n    while True:\n        pass\n",
        ("assert f() == 1",),
        ("timeout",),
        time_limit_s=0.5,
    ),
    Kind(
        "sleep_past_limit",
        3,
        "import time\ndef f():\n    time.sleep(30)\n    return 1\n",
        ("assert f() == 1",),
        ("timeout",),
        time_limit_s=0.5,
    ),
    Kind(
        "fork_bomb", 2, FORK_BOMB + "def spawned():\n    return n\n", ("assert spawned() == -1",), ("failed",)
    ),
    Kind("memory_hog", 3, "x = bytearray(8 * 1024**3)\n", ("assert 1 == 1",), ("memory",), memory_mb=256),
    Kind("fd3_forger", 2, FORGER, ("assert add(2, 2) == 4", "assert add(3, 3) == 6"), ("failed", "failed")),
    Kind("fd3_forger_whole_test", 1, FORGER + "os._exit(0)\n", ("assert is_ok()",), ("crashed",)),
    Kind(
        "outside_writer_and_leaver", 3, LEAVER, ("assert seen == []", "assert written == []"), ("passed",) * 2
    ),
]
assert sum(k.weight for k in KINDS) == 64


def check(kind: Kind, job_id: int, result: JobResult) -> str | None:
    """What is wrong with this result for this job, or None."""
    if result.infra_error is not None:
        return f"infra error: {result.infra_error}"
    if tuple(result.verdicts) != kind.verdicts:
        return f"verdicts {result.verdicts}, expected {list(kind.verdicts)} ({result.program_error})"
    ids = set(map(int, ID.findall(result.stdout)))
    if ids != ({job_id} if kind.prints_id else set()):
        return f"its output names job ids {sorted(ids)}"
    return None


# --- what the server's processes hold -------------------------------------------------------------


def status(pid: int) -> dict[str, str]:
    """The fields of /proc/PID/status ({} for a process that is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return {}


def uid_processes(uids: range) -> list[int]:
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    return [pid for pid in pids if int(status(pid).get("Uid", "-1").split()[0]) in uids]


def service_memory_mib(server: int, slots: list[int]) -> float:
    """RSS of the server and of each slot down to its executor (bwrap's processes included, the
    job children below the executor excluded: they come and go with the jobs)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in executor._parent_map().items():
        children.setdefault(ppid, []).append(pid)
    kib, stack = 0, [server, *slots]
    while stack:
        pid = stack.pop()
        kib += int(status(pid).get("VmRSS", "0 kB").split()[0])
        if pid != server and not is_executor(pid):
            stack.extend(children.get(pid, []))
    return kib / 1024


def job_dirs(executor_pids: list[int]) -> int:
    """Job directories that exist now, seen through each executor's own mount namespace."""
    count = 0
    for pid in executor_pids:
        for root in Path(f"/proc/{pid}/root/tmp").glob("diffucoder-sandbox-*"):
            count += sum(1 for _ in root.iterdir())
    return count


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    ts, ys = [t / 60 for t, _ in samples], [y for _, y in samples]
    mt, my = statistics.mean(ts), statistics.mean(ys)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / sum((t - mt) ** 2 for t in ts)


def server_counts(url: str) -> dict[str, float]:
    """The server's verdict and request counters from /metrics."""
    counts: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(
            ("sandbox_verdicts_total", "sandbox_requests_total", "sandbox_infra_errors_total")
        ):
            key, value = line.rsplit(" ", 1)
            counts[key] = float(value)
    return counts


# --- the load --------------------------------------------------------------------------------------


class Load:
    def __init__(self, url: str, cfg: SandboxConfig, batch: int, seconds: float):
        self.url, self.cfg, self.batch = url, cfg, batch
        self.deadline = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.next_id = 0
        self.answered: Counter[int] = Counter()
        self.sent = 0
        self.verdicts_received = 0
        self.problems: list[str] = []
        self.batch_s: list[float] = []
        self.job_s: dict[str, list[float]] = {k.name: [] for k in KINDS}

    def ids(self, n: int) -> range:
        with self.lock:
            first, self.next_id = self.next_id, self.next_id + n
            return range(first, first + n)

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        plan = [k for k in KINDS for _ in range(k.weight)]
        with SandboxClient(self.url, self.cfg) as client:
            self.send_until_deadline(client, rng, plan)

    def send_until_deadline(self, client: SandboxClient, rng: random.Random, plan: list[Kind]) -> None:
        while time.monotonic() < self.deadline:
            kinds = rng.sample(plan, len(plan))[: self.batch]
            ids = self.ids(len(kinds))
            began = time.perf_counter()
            results = client.run_batch([kind.job(i) for kind, i in zip(kinds, ids, strict=True)])
            took = time.perf_counter() - began
            with self.lock:
                self.sent += len(kinds)
                self.batch_s.append(took)
                if len(results) != len(kinds):
                    self.problems.append(f"a batch of {len(kinds)} got {len(results)} results")
                for kind, job_id, result in zip(kinds, ids, results, strict=False):
                    self.answered[job_id] += 1
                    self.verdicts_received += len(result.verdicts)
                    self.job_s[kind.name].append(result.duration_s)
                    problem = check(kind, job_id, result)
                    if problem:
                        self.problems.append(f"job {job_id} ({kind.name}): {problem}")


def sample(load: Load, server: int, slots: list[int], uids: range, every_s: float, out: list[dict]) -> None:
    started = time.monotonic()
    while True:
        ex = executors(slots)
        out.append(
            {
                "t_s": round(time.monotonic() - started),
                "service_rss_mib": round(service_memory_mib(server, slots), 1),
                "jobs_answered": load.sent,
                "sandbox_uid_processes": len(uid_processes(uids)),
                "job_dirs": job_dirs(ex),
            }
        )
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
        remaining = load.deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(every_s, remaining))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-s", type=float, default=60)
    args = parser.parse_args()
    uids = range(UID_BASE, UID_BASE + args.workers)
    cfg = SandboxConfig(
        workers=args.workers,
        queue_size=args.clients * args.batch,  # every client's batch admitted at once: no 429 churn
        sandbox_uid_base=UID_BASE,
        batch_size=args.batch,
        max_concurrent_requests=1,
        request_timeout_s=600,
    )
    report: dict = {"machine": cpu_info(), "config": vars(args)}
    before = {"uid_processes": uid_processes(uids), "outside": [p for p in OUTSIDE if os.path.exists(p)]}
    server_tmp = Path(tempfile.mkdtemp(prefix="diffucoder-soak-tmp-"))
    server_tmp.chmod(0o755)
    os.environ["TMPDIR"] = str(
        server_tmp
    )  # the server's (inherited); job dirs live below it or in bwrap's /tmp
    try:
        with local_sandbox(cfg) as url:
            with SandboxClient(url, cfg) as client:
                health = client.health()
                client.run_batch([k.job(-1 - i) for i, k in enumerate(KINDS)])  # warm-up
            report["layers_active"] = health["layers"]
            slots = health["slot_pids"]
            server = int(Path(f"/proc/{slots[0]}/stat").read_text().split(") ")[1].split()[1])
            counts_before = server_counts(url)
            load = Load(url, cfg, args.batch, 60 * args.minutes)
            samples: list[dict] = []
            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients + 1) as pool:
                sampler = pool.submit(sample, load, server, slots, uids, args.sample_s, samples)
                clients = [pool.submit(load.client, seed) for seed in range(args.clients)]
                for c in clients:
                    c.result()
                sampler.result()
            wall = time.perf_counter() - began
            samples.append(
                {
                    "t_s": round(wall),
                    "service_rss_mib": round(service_memory_mib(server, slots), 1),
                    "jobs_answered": load.sent,
                    "sandbox_uid_processes": len(uid_processes(uids)),
                    "job_dirs": job_dirs(executors(slots)),
                }
            )
            counts = server_counts(url)
        after_uid_processes = uid_processes(uids)
        left_in_tmp = sorted(str(p.relative_to(server_tmp)) for p in server_tmp.rglob("*"))
    finally:
        shutil.rmtree(server_tmp, ignore_errors=True)
    report |= summarise(load, wall, samples, counts_before, counts)
    problems = list(load.problems)
    lost = [i for i in range(load.next_id) if load.answered[i] == 0]
    duplicated = [i for i, n in load.answered.items() if n > 1]
    ran = sum(
        v - counts_before.get(k, 0) for k, v in counts.items() if k.startswith("sandbox_verdicts_total")
    )
    outside = [p for p in OUTSIDE if os.path.exists(p)]
    report["invariants"] = {
        "jobs_sent": load.sent,
        "lost": len(lost),
        "duplicated": len(duplicated),
        "wrong_results": len(load.problems),
        "verdicts_received": load.verdicts_received,
        "verdicts_counted_by_server": int(ran),
        "sandbox_uid_processes_before_after": [len(before["uid_processes"]), len(after_uid_processes)],
        "job_dirs_at_end_of_load": samples[-1]["job_dirs"],
        "server_tmpdir_left": left_in_tmp,
        "written_outside": outside,
    }
    if lost or duplicated:
        problems.append(f"lost {lost[:10]}, duplicated {duplicated[:10]}")
    if int(ran) != load.verdicts_received:
        problems.append(f"the server counted {ran} verdicts, the clients received {load.verdicts_received}")
    if after_uid_processes or samples[-1]["job_dirs"] or left_in_tmp or outside:
        problems.append("leaked processes, job directories or files (see invariants)")
    if not report["memory"]["flat"]:
        problems.append(f"service memory grew {report['memory']['slope_mib_per_min']} MiB/min")
    report["problems"] = problems[:50]
    report["ok"] = not problems
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


def summarise(load: Load, wall: float, samples: list[dict], counts_before: dict, counts: dict) -> dict:
    job_s = [s for values in load.job_s.values() for s in values]
    rss = [(s["t_s"], s["service_rss_mib"]) for s in samples]
    slope = slope_per_min(rss[1:]) if len(rss) > 2 else 0.0  # the first sample is taken before any load
    span_min = (rss[-1][0] - rss[1][0]) / 60 if len(rss) > 2 else 0.0
    # flat: the fitted growth over the whole run is within 2% of the service's size (allocator noise)
    flat = abs(slope) * span_min <= 0.02 * statistics.mean(y for _, y in rss)
    requests = {k: v - counts_before.get(k, 0) for k, v in counts.items() if k.startswith("sandbox_requests")}
    return {
        "wall_s": round(wall, 1),
        "executions_per_s": round(load.sent / wall, 1),
        "batches": len(load.batch_s),
        "latency_per_batch_s": {
            "p50": round(pct(load.batch_s, 0.5), 2),
            "p99": round(pct(load.batch_s, 0.99), 2),
        },
        "latency_per_job_ms": {
            "p50": round(1000 * pct(job_s, 0.5), 1),
            "p99": round(1000 * pct(job_s, 0.99), 1),
        },
        "latency_per_job_ms_by_kind": {
            name: {"jobs": len(v), "p50": round(1000 * pct(v, 0.5), 1), "p99": round(1000 * pct(v, 0.99), 1)}
            for name, v in load.job_s.items()
            if v
        },
        "requests": {k.partition("{")[2].rstrip("}"): int(v) for k, v in requests.items() if v},
        "memory": {"samples": samples, "slope_mib_per_min": round(slope, 3), "flat": flat},
    }


if __name__ == "__main__":
    main()
