"""Client of the sandbox service, used by the RL trainer and the evaluator.

``SandboxClient(url).run_batch(jobs)`` splits jobs into batches, sends them concurrently with httpx,
retries 429/5xx/connection errors with exponential backoff (tenacity) within a deadline, and raises
:class:`SandboxUnavailable` when the service cannot be reached. Verdicts are never invented here: a
job the service could not run comes back with ``infra_error`` set, for the caller to retry or skip.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from diffucoder.sandbox.codec import decode, encode
from diffucoder.sandbox.config import SandboxConfig


class SandboxUnavailable(RuntimeError):
    """The sandbox service could not be reached or kept failing; no verdict exists for the jobs."""


@dataclass
class Job:
    """One solution and its tests.

    Assert jobs: ``tests`` = assert statements (or whole test programs), one per test case.
    EvalPlus-style io jobs: ``entry_point`` + ``inputs`` (one argument list per case) and
    ``expected`` outputs (compared as EvalPlus 0.3.1 does, float tolerance ``atol``, the special
    oracles of ``evalplus_dataset``), or ``expected=None`` to get the outputs back in
    ``JobResult.outputs`` (e.g. from a canonical solution). ``time_limits_s`` gives each case its
    own limit; ``stop_on_failure`` runs nothing after the first case that raises or times out.
    """

    code: str
    tests: list[str] = field(default_factory=list)
    time_limit_s: float | None = None
    time_limits_s: list[float] | None = None
    load_time_limit_s: float | None = None
    total_time_limit_s: float | None = None
    memory_mb: int | None = None
    entry_point: str | None = None
    inputs: list[list[Any]] | None = None
    expected: list[Any] | None = None
    # the same, already encoded (e.g. a reference's outputs as they came): sent as they are
    expected_encoded: list[Any] | None = None
    atol: float = 0.0
    evalplus_dataset: str | None = None
    stop_on_failure: bool = False

    def payload(self) -> dict[str, Any]:
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
        if self.inputs is not None:
            body["inputs"] = [encode(list(args)) for args in self.inputs]
            body["expected"] = (
                self.expected_encoded
                if self.expected_encoded is not None
                else None
                if self.expected is None
                else [encode(x) for x in self.expected]
            )
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


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class SandboxClient:
    def __init__(self, url: str, cfg: SandboxConfig | None = None):
        self.url = url.rstrip("/")
        self.cfg = cfg or SandboxConfig()

    # -- sync facade (trainers and evaluators are synchronous) -------------------------------------
    def run_batch(self, jobs: list[Job]) -> list[JobResult]:
        return asyncio.run(self.arun_batch(jobs))

    def run(self, job: Job) -> JobResult:
        return self.run_batch([job])[0]

    def health(self) -> dict[str, Any]:
        try:
            response = httpx.get(f"{self.url}/healthz", timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SandboxUnavailable(f"sandbox at {self.url} is unreachable: {exc}") from exc
        return response.json()

    # -- async API ---------------------------------------------------------------------------------
    async def arun_batch(self, jobs: list[Job]) -> list[JobResult]:
        size = self.cfg.batch_size
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        limit = asyncio.Semaphore(self.cfg.max_concurrent_requests)
        async with httpx.AsyncClient() as http:

            async def one(chunk: list[Job]) -> list[JobResult]:
                async with limit:
                    return await self._post_batch(http, chunk)

            parts = await asyncio.gather(*(one(c) for c in chunks))
        return [r for part in parts for r in part]

    def _deadline(self, chunk: list[Job]) -> float:
        """Seconds to wait for one batch: the configured deadline plus every job's own wall limit, so a
        batch of slow (timing-out) programs is never mistaken for an unreachable sandbox."""
        limits = sum(j.total_time_limit_s or self.cfg.total_time_limit_s for j in chunk)
        return self.cfg.request_timeout_s + limits

    async def _post_batch(self, http: httpx.AsyncClient, chunk: list[Job]) -> list[JobResult]:
        body = {"jobs": [j.payload() for j in chunk]}
        deadline = self._deadline(chunk)
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=stop_after_attempt(self.cfg.max_attempts) | stop_after_delay(deadline),
            wait=_wait_with_retry_after(),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._send(http, body, deadline)
        except _Retryable as exc:
            raise SandboxUnavailable(
                f"sandbox at {self.url} failed after {self.cfg.max_attempts} attempts: {exc}"
            ) from exc
        results = response.json()["results"]
        if len(results) != len(chunk):
            raise SandboxUnavailable(
                f"sandbox at {self.url} answered {len(results)} results for {len(chunk)} jobs"
            )
        return [JobResult.from_json(r) for r in results]

    async def _send(self, http: httpx.AsyncClient, body: dict[str, Any], deadline: float) -> httpx.Response:
        try:
            response = await http.post(
                f"{self.url}/v1/run_batch", json=body, timeout=httpx.Timeout(deadline, connect=10)
            )
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After")
            raise _Retryable(
                f"HTTP {response.status_code}: {response.text[:200]}",
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        if response.status_code != 200:
            # a request the server rejects as malformed is a caller bug: say so, do not retry
            raise ValueError(
                f"sandbox at {self.url} rejected the batch: HTTP {response.status_code}: "
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
