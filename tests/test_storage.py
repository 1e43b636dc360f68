"""diffucoder.storage on local paths and through a real S3-compatible server (moto) on loopback.

Failures are injected at the HTTP level by a small reverse proxy in front of the moto server, so
our code, botocore and tenacity run unmodified; nothing of ours is mocked.
"""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from diffucoder import storage
from diffucoder.config import StorageConfig

FAST_RETRIES = StorageConfig(max_attempts=3, retry_initial_backoff_s=0.01, retry_max_backoff_s=0.05)


@pytest.fixture(autouse=True)
def fast_retries() -> Iterator[None]:
    previous = storage.settings()
    storage.configure(FAST_RETRIES)
    yield
    storage.configure(previous)


def make_tree(root: Path, big_mib: int = 0) -> dict[str, bytes]:
    """A small directory with nesting, an empty file and (optionally) a file big enough for multipart."""
    files = {
        "config.yaml": b"seed: 0\n",
        "weights/model.safetensors": os.urandom(200_000),
        "weights/empty.bin": b"",
        "deep/a/b/c.txt": "unicode: λ✓\n".encode(),
    }
    if big_mib:
        files["weights/big.bin"] = os.urandom(big_mib * 1024 * 1024 + 123)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------------
# Local paths
# ------------------------------------------------------------------------------------------------


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.txt"
    storage.write_text(target, "first")
    storage.write_text(target, "second")
    assert storage.read_text(target) == "second"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]

    class Boom(Exception):
        pass

    def failing_writer(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise Boom

    with pytest.raises(Boom):
        storage._atomic_local_write(target, failing_writer)
    assert storage.read_text(target) == "second"  # the old content survives a failed write
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_file_uri_and_join(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/x/y.bin"
    storage.write_bytes(uri, b"\x00\x01")
    assert (tmp_path / "x" / "y.bin").read_bytes() == b"\x00\x01"
    assert storage.read_bytes(storage.join(f"file://{tmp_path}", "x", "y.bin")) == b"\x00\x01"
    assert storage.join("s3://b/run/", "/ckpt/", "step-1") == "s3://b/run/ckpt/step-1"
    assert storage.join("s3://b", "k") == "s3://b/k"
    assert storage.join(str(tmp_path), "a", "b") == str(tmp_path / "a" / "b")


def test_unknown_scheme_and_missing_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"gs://bucket/key"):
        storage.read_bytes("gs://bucket/key")
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        storage.read_bytes(missing)
    assert not storage.exists(missing)
    assert storage.list_files(tmp_path / "absent") == []


def test_local_dir_round_trip_and_listing(tmp_path: Path) -> None:
    src, dst, out = tmp_path / "src", tmp_path / "artifact", tmp_path / "out"
    files = make_tree(src)
    manifest = storage.put_dir(src, dst)
    assert sorted(e.path for e in manifest.files) == sorted(files)
    assert manifest.total_bytes == sum(len(v) for v in files.values())
    assert storage.is_complete(dst)
    assert storage.list_files(dst) == sorted(
        [str(dst / rel) for rel in files] + [str(dst / storage.MANIFEST_NAME)]
    )
    storage.get_dir(dst, out)
    assert {k: v for k, v in read_tree(out).items() if k != storage.MANIFEST_NAME} == files


def test_seal_dir_marks_complete_and_get_dir_verifies(tmp_path: Path) -> None:
    ckpt, out = tmp_path / "step-000050", tmp_path / "out"
    make_tree(ckpt)
    with pytest.raises(storage.IncompleteArtifactError, match="step-000050"):
        storage.get_dir(ckpt, out)
    assert not storage.is_complete(ckpt)
    manifest = storage.seal_dir(ckpt)
    assert storage.is_complete(ckpt)
    assert storage.read_manifest(ckpt).files == manifest.files
    (ckpt / "deep" / "a" / "b" / "c.txt").write_text("tampered")
    with pytest.raises(storage.StorageIntegrityError, match=r"c\.txt"):
        storage.get_dir(ckpt, out)


def test_manifest_with_unsafe_path_is_refused(tmp_path: Path) -> None:
    art = tmp_path / "art"
    art.mkdir()
    (art / storage.MANIFEST_NAME).write_text(
        '{"version": 1, "files": [{"path": "../escape", "size": 1, "sha256": "00"}]}'
    )
    with pytest.raises(storage.StorageIntegrityError, match=r"unsafe path '\.\./escape'"):
        storage.get_dir(art, tmp_path / "out")


# ------------------------------------------------------------------------------------------------
# S3 through the moto server
# ------------------------------------------------------------------------------------------------


def test_s3_bytes_text_exists_list(s3_env: str) -> None:
    uri = storage.join(s3_env, "runs", "r1", "result.json")
    assert not storage.exists(uri)
    storage.write_text(uri, '{"ok": true}')
    assert storage.read_text(uri) == '{"ok": true}'
    assert storage.exists(uri)
    assert storage.exists(storage.join(s3_env, "runs"))  # a prefix with objects counts as a directory
    assert not storage.exists(storage.join(s3_env, "run"))  # ...but a partial key name does not
    storage.write_bytes(storage.join(s3_env, "runs", "r1x"), b"x")
    assert storage.list_files(storage.join(s3_env, "runs", "r1")) == [uri]
    with pytest.raises(FileNotFoundError, match=r"runs/r1/missing.*NoSuchKey"):
        storage.read_bytes(storage.join(s3_env, "runs", "r1", "missing"))


def test_s3_put_get_file_and_dir_round_trip_with_multipart(s3_env: str, tmp_path: Path) -> None:
    storage.configure(FAST_RETRIES.model_copy(update={"multipart_chunk_mb": 5, "max_concurrency": 4}))
    src, out = tmp_path / "src", tmp_path / "out"
    files = make_tree(src, big_mib=11)  # 11 MiB with 5 MiB parts -> a 3-part multipart upload
    uri = storage.join(s3_env, "ckpt", "step-000010")
    manifest = storage.put_dir(src, uri)
    assert storage.is_complete(uri)
    assert len(manifest.files) == len(files)
    key = uri.removeprefix(f"{s3_env}/") + "/weights/big.bin"
    head = boto3.client("s3").head_object(Bucket=s3_env[5:], Key=key)
    assert head["ETag"].strip('"').endswith("-3"), "big file should have been a multipart upload"
    storage.get_dir(uri, out)
    assert {k: v for k, v in read_tree(out).items() if k != storage.MANIFEST_NAME} == files

    storage.put_file(src / "config.yaml", storage.join(s3_env, "single", "config.yaml"))
    got = storage.get_file(storage.join(s3_env, "single", "config.yaml"), tmp_path / "dl" / "c.yaml")
    assert got.read_bytes() == files["config.yaml"]


def test_s3_get_dir_detects_corrupted_object(s3_env: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    uri = storage.join(s3_env, "model")
    storage.put_dir(src, uri)
    boto3.client("s3").put_object(Bucket=s3_env[5:], Key="model/config.yaml", Body=b"seed: 1\n")
    with pytest.raises(storage.StorageIntegrityError, match=r"model/config\.yaml: sha256"):
        storage.get_dir(uri, tmp_path / "out")


def test_s3_overwrite_clears_old_manifest_first(s3_env: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make_tree(first)
    (second / "only.txt").parent.mkdir(parents=True)
    (second / "only.txt").write_text("new")
    uri = storage.join(s3_env, "final")
    storage.put_dir(first, uri)
    with FaultProxy(
        os.environ["AWS_ENDPOINT_URL"], fail=lambda m, path, n: 500 if m == "PUT" else None
    ) as px:
        os.environ["AWS_ENDPOINT_URL"] = px.url
        with pytest.raises(storage.StorageError):
            storage.put_dir(second, uri)
    # The failed overwrite must not leave the old manifest vouching for a mixed directory.
    assert not storage.is_complete(uri)


# ------------------------------------------------------------------------------------------------
# Injected failures
# ------------------------------------------------------------------------------------------------

SLOW_DOWN = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>injected</Message></Error>"
)
INTERNAL = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code><Message>injected</Message></Error>"


class FaultProxy:
    """A loopback reverse proxy in front of the moto server that can fail or delay requests.

    ``fail(method, path, n)`` is called for the n-th request (0-based) and returns an HTTP status
    to answer with instead of forwarding, or None to forward. ``delay_s`` slows each forwarded
    request down (to widen the window for killing an uploader mid-upload).
    """

    def __init__(
        self,
        upstream: str,
        fail: Callable[[str, str, int], int | None] = lambda m, p, n: None,
        delay_s: float = 0.0,
    ) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.fail, self.delay_s = fail, delay_s
        self.log: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def _handle(self) -> None:
                body = self._body()
                with proxy._lock:
                    n = len(proxy.log)
                    status = proxy.fail(self.command, self.path, n)
                    proxy.log.append((self.command, self.path, status or 0))
                if status:
                    payload = SLOW_DOWN if status == 503 else INTERNAL
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                time.sleep(proxy.delay_s)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("transfer-encoding", "content-length")
                }
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in (
                        "transfer-encoding",
                        "content-length",
                        "connection",
                        "date",
                        "server",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._original_endpoint = os.environ.get("AWS_ENDPOINT_URL")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._original_endpoint is not None:
            os.environ["AWS_ENDPOINT_URL"] = self._original_endpoint


def test_transient_503s_are_retried_then_succeed(s3_env: str) -> None:
    uri = storage.join(s3_env, "retry", "x.bin")
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], fail=lambda m, p, n: 503 if n < 2 else None) as px:
        os.environ["AWS_ENDPOINT_URL"] = px.url
        storage.write_bytes(uri, b"payload")  # attempts 1-2 get 503 SlowDown, attempt 3 lands
        assert storage.read_bytes(uri) == b"payload"
    assert [status for _, _, status in px.log[:3]] == [503, 503, 0]
    assert len(px.log) == 4  # 3 PUT attempts + 1 GET


def test_persistent_5xx_gives_up_after_max_attempts_naming_uri(s3_env: str) -> None:
    uri = storage.join(s3_env, "down", "x.bin")
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], fail=lambda m, p, n: 500) as px:
        os.environ["AWS_ENDPOINT_URL"] = px.url
        with pytest.raises(storage.StorageError, match=r"down/x\.bin.*InternalError"):
            storage.write_bytes(uri, b"payload")
    assert len(px.log) == FAST_RETRIES.max_attempts


def test_interrupted_dir_upload_is_never_complete(s3_env: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(12):
        (src / f"shard-{i:03d}.bin").parent.mkdir(parents=True, exist_ok=True)
        (src / f"shard-{i:03d}.bin").write_bytes(os.urandom(1000))
    uri = storage.join(s3_env, "ckpt")
    puts = {"n": 0}

    def fail_after_five_puts(method: str, path: str, n: int) -> int | None:
        if method == "PUT":
            puts["n"] += 1
            return 500 if puts["n"] > 5 else None
        return None

    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], fail=fail_after_five_puts) as px:
        os.environ["AWS_ENDPOINT_URL"] = px.url
        with pytest.raises(storage.StorageError):
            storage.put_dir(src, uri)
    uploaded = storage.list_files(uri)
    assert 0 < len(uploaded) < 12
    assert not storage.is_complete(uri)
    with pytest.raises(storage.IncompleteArtifactError, match=r"ckpt is not a complete artifact"):
        storage.get_dir(uri, tmp_path / "out")


def test_killed_uploader_process_leaves_an_incomplete_artifact(s3_env: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02d}.bin").write_bytes(os.urandom(500))
    uri = storage.join(s3_env, "killed")
    script = textwrap.dedent(
        f"""
        from diffucoder import storage
        from diffucoder.config import StorageConfig
        storage.configure(StorageConfig(max_concurrency=2))
        storage.put_dir({str(src)!r}, {uri!r})
        """
    )
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], delay_s=0.1) as px:
        env = dict(os.environ, AWS_ENDPOINT_URL=px.url)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env)
        try:
            deadline = time.monotonic() + 60
            while len(storage.list_files(uri)) < 3:
                assert proc.poll() is None, "uploader finished before it could be interrupted"
                assert time.monotonic() < deadline, "uploader made no progress"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert 3 <= len(storage.list_files(uri)) < 40
    assert not storage.is_complete(uri)
    with pytest.raises(storage.IncompleteArtifactError, match="killed"):
        storage.get_dir(uri, tmp_path / "out")


# ------------------------------------------------------------------------------------------------
# Credentials and reachability
# ------------------------------------------------------------------------------------------------


def test_missing_credentials_name_bucket_and_endpoint(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    bucket = s3_env[5:]
    with pytest.raises(storage.StorageCredentialsError) as err:
        storage.read_bytes(storage.join(s3_env, "k"))
    msg = str(err.value)
    assert f"bucket {bucket!r}" in msg and os.environ["AWS_ENDPOINT_URL"] in msg
    assert "AWS_ACCESS_KEY_ID" in msg


def test_rejected_access_key_is_a_credentials_error_without_retries(
    moto_server_strict_auth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with FaultProxy(moto_server_strict_auth) as px:
        monkeypatch.setenv("AWS_ENDPOINT_URL", px.url)
        with pytest.raises(storage.StorageCredentialsError, match=r"InvalidAccessKeyId") as err:
            storage.write_text("s3://locked-bucket/x.txt", "data")
    assert "'locked-bucket'" in str(err.value) and px.url in str(err.value)
    assert len(px.log) == 1  # a credential error is not transient: no retries


def test_unreachable_endpoint_fails_fast_naming_it(monkeypatch: pytest.MonkeyPatch, unused_port) -> None:
    endpoint = f"http://127.0.0.1:{unused_port()}"  # nothing listens here
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    start = time.monotonic()
    with pytest.raises(
        storage.StorageUnreachableError, match=rf"bucket 'some-bucket'.*{endpoint}.*3 attempt"
    ):
        storage.read_bytes("s3://some-bucket/key")
    assert time.monotonic() - start < 5


def test_content_hash_ignores_when_the_manifest_was_sealed():
    files = [storage.FileEntry("a.txt", 3, "ab" * 32)]
    first = storage.Manifest(files, created_at="2026-12-01T03:00:00+00:00")
    again = storage.Manifest(list(files), created_at="2026-12-02T03:00:00+00:00")
    assert first.to_json() != again.to_json() and first.content_sha256() == again.content_sha256()
    changed = storage.Manifest([storage.FileEntry("a.txt", 3, "cd" * 32)], created_at=first.created_at)
    assert changed.content_sha256() != first.content_sha256()


def test_seal_dir_seals_an_s3_prefix_written_file_by_file(s3_env: str, tmp_path: Path) -> None:
    uri = f"{s3_env}/corpus"
    storage.write_text(f"{uri}/shard-00000.parquet", "x" * 10)
    storage.write_text(f"{uri}/sub/stats.json", "{}")
    assert not storage.is_complete(uri)
    manifest = storage.seal_dir(uri)
    assert sorted(f.path for f in manifest.files) == ["shard-00000.parquet", "sub/stats.json"]
    assert storage.get_dir(uri, tmp_path / "copy").joinpath("sub/stats.json").read_text() == "{}"
