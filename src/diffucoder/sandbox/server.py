"""The sandbox HTTP service: FastAPI app over an ExecutorPool.

Endpoints: POST /v1/run, POST /v1/run_batch, POST /v1/tiers (io inputs and expected outputs
registered once, then named by jobs: tiers.py), GET /healthz (active isolation layers), GET /metrics
(Prometheus). Admission is bounded: at most ``workers + queue_size`` jobs are accepted at once and
the rest get 429 with Retry-After, so an RL burst slows the trainer down instead of exhausting the
host. On shutdown uvicorn stops accepting, gives in-flight requests ``shutdown_grace_s`` to finish,
and any job that cannot finish is answered with an explicit infrastructure error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from diffucoder.sandbox import judge, layout, slot_setup
from diffucoder.sandbox.codec import CodecError
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.pool import ExecutorPool
from diffucoder.sandbox.protocol import (
    BatchRequest,
    BatchResult,
    RunRequest,
    RunResult,
    TierData,
    TiersRequest,
    TiersResult,
)
from diffucoder.sandbox.tiers import TierStore

log = logging.getLogger(__name__)

# ASGI's shapes, spelled here so the server needs nothing beyond FastAPI's own dependencies pinned
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

# layers without which the service refuses to start (unless --insecure-dev)
MANDATORY_LAYERS = (
    "unprivileged_uid",
    "rlimits",
    "nproc_binds",
    "seccomp_no_network",
    "subreaper",
    "empty_env",
    "private_tmp",
    "runtime_readable",
)


class InsecureHostError(RuntimeError):
    """A mandatory isolation layer is missing on this host."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sandbox_requests_total", "HTTP requests", ["endpoint", "code"], registry=self.registry
        )
        self.verdicts = Counter(
            "sandbox_verdicts_total", "test verdicts", ["verdict"], registry=self.registry
        )
        self.infra_errors = Counter(
            "sandbox_infra_errors_total", "jobs that failed in the sandbox itself", registry=self.registry
        )
        self.job_seconds = Histogram(
            "sandbox_job_seconds",
            "job latency, queueing included",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "sandbox_queue_depth", "accepted jobs waiting for a slot", registry=self.registry
        )
        self.in_flight = Gauge(
            "sandbox_jobs_in_flight", "accepted jobs (waiting or running)", registry=self.registry
        )


class SandboxService:
    """Admission control + pool + metrics; the FastAPI routes are thin wrappers around it."""

    def __init__(self, cfg: SandboxConfig, insecure_dev: bool = False):
        self.cfg = cfg
        self.insecure_dev = insecure_dev
        self.metrics = Metrics()
        self.accepted = 0
        self.running = 0
        self.draining = False
        self.pool: ExecutorPool | None = None
        self.tiers = TierStore(cfg.tier_cache_mb << 20)

    async def start(self) -> None:
        """The start-up probe: measure the runtime's paths with the real interpreter, then start the
        slots, each of which checks that its namespace shows them all to its sandbox uid."""
        runtime = await asyncio.to_thread(layout.discover)
        bwrap = slot_setup.bwrap_command(list(runtime.paths)) if self.cfg.bubblewrap else None
        self.pool = ExecutorPool(self.cfg, runtime, bwrap)
        await self.pool.start()
        if self.pool.problems:
            report = "\n  - ".join(self.pool.problems)
            if not self.insecure_dev:
                await self.pool.stop()
                raise layout.SandboxLayoutError(
                    f"the sandbox slots cannot run code from this layout (interpreter {runtime.interpreter}, "
                    f"package {runtime.package_root}):\n  - {report}"
                )
            log.warning("serving despite layout problems (--insecure-dev):\n  - %s", report)
        missing = [k for k in MANDATORY_LAYERS if not self.pool.layers.get(k)]
        if missing and not self.insecure_dev:
            await self.pool.stop()
            raise InsecureHostError(
                f"mandatory isolation layers unavailable: {', '.join(missing)}; fix the host or start with "
                "--insecure-dev (never for untrusted code)"
            )
        log.info("sandbox ready: %d slots, layers %s", self.cfg.workers, self.pool.layers)

    async def stop(self) -> None:
        self.draining = True
        if self.pool is not None:
            await self.pool.stop()

    def capacity(self) -> int:
        return self.cfg.workers + self.cfg.queue_size

    def admit(self, n: int) -> None:
        if self.draining:
            raise HTTPException(
                503, "sandbox is shutting down", headers={"Retry-After": str(self.cfg.retry_after_s)}
            )
        if n > self.capacity():
            raise HTTPException(413, f"batch of {n} jobs exceeds the server capacity {self.capacity()}")
        if self.accepted + n > self.capacity():
            raise HTTPException(
                429,
                f"queue full ({self.accepted} jobs accepted)",
                headers={"Retry-After": str(self.cfg.retry_after_s)},
            )
        self.accepted += n
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.in_flight.set(self.accepted)
        self.metrics.queue_depth.set(max(self.accepted - self.running, 0))

    def register(self, tiers: list[TierData]) -> list[str]:
        """Store io tiers (see tiers.py); a malformed one is a 422 naming it."""
        refs = []
        for i, data in enumerate(tiers):
            try:
                refs.append(self.tiers.put(data).ref)
            except CodecError as exc:
                raise HTTPException(422, f"tiers[{i}]: {exc}") from None
        return refs

    def prepare(self, reqs: list[RunRequest]) -> list[judge.PreparedJob]:
        """Validate every job before admitting any: a malformed batch is a 422 naming the job, not a
        run; refs of tiers this server does not hold (any more) are a 409 listing them."""
        missing = sorted({r.tier for r in reqs if r.tier is not None and self.tiers.get(r.tier) is None})
        if missing:
            raise HTTPException(
                409, {"message": "unknown tier refs: register them again", "missing_tiers": missing}
            )
        out = []
        for i, req in enumerate(reqs):
            try:
                tier = None
                if req.tier is not None:
                    tier = self.tiers.get(req.tier)
                elif req.inputs is not None:
                    tier = self.tiers.put(TierData(inputs=req.inputs, expected=req.expected))
                out.append(judge.prepare(req, tier))
            except (ValueError, CodecError) as exc:
                raise HTTPException(422, f"jobs[{i}]: {exc}") from None
        return out

    async def run_one(self, prepared: judge.PreparedJob) -> RunResult:
        """Run an admitted job; always releases its admission slot."""
        began = time.monotonic()
        try:
            job = judge.executor_job(prepared, self.cfg)
            assert self.pool is not None
            self.running += 1
            self._update_gauges()
            try:
                raw = await self.pool.run(job, prepared.tier)
            finally:
                self.running -= 1
            result = judge.verdicts_from(raw, prepared)
        finally:
            self.accepted -= 1
            self._update_gauges()
        if result.infra_error:
            self.metrics.infra_errors.inc()
        for verdict in result.verdicts:
            self.metrics.verdicts.labels(verdict).inc()
        self.metrics.job_seconds.observe(time.monotonic() - began)
        return result


class RequestCounter:
    """Counts responses by path and status. A plain ASGI middleware rather than
    ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs every request through extra
    tasks and memory streams, a sizeable part of the server's CPU per one-job request."""

    def __init__(self, app: ASGIApp, *, requests: Counter):
        self.app = app
        self.requests = requests

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = "500"  # what the client sees if the app fails before it starts a response

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.requests.labels(scope["path"], status).inc()


def _code_uids(cfg: SandboxConfig, pool: ExecutorPool | None) -> list[int]:
    """The uids model-written code runs as: one per slot where the server (root) drops to them,
    else the server's own unprivileged uid (a non-root pod, where switching uid needs CAP_SETUID)."""
    if pool is None or not pool.layers.get("unprivileged_uid"):
        return []
    if os.geteuid() != 0:
        return [os.geteuid()]
    if not pool.slots[0].layers.get("nproc_binds"):
        return []
    return [cfg.sandbox_uid_base + i for i in range(cfg.workers)]


def create_app(cfg: SandboxConfig, insecure_dev: bool = False) -> FastAPI:
    service = SandboxService(cfg, insecure_dev)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="diffucoder sandbox", lifespan=lifespan)
    app.state.service = service

    app.add_middleware(RequestCounter, requests=service.metrics.requests)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.post("/v1/run", response_model=RunResult)
    async def run(req: RunRequest) -> RunResult:
        (prepared,) = service.prepare([req])
        service.admit(1)
        return await service.run_one(prepared)

    @app.post("/v1/run_batch", response_model=BatchResult)
    async def run_batch(req: BatchRequest) -> BatchResult:
        prepared = service.prepare(req.jobs)
        service.admit(len(req.jobs))
        results = await asyncio.gather(*(service.run_one(job) for job in prepared))
        return BatchResult(results=list(results))

    @app.post("/v1/tiers", response_model=TiersResult)
    async def tiers(req: TiersRequest) -> TiersResult:
        return TiersResult(refs=service.register(req.tiers))

    @app.get("/healthz")
    async def healthz() -> dict:
        layers = service.pool.layers if service.pool else {}
        return {
            "status": "draining" if service.draining else "ok",
            "layers": layers,
            "mandatory_layers_active": all(layers.get(k) for k in MANDATORY_LAYERS),
            "insecure_dev": service.insecure_dev,
            "workers": cfg.workers,
            "jobs_accepted": service.accepted,
            "capacity": service.capacity(),
            "sandbox_uids": _code_uids(cfg, service.pool),
            "slot_pids": service.pool.slot_pids if service.pool else [],
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
