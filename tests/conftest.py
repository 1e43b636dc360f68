"""Shared fixtures: real servers on loopback for integration tests.

Integration tests talk to real servers the fixture started, never to mocks of our own code:

* ``moto_server`` (session): moto's standalone S3-compatible HTTP server in a subprocess.
* ``s3_env`` (function): AWS_* variables pointing at it and a fresh bucket; yields ``s3://<bucket>``.
* ``mlflow_server`` (session): a real ``mlflow server`` (SQLite backend, local artifact root).
* ``mlflow_sqlite`` (function): an embedded SQLite tracking URI in a temp dir, set as
  ``MLFLOW_TRACKING_URI`` for the test.

Servers run as subprocesses (not threads in the test process) so a server's work never competes
with the test for the GIL and a crashed test cannot leave a half-stopped server thread behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_BIN = Path(sys.executable).parent

# Any variable that could point boto3 or mlflow at a real account/server is dropped for servers
# the fixtures start, so tests only ever reach 127.0.0.1.
_LEAKY_ENV_PREFIXES = ("AWS_", "MLFLOW_", "DIFFUCODER_PARENT_RUN_ID")


def free_port() -> int:
    """A currently unused loopback port (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolate_env(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Unset ``names`` for one test AND restore them afterwards, even if code under test sets them.

    ``monkeypatch.delenv`` on an unset variable records nothing, so a variable the code sets
    during the test (e.g. $DIFFUCODER_PARENT_RUN_ID) would leak into later tests; setting it
    first makes monkeypatch remember that it was absent.
    """
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_ENV_PREFIXES)}
    env.update(extra)
    return env


def _wait_http_ok(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode} before {url} answered:\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and every process it spawned (it leads its own process group)."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def _start_server(cmd: list[str], health_url: str, log: Path, timeout_s: float, env: dict[str, str]):
    with log.open("wb") as out:
        # start_new_session: the server's own workers die with it when we terminate the group leader.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_http_ok(health_url, proc, timeout_s, log)
    except BaseException:
        _stop(proc)
        raise
    return proc


# Helpers reach tests as fixtures, not via ``from conftest import``: several test folders have a
# conftest.py, and that import would pick whichever one Python loaded last.


@pytest.fixture
def unused_port() -> Callable[[], int]:
    """Call it for a loopback port nothing listens on (e.g. to test an unreachable endpoint)."""
    return free_port


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Call it with variable names to unset them for the test and restore them afterwards."""
    return lambda *names: isolate_env(monkeypatch, *names)


@pytest.fixture(scope="session")
def benchmark_dir() -> Path:
    """The benchmark data shipped in the package (HumanEval+, MBPP+, MBPP)."""
    from diffucoder import benchmark_data

    return Path(benchmark_data.shipped_root())


def _moto(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    cmd = [str(_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    proc = _start_server(cmd, f"{url}/moto-api/", log, timeout_s=30, env=_clean_env(**env))
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3-compatible server on a free loopback port; yields its URL."""
    yield from _moto(tmp_path_factory)


@pytest.fixture(scope="session")
def moto_server_strict_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second moto server that checks every request's access key against its (empty) IAM store.

    Any key is unknown to it, so S3 calls fail the way a real store rejects bad credentials
    (``InvalidAccessKeyId``); used to test credential error messages.
    """
    yield from _moto(tmp_path_factory, INITIAL_NO_AUTH_ACTION_COUNT="0")


@pytest.fixture
def s3_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (via standard AWS_* env) at the moto server and create a fresh bucket.

    Returns ``s3://<bucket>``. Each test gets its own bucket so tests never see each other's objects.
    """
    import boto3

    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    # No shared config/credential files from the developer's home may leak into tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    # Never let botocore probe the EC2 metadata service when credentials are missing.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` (SQLite backend, proxied local artifacts) on loopback; yields its URL."""
    if shutil.which("mlflow", path=str(_BIN)) is None:
        pytest.fail(f"mlflow CLI not found in {_BIN}; run `make setup`")
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(_BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    # The job runner (a huey consumer pool for GenAI scorers) is not used by us and costs seconds.
    env = _clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = _start_server(cmd, f"{url}/health", root / "server.log", timeout_s=90, env=env)
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def _mlflow_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite DB with the schema migrated once; creating one costs seconds."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def mlflow_sqlite(_mlflow_sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh embedded SQLite tracking store for one test, exported as MLFLOW_TRACKING_URI."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_mlflow_sqlite_template, db)
    uri = f"sqlite:///{db}"
    isolate_env(monkeypatch, "MLFLOW_RUN_ID", "DIFFUCODER_PARENT_RUN_ID")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """CI shares 2 cores between all test areas: one torch thread per test wherever torch is loaded.

    Looks torch up in sys.modules instead of importing it, so tests that never touch a model (the
    sandbox server, storage) do not pay for a torch import.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_model_cfg():
    """A Qwen2 config far smaller than the tiny preset, so model tests run in well under a second."""
    from diffucoder.model.config import ModelConfig

    return ModelConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        rope_theta=10000.0,
        dtype="float32",
    )
