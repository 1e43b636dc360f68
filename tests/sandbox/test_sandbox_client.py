"""SandboxClient's connections against a real server: kept alive across calls, shared by threads,
never shared with a forked child, replaced when the server restarts, closed by close().

Connections are counted from the kernel's socket table (/proc/net/tcp*): every client-side socket
whose peer is the server's port, by local port, whatever its state (a closed one lingers in
TIME_WAIT), so the count is what the server saw, not what the client believes it did.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from diffucoder.sandbox.client import Job, SandboxClient, SandboxUnavailable
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import free_port, local_sandbox

ESTABLISHED = "01"


def client_sockets(server_port: int) -> dict[int, str]:
    """Local port -> TCP state (hex, as the kernel lists it) of every socket connected to
    ``server_port`` from the client side."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            if int(remote.rsplit(":", 1)[1], 16) == server_port:
                sockets[int(local.rsplit(":", 1)[1], 16)] = state
    return sockets


def numbered(i: int) -> Job:
    """A job whose result says which job it was (its stdout and its one test)."""
    return Job(code=f"x = {i}\nprint(x)\n", tests=[f"assert x == {i}"])


def assert_answers(job_numbers: list[int], results) -> None:
    assert [(r.verdicts, r.stdout) for r in results] == [(["passed"], f"{i}\n") for i in job_numbers]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    cfg = SandboxConfig(workers=2, sandbox_uid_base=63300)
    with local_sandbox(cfg) as url:
        yield url, urlsplit(url).port


def test_calls_share_one_kept_alive_connection(server):
    url, port = server
    before = client_sockets(port)
    with SandboxClient(url) as client:
        for i in range(20):
            assert_answers([i], [client.run(numbered(i))])
        assert client.health()["status"] == "ok"
        assert_answers([1, 2, 3], client.run_batch([numbered(1), numbered(2), numbered(3)]))
        opened = {p: s for p, s in client_sockets(port).items() if p not in before}
        assert list(opened.values()) == [ESTABLISHED], "20 runs, a health check and a batch: one connection"
    (mine,) = opened
    assert client_sockets(port).get(mine) != ESTABLISHED, "close() closes the connection"


def test_threads_share_one_client(server):
    url, port = server
    before = client_sockets(port)
    cfg = SandboxConfig(batch_size=2, max_concurrent_requests=3)
    with SandboxClient(url, cfg) as client:
        results: dict[int, list] = {}

        def caller(t: int) -> None:
            numbers = [100 * t + k for k in range(5)]
            single = [client.run(numbered(n)) for n in numbers]
            results[t] = [numbers, single, numbers, client.run_batch([numbered(n) for n in numbers])]

        threads = [threading.Thread(target=caller, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for t in range(6):
            numbers, single, batch_numbers, batch = results[t]
            assert_answers(numbers, single)
            assert_answers(batch_numbers, batch)
        opened = [p for p in client_sockets(port) if p not in before]
        # 6 threads, each with up to 3 requests in flight, sent 60 requests: connections are reused
        assert 1 <= len(opened) <= 6 * 3, opened


def test_a_forked_child_opens_its_own_connection(server):
    """The child must not write to the parent's socket (their requests and answers would mix)."""
    url, port = server
    with SandboxClient(url) as client:
        assert_answers([1], [client.run(numbered(1))])
        before = client_sockets(port)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report and leave without running the parent's cleanup
            try:
                answer = client.run(numbered(7))
                os.write(write_end, f"{answer.verdicts} {answer.stdout!r}".encode())
            except BaseException as exc:
                os.write(write_end, repr(exc).encode()[:1000])
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            reported = pipe.read()
        os.waitpid(pid, 0)
        assert reported == "['passed'] '7\\n'"
        assert_answers([2], [client.run(numbered(2))])  # the parent's connection still works
        after = client_sockets(port)
    parents = [p for p, s in before.items() if s == ESTABLISHED]
    assert len(parents) == 1 and after[parents[0]] == ESTABLISHED, "the parent kept its one connection"
    assert len(set(after) - set(before)) == 1, "the child connected on its own"


def test_a_restarted_server_is_reached_on_a_new_connection():
    """A kept-alive connection to a server that went away is replaced, not used: with one attempt
    allowed, a stale connection would surface as SandboxUnavailable."""
    cfg = SandboxConfig(workers=1, sandbox_uid_base=63400, max_attempts=1)
    port = free_port()
    with SandboxClient(f"http://127.0.0.1:{port}", cfg) as client:
        with local_sandbox(cfg, port=port):
            assert_answers([1], [client.run(numbered(1))])
            first = [p for p, s in client_sockets(port).items() if s == ESTABLISHED]
        with local_sandbox(cfg, port=port):
            assert_answers([2, 3], client.run_batch([numbered(2), numbered(3)]))
            now = [p for p, s in client_sockets(port).items() if s == ESTABLISHED]
    assert len(first) == 1 and len(now) == 1 and now != first


def test_close_is_idempotent_and_final(server):
    url, _ = server
    client = SandboxClient(url)
    client.close()  # never used: nothing to close
    client = SandboxClient(url, SandboxConfig(batch_size=1))
    assert_answers([1, 2], client.run_batch([numbered(1), numbered(2)]))  # threads and a connection
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="SandboxClient .* is closed"):
        client.run(numbered(3))


def test_async_callers_and_lanes_that_fail(server):
    url, _ = server
    with SandboxClient(url, SandboxConfig(batch_size=2)) as client:
        assert_answers(list(range(5)), asyncio.run(client.arun_batch([numbered(i) for i in range(5)])))
    # a batch split over several requests to a server that is not there: one clear error
    cfg = SandboxConfig(batch_size=1, max_attempts=2, request_timeout_s=5)
    with (
        SandboxClient(f"http://127.0.0.1:{free_port()}", cfg) as client,
        pytest.raises(SandboxUnavailable, match="127.0.0.1"),
    ):
        client.run_batch([numbered(i) for i in range(6)])
