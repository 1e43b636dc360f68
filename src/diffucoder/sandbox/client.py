"""Client of the sandbox service, used by the RL trainer and the evaluator.

``SandboxClient(url).run_batch(jobs)`` splits jobs into batches, sends them concurrently with httpx
on kept-alive connections, retries 5xx/connection errors with exponential backoff (tenacity) up to
``max_attempts`` within a deadline, waits out 429 (a full queue is back-pressure, not a failure: it
retries until the deadline), and raises :class:`SandboxUnavailable` when the service cannot be
reached. Verdicts are never invented here: a job the service could not run comes back with
``infra_error`` set, for the caller to retry or skip. Create one client per server and reuse it;
close it (or use it as a context manager) when done.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import queue
import ssl
import threading
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from diffucoder.sandbox.codec import decode, encode
from diffucoder.sandbox.config import SandboxConfig


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS settings every client of this process shares: httpx's defaults (its CA bundle, or
    ``SSL_CERT_FILE``), built once. httpx builds and loads a new context for each client it creates:
    that load alone costs more CPU than a sandbox job, and callers create clients freely."""
    return httpx.create_ssl_context()


class SandboxUnavailable(RuntimeError):
    """The sandbox service could not be reached or kept failing; no verdict exists for the jobs."""


class Tier:
    """The inputs of an io test tier and, for candidate jobs, their expected outputs: encoded once,
    registered once with each server (``POST /v1/tiers``, see tiers.py) and named by every job that
    shares the object, so many samples of a problem send them once."""

    def __init__(
        self,
        inputs: list[list[Any]],
        expected: list[Any] | None = None,
        *,
        encoded_expected: list[Any] | None = None,
    ):
        if expected is not None and encoded_expected is not None:
            raise ValueError("give expected or encoded_expected, not both")
        if expected is not None:
            encoded_expected = [encode(x) for x in expected]
        self.data = {"inputs": [encode(list(args)) for args in inputs], "expected": encoded_expected}
        self.refs: dict[str, str] = {}  # server URL -> the ref it registered this tier under
        self._nbytes: int | None = None

    @property
    def nbytes(self) -> int:
        if self._nbytes is None:
            self._nbytes = len(json.dumps(self.data))
        return self._nbytes


@dataclass
class Job:
    """One solution and its tests.

    Assert jobs: ``tests`` = assert statements (or whole test programs), one per test case.
    EvalPlus-style io jobs: ``entry_point`` + a :class:`Tier` of inputs (one argument list per case)
    and ``expected`` outputs (compared as EvalPlus 0.3.1 does, float tolerance ``atol``, the special
    oracles of ``evalplus_dataset``), or no expected outputs to get the outputs back in
    ``JobResult.outputs`` (e.g. from a canonical solution). Jobs of the same tier should share one
    ``Tier`` object; ``inputs=`` / ``expected=`` make one for this job alone. ``time_limits_s`` gives
    each case its own limit; ``stop_on_failure`` runs nothing after the first case that raises or
    times out.
    """

    code: str
    tests: list[str] = field(default_factory=list)
    time_limit_s: float | None = None
    time_limits_s: list[float] | None = None
    load_time_limit_s: float | None = None
    total_time_limit_s: float | None = None
    memory_mb: int | None = None
    entry_point: str | None = None
    tier: Tier | None = None
    inputs: list[list[Any]] | None = None
    expected: list[Any] | None = None
    atol: float = 0.0
    evalplus_dataset: str | None = None
    stop_on_failure: bool = False

    def __post_init__(self) -> None:
        if self.inputs is not None:
            if self.tier is not None:
                raise ValueError("give tier or inputs, not both")
            self.tier = Tier(self.inputs, self.expected)
        elif self.expected is not None:
            raise ValueError("expected outputs need inputs")

    def payload(self, tier_ref: str | None = None) -> dict[str, Any]:
        """The job as the server reads it: an io job names its tier by the ref it was registered
        under, or carries the tier's inputs and expected outputs when it has none."""
        body: dict[str, Any] = {
            "code": self.code,
            "tests": list(self.tests),
            "atol": self.atol,
            "stop_on_failure": self.stop_on_failure,
        }
        for key in (
            "time_limit_s",
            "time_limits_s",
            "load_time_limit_s",
            "total_time_limit_s",
            "memory_mb",
            "entry_point",
            "evalplus_dataset",
        ):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if tier_ref is not None:
            body["tier"] = tier_ref
        elif self.tier is not None:
            body.update(self.tier.data)
        return body


@dataclass
class JobResult:
    verdicts: list[str]
    passed: int
    total: int
    pass_rate: float
    infra_error: str | None = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    program_status: str = "ok"
    program_error: str | None = None
    outputs: list[Any] | None = None
    test_seconds: list[float | None] = field(default_factory=list)
    wall_timeout_at: int | None = None
    # the outputs as the service sent them (codec trees), e.g. to pass on as another job's expected
    encoded_outputs: list[Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        encoded = data.get("outputs")
        outputs = None if encoded is None else [None if o is None else decode(o) for o in encoded]
        skip = ("outputs", "encoded_outputs")
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k not in skip}
        return cls(**fields, outputs=outputs, encoded_outputs=encoded)


# seconds an idle connection stays in the pool: under uvicorn's 5 s keep-alive timeout, so the client
# drops a connection before the server closes it under a request
KEEPALIVE_S = 4.0

# tiers registered per request: large enough for HumanEval/15's 147 MB tier to go alone, small
# enough that many small tiers share a request
REGISTER_BYTES = 32 << 20


class _UnknownTiers(Exception):
    def __init__(self, refs: set[str]):
        super().__init__(f"{len(refs)} unknown tier ref(s)")
        self.refs = refs


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Busy(_Retryable):
    """429: the server's queue is full; retried until the deadline without counting as a failure."""


class SandboxClient:
    """A connection to one sandbox server, kept across calls.

    One ``httpx.Client`` (keep-alive pool) serves every call of this object: a one-job ``run`` costs a
    request on an open connection instead of a connection and an event loop of its own. The client
    is synchronous because its callers are (the trainer, the evaluator, the CLI): a blocking request
    on a pooled connection is cheaper than handing work to an event loop, and httpx documents its
    sync client as shareable between threads. ``run_batch`` keeps up to ``max_concurrent_requests`` requests in
    flight: the calling thread sends batches itself and a small pool of this client's threads sends
    the others, all pulling from one queue; a call with one batch never leaves its thread.

    Lifecycle: ``close()`` (or ``with SandboxClient(url) as client:``) closes the connections and the
    threads; it is idempotent, and a closed client refuses further calls. Any number of threads may
    call one client at once. After ``os.fork`` the child never touches the parent's sockets or
    threads: the first call in the child notices the new process id and opens its own.
    """

    def __init__(self, url: str, cfg: SandboxConfig | None = None):
        self.url = url.rstrip("/")
        self.cfg = cfg or SandboxConfig()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._http: httpx.Client | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._closed = False

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the threads; calling it again does nothing."""
        with self._own_lock():
            self._closed = True
            http, threads, self._http, self._threads = self._http, self._threads, None, None
        if threads is not None:
            threads.shutdown(wait=True)
        if http is not None:
            http.close()

    def _own_lock(self) -> threading.Lock:
        """This process's lock. After a fork the child forgets the parent's connections and threads
        without closing them (they belong to the parent) and takes a new lock, since the inherited
        one may have been held by a parent thread that does not exist in the child."""
        if os.getpid() != self._pid:
            self._lock = threading.Lock()
            self._pid = os.getpid()
            self._http, self._threads = None, None
        return self._lock

    def _connections(self) -> httpx.Client:
        with self._own_lock():
            if self._closed:
                raise RuntimeError(f"this SandboxClient for {self.url} is closed")
            if self._http is None:
                self._http = httpx.Client(
                    verify=_tls_context(),
                    limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
                )
            return self._http

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._own_lock():
            if self._closed:
                raise RuntimeError(f"this SandboxClient for {self.url} is closed")
            if self._threads is None:
                self._threads = ThreadPoolExecutor(
                    self.cfg.max_concurrent_requests, thread_name_prefix="sandbox-client"
                )
            return self._threads

    def run(self, job: Job) -> JobResult:
        return self.run_batch([job])[0]

    def run_batch(self, jobs: list[Job]) -> list[JobResult]:
        """Results in the order of ``jobs``, sent in requests of ``batch_size`` jobs."""
        http = self._connections()
        self._register(http, [j.tier for j in jobs if j.tier is not None])
        size = self.cfg.batch_size
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        if len(chunks) <= 1:
            return [r for chunk in chunks for r in self._post_batch(http, chunk)]
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(chunks)):
            todo.put(i)
        parts: list[list[JobResult]] = [[] for _ in chunks]
        failed = threading.Event()  # one lane's error stops the others after their current batch

        def lane() -> None:
            try:
                while not failed.is_set():
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    parts[i] = self._post_batch(http, chunks[i])
            except BaseException:
                failed.set()
                raise

        pool = self._thread_pool()
        helpers = [pool.submit(lane) for _ in range(min(self.cfg.max_concurrent_requests, len(chunks)) - 1)]
        try:
            lane()
        finally:
            futures.wait(helpers)
        for helper in helpers:
            helper.result()  # re-raises a helper's error
        return [r for part in parts for r in part]

    async def arun_batch(self, jobs: list[Job]) -> list[JobResult]:
        """``run_batch`` for async callers: the blocking call runs in a worker thread, so the event
        loop keeps serving while the sandbox works."""
        return await asyncio.to_thread(self.run_batch, jobs)

    def health(self) -> dict[str, Any]:
        try:
            response = self._connections().get(f"{self.url}/healthz", timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SandboxUnavailable(f"sandbox at {self.url} is unreachable: {exc}") from exc
        return response.json()

    def _register(self, http: httpx.Client, tiers: list[Tier]) -> None:
        """Register the tiers this server has no ref for, in requests of at most ~32 MB."""
        pending = list({id(t): t for t in tiers if self.url not in t.refs}.values())
        while pending:
            group, size = [], 0
            while pending and (not group or size + pending[0].nbytes <= REGISTER_BYTES):
                size += pending[0].nbytes
                group.append(pending.pop(0))
            body = {"tiers": [t.data for t in group]}
            response = self._send_retrying(http, "/v1/tiers", body, self.cfg.request_timeout_s)
            refs = response.json()["refs"]
            if len(refs) != len(group):
                raise SandboxUnavailable(
                    f"sandbox at {self.url} answered {len(refs)} refs for {len(group)} tiers"
                )
            for tier, ref in zip(group, refs, strict=True):
                tier.refs[self.url] = ref

    def _deadline(self, chunk: list[Job]) -> float:
        """Seconds to wait for one batch: the configured deadline plus every job's own wall limit, so a
        batch of slow (timing-out) programs is never mistaken for an unreachable sandbox."""
        limits = sum(j.total_time_limit_s or self.cfg.total_time_limit_s for j in chunk)
        return self.cfg.request_timeout_s + limits

    def _post_batch(self, http: httpx.Client, chunk: list[Job]) -> list[JobResult]:
        deadline = self._deadline(chunk)
        for _ in range(self.cfg.max_attempts):
            body = {"jobs": [j.payload(j.tier.refs[self.url] if j.tier else None) for j in chunk]}
            try:
                response = self._send_retrying(http, "/v1/run_batch", body, deadline)
                break
            except _UnknownTiers as exc:  # the server dropped them (restarted, or its store is full)
                tiers = [
                    j.tier for j in chunk if j.tier is not None and j.tier.refs.get(self.url) in exc.refs
                ]
                for tier in tiers:
                    tier.refs.pop(self.url, None)
                self._register(http, tiers)
        else:
            raise SandboxUnavailable(
                f"sandbox at {self.url} kept dropping registered tiers ({self.cfg.max_attempts} attempts): "
                "raise its sandbox.tier_cache_mb or lower batch_size"
            )
        results = response.json()["results"]
        if len(results) != len(chunk):
            raise SandboxUnavailable(
                f"sandbox at {self.url} answered {len(results)} results for {len(chunk)} jobs"
            )
        return [JobResult.from_json(r) for r in results]

    def _send_retrying(
        self, http: httpx.Client, path: str, body: dict[str, Any], deadline: float
    ) -> httpx.Response:
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=self._stop(deadline),
            wait=_wait_with_retry_after(),
            reraise=True,
        )
        try:
            return retrying(self._send, http, path, body, deadline)
        except _Retryable as exc:
            raise SandboxUnavailable(
                f"sandbox at {self.url} gave no answer (up to {self.cfg.max_attempts} failed attempts "
                f"within {deadline:.0f} s): {exc}"
            ) from exc

    def _stop(self, deadline: float):
        """Stop after ``max_attempts`` failures or at the deadline; a 429 is no failure (a large
        evaluation sends more jobs than the server queues, and the queue drains)."""
        failures = 0

        def stop(state: RetryCallState) -> bool:
            nonlocal failures
            failures += not isinstance(state.outcome.exception(), _Busy)
            return failures >= self.cfg.max_attempts or state.seconds_since_start >= deadline

        return stop

    def _send(self, http: httpx.Client, path: str, body: dict[str, Any], deadline: float) -> httpx.Response:
        """One POST. A kept-alive connection the server has closed (its idle timeout, a restart) is
        noticed by httpcore before reuse and replaced by a new one; one closed while the request is
        on its way is a transport error, retried like any other. A retried batch may run twice on
        the server (the protocol has no job ids to deduplicate by), but its results arrive once:
        only the answer to the request that succeeded is returned."""
        try:
            response = http.post(f"{self.url}{path}", json=body, timeout=httpx.Timeout(deadline, connect=10))
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After")
            raise (_Busy if response.status_code == 429 else _Retryable)(
                f"HTTP {response.status_code}: {response.text[:200]}",
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        if response.status_code == 409:
            raise _UnknownTiers(set(response.json()["detail"]["missing_tiers"]))
        if response.status_code != 200:
            # a request the server rejects as malformed is a caller bug: say so, do not retry
            raise ValueError(
                f"sandbox at {self.url} rejected the request to {path}: HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        return response


def _wait_with_retry_after():
    backoff = wait_exponential_jitter(multiplier=0.2, max=10)

    def wait(state) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        return max(hinted or 0.0, backoff(state))

    return wait
