"""The hostile-code suite: each attack must fail AND an honest job must still pass afterwards.

Every test uses ``contained_client``, the session gate that proves the code runs unprivileged
under a binding process limit and seccomp before any of these programs is sent. No program here
signals pid -1 or any process the test did not start, and the only network target is a listener
this test opens on 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sandbox_helpers import HONEST, SERVER_SECRET, assert_honest

from diffucoder.sandbox.client import Job
from diffucoder.sandbox.slot_setup import SLOT_TMPFS_BYTES

pytestmark = pytest.mark.hostile


def run(client, code, tests=("assert 1 == 1",), **kw):
    result = client.run(Job(code=code, tests=list(tests), **kw))
    assert result.infra_error is None, result.infra_error
    return result


def sandbox_uid_processes(client, server) -> list[int]:
    """Processes running as a sandbox uid below this test's own server (never anyone else's), in
    the server's own pid namespace (the container's, for the image)."""
    health = client.health()
    uids, roots = set(health["sandbox_uids"]), set(health["slot_pids"])
    assert uids and roots
    table = server.processes()
    assert roots <= set(table), f"slot pids {roots} not in the server's process table"
    found = []
    for pid, (_, uid) in table.items():
        ancestor = table.get(pid, (0, 0))[0]
        while ancestor and ancestor not in roots:
            ancestor = table.get(ancestor, (0, 0))[0]
        if ancestor in roots and uid in uids:
            found.append(pid)
    return found


def test_infinite_loop_times_out(contained_client):
    r = run(contained_client, "while True:\n    pass\n", time_limit_s=0.5)
    assert r.verdicts == ["timeout"] and r.duration_s < 3
    assert_honest(contained_client)


def test_loop_inside_test_costs_one_test(contained_client):
    code = "def f(x):\n    while x == 2:\n        pass\n    return x\n"
    r = run(
        contained_client, code, ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"], time_limit_s=0.5
    )
    assert r.verdicts == ["passed", "timeout", "passed"]
    assert_honest(contained_client)


def test_swallowing_the_timer_and_blocking_sigalrm(contained_client):
    code = (
        "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
        "while True:\n    try:\n        pass\n    except BaseException:\n        pass\n"
    )
    r = run(contained_client, code, time_limit_s=0.5)
    assert r.verdicts == ["timeout"] and r.duration_s < 3
    assert_honest(contained_client)


def test_sleep_past_timeout(contained_client):
    r = run(
        contained_client,
        "import time\ndef f():\n    time.sleep(30)\n    return 1\n",
        ["assert f() == 1"],
        time_limit_s=0.5,
    )
    assert r.verdicts == ["timeout"] and r.duration_s < 3
    assert_honest(contained_client)


def test_fork_bomb_is_contained(contained_client, sandbox_cfg, sandbox_server):
    code = (
        "import os\nn = 0\nfor _ in range(100000):\n    try:\n        if os.fork() == 0:\n"
        "            import time; time.sleep(60)\n        n += 1\n    except OSError:\n        break\n"
        "def spawned():\n    return n\n"
    )
    r = run(contained_client, code, ["assert spawned() == -1"], time_limit_s=3)
    assert r.verdicts == ["failed"]  # the program ran on, but could not fork without bound
    assert sandbox_uid_processes(contained_client, sandbox_server) == []  # and nothing of it survived the job
    assert_honest(contained_client)


def test_fork_bomb_reports_processes_spawned_below_limit(contained_client, sandbox_cfg, sandbox_server):
    code = (
        "import os\ndef spawn():\n    n = 0\n    for _ in range(1000):\n        try:\n"
        "            pid = os.fork()\n        except OSError:\n            return n\n"
        "        if pid == 0:\n            import time; time.sleep(60)\n        n += 1\n    return n\n"
    )
    r = contained_client.run(Job(code=code, entry_point="spawn", inputs=[[]], time_limit_s=3))
    # the job gets its whole budget (itself included), also where the server's own threads and
    # slots share its uid (the image), and not one process more
    assert r.verdicts == ["passed"] and r.outputs[0] == sandbox_cfg.max_processes - 1
    assert sandbox_uid_processes(contained_client, sandbox_server) == []
    assert_honest(contained_client)


HOLDING_BOMB = """
import os, time
def bomb(seconds):
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:  # keeps forking whenever a process of the uid goes away
        try:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            n += 1
        except OSError:
            time.sleep(0.005)
    return n
"""

FORKS_AND_THREADS = """
import os, threading
def work(k):
    pids = [os.fork() or os._exit(0) for _ in range(k)]
    threads = [threading.Thread(target=lambda: None) for _ in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(os.waitpid(p, 0)[1] == 0 for p in pids) + len(threads)
"""


def test_fork_bomb_starves_neither_the_server_nor_other_jobs(contained_client, sandbox_cfg, sandbox_server):
    """A bomb that holds every process it can get for 3 s. Meanwhile the server answers, and jobs in
    the other slots still run and still get their own budget to fork and start threads (in the
    image all of them share one uid with the server: the budget is per job, not what is left)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        bomb = pool.submit(
            contained_client.run, Job(code=HOLDING_BOMB, entry_point="bomb", inputs=[[3]], time_limit_s=6)
        )
        time.sleep(1)  # the bomb is at its limit
        for _ in range(3):
            assert contained_client.health()["status"] == "ok"
            assert_honest(contained_client)
            busy = contained_client.run(Job(code=FORKS_AND_THREADS, entry_point="work", inputs=[[4]]))
            assert busy.infra_error is None and busy.outputs == [8], (busy.outputs, busy.stderr)
        assert not bomb.done()  # all of that happened while the bomb held its processes
        held = bomb.result()
    assert held.verdicts == ["passed"] and held.outputs[0] < sandbox_cfg.max_processes
    assert sandbox_uid_processes(contained_client, sandbox_server) == []
    assert_honest(contained_client)


def test_memory_bomb(contained_client):
    r = run(contained_client, "x = bytearray(8 * 1024**3)\n", memory_mb=256)
    assert r.verdicts == ["memory"] and r.program_status == "memory"
    r = run(
        contained_client,
        "def f():\n    a = []\n    while True:\n        a.append('x' * 10**6)\n",
        ["assert f() == 1"],
        memory_mb=256,
    )
    assert r.verdicts == ["memory"]
    assert_honest(contained_client)


def test_disk_fill_is_capped(contained_client):
    code = (
        "import os\ndef fill():\n    try:\n        with open('big', 'wb') as f:\n"
        "            for _ in range(1000):\n                f.write(b'0' * 1024 * 1024)\n"
        "    except OSError as e:\n        return (e.errno, os.path.getsize('big'))\n    return (0, 0)\n"
    )
    r = contained_client.run(Job(code=code, entry_point="fill", inputs=[[]]))
    errno_, size = r.outputs[0]
    assert errno_ == 27 and size <= 16 * 1024 * 1024  # EFBIG at RLIMIT_FSIZE
    assert_honest(contained_client)


MANY_FILES = """
import errno, os, time
def fill(hold_s):
    block, written, files = b'0' * (1024 * 1024), 0, 0
    size = os.statvfs('.').f_blocks * os.statvfs('.').f_frsize
    failure = 0
    while not failure and written <= 2 * size:
        try:
            with open(f'f{files}', 'wb') as f:
                files += 1
                for _ in range(16):  # 16 MiB: RLIMIT_FSIZE
                    written += f.write(block)
        except OSError as e:
            failure = e.errno
    time.sleep(hold_s)  # keep it full while other jobs run
    return [failure, files, written, size]
"""


def test_disk_fill_with_many_files_stops_at_the_tmpfs_size(contained_client, sandbox_server):
    """Many files, each under RLIMIT_FSIZE: the memory-backed /tmp the job dirs live on stops them
    at its size (bubblewrap: the slot's private /tmp; the image: the pod's emptyDir, its
    sizeLimit), other jobs run while it is full, and the space is back once the job is gone."""
    if sandbox_server.place == "image":
        from diffucoder.k8s.pod_run import quantity_bytes, shared_sandbox_pod

        volume = next(v for v in shared_sandbox_pod()["volumes"] if v["name"] == "tmp")
        expected_size = quantity_bytes(volume["emptyDir"]["sizeLimit"])
    else:
        assert contained_client.health()["layers"]["bubblewrap"]
        expected_size = SLOT_TMPFS_BYTES
    fill = Job(code=MANY_FILES, entry_point="fill", inputs=[[2]], time_limit_s=25)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        filling = pool.submit(contained_client.run, fill)
        time.sleep(1)
        while not filling.done():
            assert_honest(contained_client)
        r = filling.result()
    failure, files, written, size = r.outputs[0]
    assert size == expected_size and failure == errno.ENOSPC, r.outputs
    assert written <= size and files > 4  # many files, together never past the size
    again = contained_client.run(Job(code=MANY_FILES, entry_point="fill", inputs=[[0]], time_limit_s=25))
    assert again.outputs[0][2] >= written - 32 * 1024 * 1024  # the first job's files are gone
    assert_honest(contained_client)


def test_huge_stdout_is_capped_without_stalling(contained_client, sandbox_cfg):
    code = "import sys\nfor _ in range(200):\n    sys.stdout.write('y' * 1024 * 1024)\nx = 1\n"
    r = run(contained_client, code, ["assert x == 1"], time_limit_s=5)
    assert r.verdicts == ["passed"] and r.duration_s < 5
    assert len(r.stdout) < sandbox_cfg.max_output_bytes + 100 and "more bytes dropped" in r.stdout
    assert_honest(contained_client)


def test_network_to_host_loopback_is_unreachable(contained_client):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        code = (
            "import socket\ndef attempts():\n    out = []\n"
            "    for fam, addr in ((socket.AF_INET, ('127.0.0.1', PORT)), (socket.AF_INET6, ('::1', PORT))):\n"
            "        try:\n            s = socket.socket(fam, socket.SOCK_STREAM)\n            s.settimeout(1)\n"
            "            s.connect(addr)\n            out.append('connected')\n"
            "        except OSError as e:\n            out.append(type(e).__name__)\n"
            "    try:\n        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)\n        out.append('netlink')\n"
            "    except OSError as e:\n        out.append(type(e).__name__)\n    return out\n"
        ).replace("PORT", str(port))
        r = contained_client.run(Job(code=code, entry_point="attempts", inputs=[[]]))
        assert r.outputs[0] == ["PermissionError", "PermissionError", "PermissionError"]
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever reached the listener
    finally:
        listener.close()
    assert_honest(contained_client)


def test_server_environment_and_secrets_are_invisible(contained_client):
    code = (
        "import os, glob\ndef leaks():\n    found = [k for k in os.environ if 'SECRET' in k]\n"
        "    for path in glob.glob('/proc/*/environ'):\n        try:\n"
        "            if b'SECRET' in open(path, 'rb').read():\n                found.append(path)\n"
        "        except OSError:\n            pass\n    return found\n"
    )
    r = contained_client.run(Job(code=code, entry_point="leaks", inputs=[[]]))
    assert r.verdicts == ["passed"] and r.outputs[0] == []
    assert SERVER_SECRET not in r.stdout + r.stderr
    assert_honest(contained_client)


@dataclass(frozen=True)
class OutsideFile:
    path: str
    read_text: Callable[[], str]

    def __str__(self) -> str:
        return self.path


@pytest.fixture
def outside_file(sandbox_server):
    """A world-readable file in a world-readable dir outside the job, where the server runs: on the
    host in /var/tmp (a path the slot's mount namespace does show, not the private /tmp), owned by
    root; in the image in /tmp (the only writable place of a read-only root, the tmpfs job dirs live
    on), owned by the same uid the code runs as. Only the sandbox's own layers may stop either."""
    d = f"{'/var/tmp' if sandbox_server.place == 'host' else '/tmp'}/diffucoder-outside-{secrets.token_hex(4)}"
    sandbox_server.shell(
        f"mkdir -m 755 {d} && printf 'token=outside-secret\\n' > {d}/server_config.txt"
        f" && chmod 644 {d}/server_config.txt"
    )
    yield OutsideFile(f"{d}/server_config.txt", lambda: sandbox_server.shell(f"cat {d}/server_config.txt"))
    sandbox_server.shell(f"rm -rf {d}")


def test_reading_files_outside_the_sandbox_fails(contained_client, outside_file):
    code = (
        "def read(path):\n    try:\n        return open(path).read()\n"
        "    except OSError as e:\n        return type(e).__name__\n"
    )
    paths = [str(outside_file), "/etc/shadow", os.path.abspath("pyproject.toml"), "/root/.bash_history"]
    r = contained_client.run(Job(code=code, entry_point="read", inputs=[[p] for p in paths]))
    assert all(o in ("PermissionError", "FileNotFoundError") for o in r.outputs), r.outputs
    assert_honest(contained_client)


def test_symlink_tricks_do_not_escape(contained_client, outside_file):
    code = (
        "import os\ndef follow(target):\n    os.symlink(target, 'link')\n    try:\n"
        "        return open('link').read()\n    except OSError as e:\n        return type(e).__name__\n"
    )
    r = contained_client.run(Job(code=code, entry_point="follow", inputs=[[str(outside_file)]]))
    assert r.outputs[0] in ("PermissionError", "FileNotFoundError")
    code = (
        "import os\ndef hardlink(target):\n    try:\n        os.link(target, 'hl')\n        return open('hl').read()\n"
        "    except OSError as e:\n        return type(e).__name__\n"
    )
    r = contained_client.run(Job(code=code, entry_point="hardlink", inputs=[[str(outside_file)]]))
    assert r.outputs[0] in ("PermissionError", "OSError")
    assert outside_file.read_text() == "token=outside-secret\n"
    assert_honest(contained_client)


def test_writing_outside_the_temp_dir_fails(contained_client, outside_file):
    code = (
        "def write(path):\n    try:\n        open(path, 'w').write('pwned')\n        return 'written'\n"
        "    except OSError as e:\n        return type(e).__name__\n"
    )
    targets = ["/tmp/pwned", "/dev/shm/pwned", "/var/tmp/pwned", str(outside_file), "/etc/pwned"]
    r = contained_client.run(Job(code=code, entry_point="write", inputs=[[p] for p in targets]))
    assert all(o != "written" for o in r.outputs), r.outputs
    assert outside_file.read_text() == "token=outside-secret\n"
    assert not os.path.exists("/var/tmp/pwned") and not os.path.exists("/dev/shm/pwned")
    ok = contained_client.run(Job(code=code, entry_point="write", inputs=[["inside.txt"]]))
    assert ok.outputs == ["written"]  # its own temp dir stays writable
    assert_honest(contained_client)


def test_proc_snooping_sees_nothing_of_the_host(contained_client):
    code = (
        "import os\ndef snoop():\n    seen = []\n    try:\n        names = os.listdir('/proc')\n"
        "    except OSError as e:\n        return type(e).__name__\n    for name in names:\n"
        "        if name.isdigit() and int(name) != os.getpid():\n            try:\n"
        "                seen.append(open(f'/proc/{name}/cmdline', 'rb').read()[:40].decode(errors='replace'))\n"
        "            except OSError:\n                pass\n    return seen\n"
    )
    r = contained_client.run(Job(code=code, entry_point="snoop", inputs=[[]]))
    assert r.verdicts == ["passed"], r
    assert r.outputs[0] == "PermissionError" or not any(
        "pytest" in s or "sandbox" in s or "diffucoder" in s for s in r.outputs[0]
    ), r.outputs
    assert_honest(contained_client)


def test_killing_the_parent_and_other_processes_fails(contained_client):
    victim = subprocess.Popen(["sleep", "60"])  # a process this test started and will clean up
    try:
        code = (
            "import os, signal\ndef attack(pid):\n    out = []\n    for target in (os.getppid(), pid, 1):\n"
            "        try:\n            os.kill(target, signal.SIGKILL)\n            out.append('killed')\n"
            "        except OSError as e:\n            out.append(type(e).__name__)\n    return out\n"
        )
        r = contained_client.run(Job(code=code, entry_point="attack", inputs=[[victim.pid]]))
        assert "killed" not in r.outputs[0][1:]  # the sandbox's own pid 1 (bwrap init) is the only exception
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
    assert_honest(contained_client)


@pytest.mark.parametrize(
    "exit_call", ["sys.exit(0)", "os._exit(0)", "raise SystemExit(0)", "os.kill(os.getpid(), 9)"]
)
def test_exit_before_asserts_never_passes(contained_client, exit_call):
    code = f"import os, sys\ndef add(a, b):\n    return 0\n{exit_call}\n"
    r = run(contained_client, code, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    assert r.passed == 0 and "passed" not in r.verdicts
    assert_honest(contained_client)


def test_exit_inside_a_test_never_passes(contained_client):
    code = "import os\ndef add(a, b):\n    if a == 2:\n        os._exit(0)\n    return a + b\n"
    r = run(
        contained_client, code, ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(3, 3) == 6"]
    )
    assert r.verdicts == ["passed", "crashed", "passed"]
    assert_honest(contained_client)


def test_fake_pass_markers_and_forged_channel_lines(contained_client):
    code = (
        "import os, json\nprint('__PASS_RATE__ 1.0')\nprint(json.dumps({'verdicts': ['passed']}))\n"
        "for i in range(3):\n    line = json.dumps({'event': 'result', 'index': i, 'status': 'ok', 'value': {'i': 3}})\n"
        "    os.write(3, (line + '\\n').encode())\n"
        "def add(a, b):\n    return 0\n"
    )
    r = run(
        contained_client, code, ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(3, 3) == 6"]
    )
    # the forged line guessed "3", which is right only for the first test; the judge holds the rest
    assert r.verdicts[1:] == ["failed", "failed"] and r.passed <= 1
    assert_honest(contained_client)


def test_forged_results_before_loading_are_ignored(contained_client):
    code = (
        'import os\nos.write(3, b\'{"event": "result", "index": 0, "status": "ok", "value": null}\\n\')\n'
        "os._exit(0)\n"
    )
    r = run(contained_client, code, ["assert is_ok()"])
    assert r.verdicts == ["crashed"]
    assert_honest(contained_client)


def test_monkeypatching_assert_machinery(contained_client):
    code = (
        "import builtins\nclass Anything:\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = object.__hash__\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"
        "builtins.bool = lambda x: True\ndef add(a, b):\n    return Anything()\n"
    )
    r = run(contained_client, code, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    assert r.passed == 0
    assert_honest(contained_client)


def test_patching_the_harness_output_fails_safe(contained_client):
    code = (
        "import os, json\nos.write = lambda fd, data: len(data)\njson.dumps = lambda *a, **k: '{}'\nx = 1\n"
    )
    r = run(contained_client, code, ["assert x == 1", "assert x == 2"])
    assert "passed" not in r.verdicts[1:]
    assert_honest(contained_client)


def test_threads_that_outlive_the_job(contained_client, sandbox_cfg, sandbox_server):
    code = (
        "import threading, time\ndef spin():\n    while True:\n        time.sleep(0.01)\n"
        "for _ in range(8):\n    threading.Thread(target=spin).start()\nx = 1\n"
    )
    r = run(contained_client, code, ["assert x == 1"], time_limit_s=2)
    assert r.verdicts == ["passed"] and r.duration_s < 2
    assert sandbox_uid_processes(contained_client, sandbox_server) == []
    assert_honest(contained_client)


def test_leftover_daemonised_children_are_killed(contained_client, sandbox_cfg, sandbox_server):
    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(600)\n    os._exit(0)\ntime.sleep(0.1)\nx = 1\n"
    )
    r = run(contained_client, code, ["assert x == 1"])
    assert r.verdicts == ["passed"]
    assert sandbox_uid_processes(contained_client, sandbox_server) == []
    assert_honest(contained_client)


def test_privilege_and_namespace_escapes_are_denied(contained_client):
    code = (
        "import os, ctypes\ndef attempts():\n    out = []\n    for fn in (lambda: os.setuid(0),\n"
        "               lambda: ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0 or (_ for _ in ()).throw(OSError()),\n"
        "               lambda: ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0) == 0 or (_ for _ in ()).throw(OSError())):\n"
        "        try:\n            fn()\n            out.append('allowed')\n"
        "        except OSError as e:\n            out.append(type(e).__name__)\n    return out\n"
    )
    r = contained_client.run(Job(code=code, entry_point="attempts", inputs=[[]]))
    assert "allowed" not in r.outputs[0], r.outputs
    assert_honest(contained_client)


def test_segfault_costs_one_test(contained_client):
    code = "import ctypes\ndef f(x):\n    if x == 1:\n        ctypes.string_at(0)\n    return x\n"
    r = run(contained_client, code, ["assert f(1) == 1", "assert f(2) == 2"])
    assert r.verdicts == ["crashed", "passed"]
    assert_honest(contained_client)


def test_fifty_concurrent_hostile_and_honest_jobs(contained_client):
    hostile = [
        Job(code="while True:\n    pass\n", tests=["assert 1"], time_limit_s=0.3),
        Job(code="import os\nos._exit(0)\n", tests=["assert 1 == 1"]),
        Job(code="x = bytearray(4 * 1024**3)\n", tests=["assert 1"], memory_mb=256),
        Job(code="print('x' * 10**7)\n", tests=["assert 1 == 2"]),
        Job(code="import socket\nsocket.create_connection(('127.0.0.1', 9))\n", tests=["assert 1"]),
    ]
    honest = [
        Job(code=f"def f(x):\n    return x * {k}\n", tests=[f"assert f(3) == {3 * k}", "assert f(0) == 0"])
        for k in range(25)
    ]
    jobs = [job for pair in zip(hostile * 5, honest, strict=True) for job in pair]
    assert len(jobs) == 50
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # several concurrent requests, not one batch
        halves = list(pool.map(contained_client.run_batch, [jobs[i::4] for i in range(4)]))
    results = {id(j): r for i in range(4) for j, r in zip(jobs[i::4], halves[i], strict=True)}
    for job in honest:
        r = results[id(job)]
        assert r.infra_error is None and r.verdicts == ["passed", "passed"], (job.code, r)
    for job in hostile * 5:
        assert results[id(job)].passed == 0
    assert time.monotonic() - started < 60
    assert contained_client.run(HONEST).verdicts == ["passed", "passed"]
