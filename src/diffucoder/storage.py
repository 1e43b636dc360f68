"""One small API for artifacts addressed by URI: local paths, ``file://`` URIs and ``s3://bucket/key``.

This is the only module that knows about S3, so every stage reads and writes artifacts the same way
on a laptop and on a cluster.

Guarantees:

* Writes are atomic. A local file is written to a temporary name and renamed; an S3 object is one
  PUT (or one completed multipart upload), which S3 publishes all at once.
* A *directory artifact* is complete only when its ``MANIFEST.json`` (every file's path, size and
  sha256) exists, and that file is written last. ``get_dir`` refuses an artifact without one
  (:class:`IncompleteArtifactError`) and verifies every checksum, so an upload killed halfway is
  never mistaken for a checkpoint.
* Transient S3 failures (connection errors, 5xx, throttling) are retried with exponential backoff
  (tenacity; ``StorageConfig.max_attempts``). botocore's own retries are switched off so that one
  policy, ours, decides how long a call may take.
* Errors name the URI, the bucket and the endpoint: :class:`StorageCredentialsError` for bad or
  missing credentials, :class:`StorageUnreachableError` when the endpoint cannot be reached after
  the retries, :class:`StorageNotFoundError` (also a ``FileNotFoundError``) for a missing object.

boto3 is configured only through the standard ``AWS_*`` variables (``AWS_ENDPOINT_URL`` for
S3-compatible stores such as MinIO, SeaweedFS or moto). A boto3 ``Session`` is not thread-safe, so
the client is created lazily under a lock from a session used only for that, and then shared by
all threads of the process (boto3 clients are thread-safe; building one costs ~0.1-0.5 s of CPU,
too much to pay per worker thread). A forked process, or a change of endpoint or credentials in
the environment, gets a new client.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from diffucoder.config import StorageConfig

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1
_HASH_BLOCK = 1 << 20
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
T = TypeVar("T")


class StorageError(RuntimeError):
    """An artifact could not be read or written; the message names the URI."""


class IncompleteArtifactError(StorageError):
    """A directory artifact has no MANIFEST.json: it was never finished (or is still being written)."""


class StorageIntegrityError(StorageError):
    """A file does not match the size or sha256 recorded in its artifact's MANIFEST.json."""


class StorageCredentialsError(StorageError):
    """S3 refused or could not find credentials; retrying will not help."""


class StorageUnreachableError(StorageError):
    """The S3 endpoint could not be reached, even after retries."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """No object or file at the URI."""


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

_settings = StorageConfig()


def configure(cfg: StorageConfig) -> None:
    """Set retry/transfer settings for this process (call once at a stage entry with ``cfg.storage``)."""
    global _settings
    _settings = cfg


def settings() -> StorageConfig:
    return _settings


# --------------------------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def dir_prefix(self) -> str:
        """The key prefix that holds this location's children ("" for a bucket root)."""
        return self.key.rstrip("/") + "/" if self.key.strip("/") else ""


def is_s3(uri: str | os.PathLike[str]) -> bool:
    return str(uri).startswith("s3://")


def _parse_s3(uri: str) -> S3Location:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"S3 URI {uri!r} has no bucket (expected s3://bucket/key)")
    return S3Location(bucket, key)


def _local_path(uri: str | os.PathLike[str]) -> Path:
    text = str(uri)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if _SCHEME.match(text):
        # A typo'd or unsupported scheme must not silently become a relative local directory.
        raise ValueError(f"unsupported URI scheme in {text!r} (use a local path, file:// or s3://)")
    return Path(text)


def join(uri: str | os.PathLike[str], *parts: str) -> str:
    """Join path segments onto a URI with ``/`` for S3 and the OS separator locally."""
    text = str(uri)
    if is_s3(text):
        base = text.rstrip("/")
        tail = "/".join(p.strip("/") for p in parts if p.strip("/"))
        return f"{base}/{tail}" if tail else base
    if text.startswith("file://"):
        return "file://" + str(Path(text[len("file://") :], *parts))
    return str(Path(text, *parts))


# --------------------------------------------------------------------------------------------
# S3 client, retries and error translation
# --------------------------------------------------------------------------------------------

_client_lock = threading.Lock()
_cached_client: tuple[tuple, Any] | None = None

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
}
_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "InternalError",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}
_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3 (default)"


def _client() -> Any:
    """This process's S3 client, rebuilt when the endpoint, credentials or settings change."""
    cfg = _settings
    key = (
        os.getpid(),
        os.environ.get("AWS_ENDPOINT_URL_S3"),
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_SECRET_ACCESS_KEY"),
        os.environ.get("AWS_SESSION_TOKEN"),
        os.environ.get("AWS_DEFAULT_REGION"),
        os.environ.get("AWS_PROFILE"),
        cfg.connect_timeout_s,
        cfg.read_timeout_s,
        cfg.max_concurrency,
    )
    global _cached_client
    cached = _cached_client
    if cached is not None and cached[0] == key:
        return cached[1]
    with _client_lock:
        if _cached_client is not None and _cached_client[0] == key:
            return _cached_client[1]
        _cached_client = (key, _new_client(cfg))
        return _cached_client[1]


def _new_client(cfg: StorageConfig) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        # One retry policy (ours, below) instead of botocore's nested inside tenacity's.
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
        max_pool_connections=max(10, cfg.max_concurrency * 2),
        # Path-style works with every S3-compatible server, including bare IPs and moto.
        s3={"addressing_style": "path"},
    )
    return boto3.session.Session().client("s3", config=config)


def _root_error(exc: BaseException) -> BaseException:
    """boto3's upload wraps the ClientError in S3UploadFailedError without chaining ``from``."""
    from boto3.exceptions import S3UploadFailedError

    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        return exc.__context__
    return exc


def _error_code(exc: BaseException) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    exc = _root_error(exc)
    if isinstance(exc, ConnectionError | HTTPClientError):  # refused, reset, DNS, timeouts
        return True
    if isinstance(exc, ClientError):
        code, status = _error_code(exc)
        return status >= 500 or status == 429 or code in _TRANSIENT_CODES
    return False


def _translate(exc: BaseException, what: str, loc: S3Location) -> BaseException:
    """Map a botocore failure to our error types; unrelated exceptions pass through unchanged."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    root = _root_error(exc)
    where = f"{loc.uri} (bucket {loc.bucket!r}, endpoint {_endpoint()})"
    if isinstance(root, NoCredentialsError | PartialCredentialsError):
        return StorageCredentialsError(
            f"{what} {where}: no usable S3 credentials ({root}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for this endpoint"
        )
    if isinstance(root, ConnectionError | HTTPClientError):
        return StorageUnreachableError(
            f"{what} {where}: endpoint unreachable after {_settings.max_attempts} attempt(s): {root}; "
            "check AWS_ENDPOINT_URL and that the object store is running"
        )
    if isinstance(root, ClientError):
        code, status = _error_code(root)
        if code in _CREDENTIAL_CODES or status == 403:
            return StorageCredentialsError(
                f"{what} {where}: S3 rejected the credentials ({code or status}): "
                f"{root.response.get('Error', {}).get('Message', root)}; check AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        if code in _NOT_FOUND_CODES or status == 404:
            return StorageNotFoundError(f"{what} {where}: not found ({code or status})")
        return StorageError(f"{what} {where}: S3 error {code or status}: {root}")
    return exc


def _s3_call(what: str, loc: S3Location, fn: Callable[[], T]) -> T:
    """Run one S3 operation with our retry policy and error translation."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    cfg = _settings
    retrying = Retrying(
        stop=stop_after_attempt(cfg.max_attempts),
        wait=wait_exponential(multiplier=cfg.retry_initial_backoff_s, max=cfg.retry_max_backoff_s),
        retry=retry_if_exception(_is_transient),
        reraise=True,
    )
    try:
        return retrying(fn)
    except Exception as exc:
        translated = _translate(exc, what, loc)
        if translated is exc:
            raise
        raise translated from exc


def _multipart_bytes() -> int:
    return _settings.multipart_chunk_mb * 1024 * 1024


def _transfer_config(concurrency: int) -> Any:
    from boto3.s3.transfer import TransferConfig

    chunk = _multipart_bytes()
    return TransferConfig(
        multipart_threshold=chunk,
        multipart_chunksize=chunk,
        max_concurrency=concurrency,
        use_threads=True,
        num_download_attempts=1,  # our retry policy wraps the whole transfer; no second one inside
    )


# --------------------------------------------------------------------------------------------
# Local atomic writes
# --------------------------------------------------------------------------------------------


def _atomic_local_write(path: Path, writer: Callable[[Path], None]) -> None:
    """Write via ``writer(tmp)`` into a temp file beside ``path``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    if is_s3(uri):
        loc = _parse_s3(str(uri))
        return _s3_call(
            "read", loc, lambda: _client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        )
    path = _local_path(uri)
    if not path.is_file():
        raise StorageNotFoundError(f"read {path}: no such file")
    return path.read_bytes()


def write_bytes(uri: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` atomically: readers see the old content or the new, never a partial file."""
    if is_s3(uri):
        loc = _parse_s3(str(uri))
        _s3_call("write", loc, lambda: _client().put_object(Bucket=loc.bucket, Key=loc.key, Body=data))
        return
    _atomic_local_write(_local_path(uri), lambda tmp: tmp.write_bytes(data))


def read_text(uri: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


def write_text(uri: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    write_bytes(uri, text.encode(encoding))


def exists(uri: str | os.PathLike[str]) -> bool:
    """True for an existing file/object, or a directory/prefix with at least one object under it."""
    if not is_s3(uri):
        return _local_path(uri).exists()
    loc = _parse_s3(str(uri))
    if loc.key and not loc.key.endswith("/"):
        try:
            _s3_call("stat", loc, lambda: _client().head_object(Bucket=loc.bucket, Key=loc.key))
            return True
        except StorageNotFoundError:
            pass
    prefix = loc.dir_prefix()
    listing = _s3_call(
        "list", loc, lambda: _client().list_objects_v2(Bucket=loc.bucket, Prefix=prefix, MaxKeys=1)
    )
    return listing.get("KeyCount", 0) > 0


def list_files(prefix: str | os.PathLike[str]) -> list[str]:
    """Every file under a directory URI, recursively, as full URIs in sorted order."""
    if not is_s3(prefix):
        root = _local_path(prefix)
        if not root.is_dir():
            return []
        out = [join(str(prefix), p.relative_to(root).as_posix()) for p in root.rglob("*") if p.is_file()]
        return sorted(out)
    loc = _parse_s3(str(prefix))
    key_prefix = loc.dir_prefix()

    def _list() -> list[str]:
        keys = []
        pages = _client().get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=key_prefix)
        for page in pages:
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    return sorted(f"s3://{loc.bucket}/{k}" for k in _s3_call("list", loc, _list))


def put_file(local_path: str | os.PathLike[str], uri: str | os.PathLike[str]) -> None:
    """Copy a local file to a URI (multipart + parallel parts on S3 for large files)."""
    _put_file(Path(local_path), str(uri), _settings.max_concurrency)


def _put_file(src: Path, uri: str, concurrency: int) -> None:
    if not src.is_file():
        raise StorageNotFoundError(f"upload {src}: no such local file")
    if is_s3(uri):
        loc = _parse_s3(uri)
        if src.stat().st_size < _multipart_bytes():
            # One PUT; boto3's transfer manager would start a thread pool per file for the same call.
            def _put() -> None:
                with src.open("rb") as body:  # reopened per attempt so a retry sends the whole file
                    _client().put_object(Bucket=loc.bucket, Key=loc.key, Body=body)

            _s3_call("upload", loc, _put)
            return
        config = _transfer_config(concurrency)
        _s3_call("upload", loc, lambda: _client().upload_file(str(src), loc.bucket, loc.key, Config=config))
        return
    dst = _local_path(uri)
    if dst.resolve() != src.resolve():
        _atomic_local_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def get_file(uri: str | os.PathLike[str], local_path: str | os.PathLike[str]) -> Path:
    """Copy a URI to a local file (atomically: a failed download leaves no partial file)."""
    return _get_file(str(uri), Path(local_path), _settings.max_concurrency)


def _get_object_to(loc: S3Location, tmp: Path) -> None:
    with tmp.open("wb") as out:  # reopened (truncated) per attempt
        body = _client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        for block in body.iter_chunks(_HASH_BLOCK):
            out.write(block)


def _get_file(uri: str, dst: Path, concurrency: int, size_hint: int | None = None) -> Path:
    """Download to ``dst``; ``size_hint`` (from a manifest) lets small files skip the HEAD request."""
    if is_s3(uri):
        loc = _parse_s3(uri)
        config = _transfer_config(concurrency)

        def _download(tmp: Path) -> None:
            if size_hint is not None and size_hint < _multipart_bytes():
                _s3_call("download", loc, lambda: _get_object_to(loc, tmp))
                return
            _s3_call(
                "download",
                loc,
                lambda: _client().download_file(loc.bucket, loc.key, str(tmp), Config=config),
            )

        _atomic_local_write(dst, _download)
        return dst
    src = _local_path(uri)
    if not src.is_file():
        raise StorageNotFoundError(f"read {src}: no such file")
    if dst.resolve() != src.resolve():
        _atomic_local_write(dst, lambda tmp: shutil.copyfile(src, tmp))
    return dst


# --------------------------------------------------------------------------------------------
# Directory artifacts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    path: str  # POSIX path relative to the artifact root
    size: int
    sha256: str


@dataclass
class Manifest:
    """The list of files that make a directory artifact complete, with sizes and sha256 digests."""

    files: list[FileEntry]
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    version: int = MANIFEST_VERSION

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def content_sha256(self) -> str:
        """Hash of the files alone (path, size, sha256), not of when they were sealed: a step that
        rewrites byte-identical files gets the same hash."""
        entries = sorted((f.path, f.size, f.sha256) for f in self.files)
        return hashlib.sha256(json.dumps(entries).encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "created_at": self.created_at,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> Manifest:
        """Parse and sanity-check a manifest; ``source`` (its URI) goes into every error."""
        try:
            data = json.loads(text)
            entries = [FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageIntegrityError(f"{source}: malformed manifest ({exc!r})") from exc
        for entry in entries:
            parts = PurePosixPath(entry.path).parts
            if entry.path.startswith("/") or ".." in parts or not parts or entry.path == MANIFEST_NAME:
                raise StorageIntegrityError(f"{source}: manifest lists an unsafe path {entry.path!r}")
        return cls(entries, created_at=str(data.get("created_at", "")), version=int(data.get("version", 1)))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _scan_dir(local_dir: Path) -> Manifest:
    if not local_dir.is_dir():
        raise StorageNotFoundError(f"{local_dir}: not a directory")
    paths = sorted(
        p
        for p in local_dir.rglob("*")
        if p.is_file() and p.relative_to(local_dir).as_posix() != MANIFEST_NAME
    )
    entries = [
        FileEntry(p.relative_to(local_dir).as_posix(), p.stat().st_size, _sha256_file(p)) for p in paths
    ]
    return Manifest(entries)


def _scan_remote(uri: str) -> Manifest:
    """The manifest of an s3:// prefix whose files were written one by one (each read once to hash)."""
    prefix = uri.rstrip("/") + "/"
    entries = []
    for file_uri in sorted(list_files(uri)):
        rel = file_uri[len(prefix) :]
        if rel == MANIFEST_NAME:
            continue
        data = read_bytes(file_uri)
        entries.append(FileEntry(rel, len(data), hashlib.sha256(data).hexdigest()))
    return Manifest(entries)


def seal_dir(uri: str | os.PathLike[str]) -> Manifest:
    """Hash every file of a directory artifact and write MANIFEST.json into it (last), marking it
    complete: a local directory, or an s3:// prefix that fan-out tasks filled file by file."""
    if is_s3(uri):
        manifest = _scan_remote(str(uri))
        write_text(join(uri, MANIFEST_NAME), manifest.to_json())
        return manifest
    root = Path(uri)
    manifest = _scan_dir(root)
    write_text(root / MANIFEST_NAME, manifest.to_json())
    return manifest


def is_complete(uri: str | os.PathLike[str]) -> bool:
    """Whether a directory artifact has its MANIFEST.json (written last, so it means 'finished')."""
    return (
        exists(join(uri, MANIFEST_NAME)) if is_s3(uri) else _local_path(uri).joinpath(MANIFEST_NAME).is_file()
    )


def read_manifest(uri: str | os.PathLike[str]) -> Manifest:
    """The manifest of a complete directory artifact; IncompleteArtifactError when there is none."""
    manifest_uri = join(uri, MANIFEST_NAME)
    try:
        text = read_text(manifest_uri)
    except StorageNotFoundError:
        raise IncompleteArtifactError(
            f"{uri} is not a complete artifact: {MANIFEST_NAME} is missing (the write never finished, "
            "is still running, or this is not an artifact directory)"
        ) from None
    return Manifest.from_json(text, manifest_uri)


def _remove(uri: str) -> None:
    if is_s3(uri):
        loc = _parse_s3(uri)
        _s3_call("delete", loc, lambda: _client().delete_object(Bucket=loc.bucket, Key=loc.key))
    else:
        _local_path(uri).unlink(missing_ok=True)


def _parallel(items: Iterable[T], fn: Callable[[T], Any], workers: int) -> None:
    """Run ``fn`` over items in a thread pool; the first failure cancels what has not started."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _split_concurrency(n_files: int) -> tuple[int, int]:
    """(files in flight, parts per file): keep the total thread count near ``max_concurrency``."""
    total = _settings.max_concurrency
    files = max(1, min(total, n_files))
    return files, max(1, total // files)


def put_dir(local_dir: str | os.PathLike[str], uri: str | os.PathLike[str]) -> Manifest:
    """Upload a local directory as a directory artifact: files in parallel, MANIFEST.json last.

    An existing manifest at the destination is removed first, so while an overwrite is in
    progress (or after it fails) the destination reads as incomplete, never as the old artifact
    with some new files mixed in.
    """
    root, dest = Path(local_dir), str(uri)
    manifest = _scan_dir(root)
    _remove(join(dest, MANIFEST_NAME))
    files_in_flight, parts_per_file = _split_concurrency(len(manifest.files))
    _parallel(
        manifest.files,
        lambda e: _put_file(root / e.path, join(dest, *e.path.split("/")), parts_per_file),
        files_in_flight,
    )
    write_text(join(dest, MANIFEST_NAME), manifest.to_json())
    return manifest


def _verify(path: Path, entry: FileEntry, source: str) -> None:
    size = path.stat().st_size
    if size != entry.size:
        raise StorageIntegrityError(f"{source}: size {size} != {entry.size} recorded in {MANIFEST_NAME}")
    digest = _sha256_file(path)
    if digest != entry.sha256:
        raise StorageIntegrityError(
            f"{source}: sha256 {digest[:12]}... != {entry.sha256[:12]}... recorded in {MANIFEST_NAME}"
        )


def get_dir(uri: str | os.PathLike[str], local_dir: str | os.PathLike[str]) -> Path:
    """Download a complete directory artifact and verify every file against its manifest.

    Raises:
        IncompleteArtifactError: no MANIFEST.json at ``uri``.
        StorageIntegrityError: a file's size or sha256 differs from the manifest.
    """
    src, dest = str(uri), Path(local_dir)
    manifest = read_manifest(src)
    files_in_flight, parts_per_file = _split_concurrency(len(manifest.files))

    def _fetch(entry: FileEntry) -> None:
        file_uri = join(src, *entry.path.split("/"))
        target = dest.joinpath(*entry.path.split("/"))
        _get_file(file_uri, target, parts_per_file, size_hint=entry.size)
        _verify(target, entry, file_uri)

    _parallel(manifest.files, _fetch, files_in_flight)
    write_text(dest / MANIFEST_NAME, manifest.to_json())
    return dest
