"""The service end to end through the real server: rewards, io jobs, client behaviour, metrics, CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sandbox_helpers import GOOD, NO_FENCE, SYNTAX, TWO_BLOCKS, assert_honest

from diffucoder.rl.rewards import code_rewards, format_reward, score_completions
from diffucoder.sandbox.client import Job, SandboxClient, SandboxUnavailable, Tier
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import free_port, local_sandbox

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-2, 5) == 3"]


def test_rewards_on_reference_cases(client):
    completions = [GOOD, SYNTAX, NO_FENCE, TWO_BLOCKS, GOOD.replace("a + b", "a - b")]
    codes = code_rewards(completions, [ADD_TESTS] * len(completions), client)
    fmts = [format_reward(c) for c in completions]
    assert list(zip(codes, fmts, strict=True)) == [
        (1.0, 1.0),
        (0.0, 0.5),
        (0.0, 0.0),
        (0.0, 0.0),
        (1 / 3, 1.0),
    ]
    scored = score_completions(completions, [ADD_TESTS] * len(completions), client, SandboxConfig())
    assert scored.total.tolist() == pytest.approx([2.5, 0.25, 0.0, 0.0, 2 / 3 + 0.5])
    assert scored.infra_errors == 0


def test_verdict_kinds_and_bounded_output(client):
    code = (
        "import sys\ndef f(x):\n    if x == 3:\n        raise ValueError('boom')\n    return x\nprint('hi')\n"
    )
    r = client.run(
        Job(code=code, tests=["assert f(1) == 1", "assert f(2) == 3", "assert f(3) == 3", "assert g(1)"])
    )
    assert r.verdicts == ["passed", "failed", "failed", "failed"] and r.stdout == "hi\n"
    assert r.passed == 1 and r.total == 4 and r.pass_rate == 0.25 and len(r.test_seconds) == 4
    syntax = client.run(Job(code="def f(:\n", tests=["assert f(1) == 1"]))
    assert syntax.verdicts == ["syntax_error"] and syntax.program_status == "syntax_error"


def test_a_tester_jobs_output_is_kept_when_the_solution_flushes_slowly(client):
    """A tester job's solution process is killed once the tester has its last answer; what the program
    printed must already be in the output pipe by then, however slowly its stdout flushes."""
    code = (
        "import sys, time\n"
        "class SlowFlush:\n"
        "    def __init__(self, stream):\n        self.stream = stream\n"
        "    def write(self, text):\n        return self.stream.write(text)\n"
        "    def flush(self):\n        time.sleep(0.3)\n        self.stream.flush()\n"
        "sys.stdout = SlowFlush(sys.stdout)\n"
        "print('hi')\n"
        "def f(x):\n    return x\n"
    )
    r = client.run(Job(code=code, tests=["def check(g):\n    assert g(1) == 1\ncheck(f)\n"]))
    assert r.verdicts == ["passed"] and r.stdout == "hi\n"


def test_humaneval_style_check_program(client):
    code = "def inc(x):\n    return x + 1\n"
    test = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\ncheck(inc)\n"
    assert client.run(Job(code=code, tests=[test])).verdicts == ["passed"]
    assert client.run(Job(code=code.replace("+ 1", "+ 2"), tests=[test])).verdicts == ["failed"]


def test_io_jobs_return_outputs_and_compare_like_evalplus(client):
    canonical = "def f(xs, k):\n    return (sum(xs) / k, sorted(set(xs)))\n"
    inputs = [[[1, 2, 2], 3], [[0.1, 0.2], 1], [[], 1]]
    got = client.run(Job(code=canonical, entry_point="f", inputs=inputs))
    assert got.verdicts == ["passed"] * 3
    assert got.outputs == [(5 / 3, [1, 2]), (0.30000000000000004, [0.1, 0.2]), (0.0, [])]
    assert isinstance(got.outputs[0], tuple)
    same = client.run(Job(code=canonical, entry_point="f", inputs=inputs, expected=got.outputs))
    assert same.verdicts == ["passed"] * 3
    as_list = "def f(xs, k):\n    return [sum(xs) / k, sorted(set(xs))]\n"
    assert client.run(Job(code=as_list, entry_point="f", inputs=inputs, expected=got.outputs)).passed == 0
    floats = "def g(x):\n    return x / 3\n"
    r = client.run(
        Job(code=floats, entry_point="g", inputs=[[1.0], [2.0]], expected=[0.3333334, 0.7], atol=1e-6)
    )
    assert r.verdicts == ["passed", "failed"]
    mutating = "def h(xs):\n    xs.append(1)\n    return len(xs)\n"
    assert client.run(Job(code=mutating, entry_point="h", inputs=[[[]], [[]]], expected=[1, 1])).passed == 2


def test_encoding_a_large_output_does_not_count_against_the_inputs_time_limit(client):
    # EvalPlus times only the call; HumanEval/130's tri(1000000) returns a million floats, whose
    # encoding and transfer once ran past the input's limit on a loaded machine. Here the call
    # returns a list built at load (microseconds, within 10 ms) that takes seconds to encode.
    code = "BIG = [i + 0.5 for i in range(3_900_000)]\n\ndef f():\n    return BIG\n"
    got = client.run(
        Job(code=code, entry_point="f", inputs=[[]], time_limits_s=[0.01], total_time_limit_s=60)
    )
    assert got.verdicts == ["passed"], got
    assert len(got.outputs[0]) == 3_900_000


def test_jobs_share_a_registered_tier_and_a_dropped_one_is_registered_again(client, sandbox_url):
    """Many samples of a problem name one tier; the slot's copy of its inputs is never changed by a
    solution that mutates its arguments; a ref the server no longer holds (409) is registered again."""
    tier = Tier([[[]], [[5]]], [1, 2])
    mutating = "def h(xs):\n    xs.append(1)\n    return len(xs)\n"
    wrong = "def h(xs):\n    return 0\n"
    jobs = [Job(code=mutating, entry_point="h", tier=tier) for _ in range(4)]
    results = client.run_batch([*jobs, Job(code=wrong, entry_point="h", tier=tier)])
    assert [r.verdicts for r in results] == [["passed", "passed"]] * 4 + [["failed", "failed"]]
    (ref,) = tier.refs.values()
    stale = "0" * 64
    response = httpx.post(
        f"{sandbox_url}/v1/run", json={"code": mutating, "entry_point": "h", "tier": stale}, timeout=30
    )
    assert response.status_code == 409 and response.json()["detail"]["missing_tiers"] == [stale]
    tier.refs = {url: stale for url in tier.refs}  # as if the server had restarted
    assert client.run(Job(code=mutating, entry_point="h", tier=tier)).verdicts == ["passed", "passed"]
    assert list(tier.refs.values()) == [ref]
    with pytest.raises(ValueError, match="tier or inputs"):
        Job(code=mutating, entry_point="h", tier=tier, inputs=[[[]]])


def test_bad_requests_are_rejected_with_the_field(client, sandbox_url):
    with pytest.raises(ValueError, match="not a Python identifier"):
        client.run(Job(code="x = 1", entry_point="f(); x", inputs=[[1]]))
    response = httpx.post(f"{sandbox_url}/v1/run", json={"code": "x=1", "tests": "assert 1", "bogus": 1})
    assert response.status_code == 422 and "bogus" in response.text


def test_single_run_endpoint_and_metrics(sandbox_url, client):
    response = httpx.post(
        f"{sandbox_url}/v1/run", json={"code": "x = 2", "tests": ["assert x == 2"]}, timeout=30
    )
    assert response.status_code == 200 and response.json()["verdicts"] == ["passed"]
    rejected = httpx.post(f"{sandbox_url}/v1/run", json={"code": "x = 2", "bogus": 1}, timeout=30)
    assert rejected.status_code == 422
    metrics = httpx.get(f"{sandbox_url}/metrics").text
    assert 'sandbox_verdicts_total{verdict="passed"}' in metrics
    assert "sandbox_job_seconds_bucket" in metrics and "sandbox_queue_depth" in metrics
    # every response is counted under its own status, errors included
    for code in ("200", "422"):
        assert f'sandbox_requests_total{{code="{code}",endpoint="/v1/run"}}' in metrics


def test_unreachable_service_raises_sandbox_unavailable():
    cfg = SandboxConfig(max_attempts=2, request_timeout_s=5)
    with pytest.raises(SandboxUnavailable, match="127.0.0.1"):
        SandboxClient(f"http://127.0.0.1:{free_port()}", cfg).run(Job(code="x=1", tests=["assert x == 1"]))
    with pytest.raises(SandboxUnavailable):
        SandboxClient(f"http://127.0.0.1:{free_port()}", cfg).health()


def test_full_queue_answers_429_and_the_client_retries():
    cfg = SandboxConfig(
        max_output_bytes=2048,
        workers=1,
        queue_size=1,
        sandbox_uid_base=62100,
        max_attempts=30,
        batch_size=1,
        max_concurrent_requests=6,
    )
    slow = {"code": "import time\ntime.sleep(0.4)\n", "tests": ["assert 1 == 1"]}
    with local_sandbox(cfg) as url:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as http:
                responses = await asyncio.gather(*(http.post(f"{url}/v1/run", json=slow) for _ in range(6)))
            return [r.status_code for r in responses], [r.headers.get("Retry-After") for r in responses]

        codes, retry_after = asyncio.run(burst())
        assert codes.count(200) >= 2 and codes.count(429) >= 1
        assert all(ra == "1" for c, ra in zip(codes, retry_after, strict=True) if c == 429)
        results = SandboxClient(url, cfg).run_batch([Job(code=slow["code"], tests=slow["tests"])] * 6)
        assert [r.verdicts for r in results] == [["passed"]] * 6
        # a full queue is waited out, however many 429s: they are not failed attempts
        patient = SandboxClient(url, cfg.model_copy(update={"max_attempts": 1}))
        assert [r.verdicts for r in patient.run_batch([Job(code=slow["code"], tests=slow["tests"])] * 6)] == [
            ["passed"]
        ] * 6
        # server-side limits travel from the caller's config to the subprocess server
        chatty = SandboxClient(url, cfg).run(Job(code="print('z' * 100000)", tests=["assert 1 == 1"]))
        assert chatty.stdout.startswith("z" * 2048) and "[... 97953 more bytes dropped]" in chatty.stdout


def test_cli_run_for_humans(tmp_path, sandbox_url):
    solution = tmp_path / "sol.py"
    solution.write_text("def add(a, b):\n    return a + b\nprint('side effect')\n")
    tests = tmp_path / "tests.txt"
    tests.write_text("# comment\nassert add(1, 2) == 3\nassert add(1, 1) == 3\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffucoder.cli",
            "sandbox",
            "run",
            str(solution),
            "--tests",
            str(tests),
            "--url",
            sandbox_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert "passed  assert add(1, 2) == 3" in out.stdout and "failed  assert add(1, 1) == 3" in out.stdout
    assert "passed 1/2" in out.stdout and "side effect" in out.stdout


def test_honest_job_after_everything(client):
    assert_honest(client)


def test_graceful_shutdown_finishes_in_flight_work(tmp_path):
    """SIGTERM while a job runs: the job's answer still arrives, then the server and its slots exit."""
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below, after the process ends
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "diffucoder.cli",
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--uid-base",
            "62300",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        job = {"code": "import time\ntime.sleep(1.0)\nx = 1\n", "tests": ["assert x == 1"]}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{url}/v1/run", json=job, timeout=30)
            time.sleep(0.5)
            server.send_signal(signal.SIGTERM)
            response = pending.result()
        assert response.status_code == 200 and response.json()["verdicts"] == ["passed"]
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_flooding_the_result_channel_is_a_crash_not_a_pass(client):
    code = 'import os\nline = b\'{"event": "loaded"}\\n\'\nfor _ in range(100000):\n    os.write(3, line)\nx = 1\n'
    r = client.run(Job(code=code, tests=["assert x == 1"]))
    assert r.verdicts == ["crashed"] and r.infra_error is None
    assert_honest(client)


def test_a_dead_executor_is_an_infra_error_then_recovers():
    """Kill the slot under a running job: that job reports infra_error (not a program failure) and
    the restarted slot serves the next job. Only processes of this test's own server are touched."""
    cfg = SandboxConfig(workers=1, sandbox_uid_base=62400, max_attempts=1)
    with local_sandbox(cfg) as url:
        client = SandboxClient(url, cfg)
        (slot_pid,) = client.health()["slot_pids"]
        job = Job(code="import time\ntime.sleep(3)\nx = 1\n", tests=["assert x == 1"])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.run, job)
            time.sleep(1.0)
            os.kill(slot_pid, signal.SIGKILL)
            result = pending.result(timeout=60)
        assert result.infra_error and "slot 0" in result.infra_error and result.verdicts == []
        assert client.run(Job(code="x = 1", tests=["assert x == 1"])).verdicts == ["passed"]
        assert client.health()["slot_pids"] != [slot_pid]


def test_the_local_server_stops_when_its_parent_is_killed():
    """A caller killed before its cleanup runs (SIGKILL) must not leave the sandbox server behind."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom diffucoder.sandbox.local import local_sandbox\n"
            "with local_sandbox() as url:\n    print(url, flush=True)\n    time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = parent.stdout.readline().strip()
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(0.2)
    pytest.fail(f"the sandbox server at {url} outlived its killed parent")
