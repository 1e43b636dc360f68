"""A pool of warm executor slots (executor.py processes) driven from the asyncio server.

Each slot is one long-lived fork server, wrapped in bubblewrap when the host allows it, that runs
one job at a time. A slot that dies is restarted and the job it held is reported as an
infrastructure error, never as a program failure.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import OrderedDict
from typing import Any

from diffucoder.sandbox import framing
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.layout import RuntimeLayout
from diffucoder.sandbox.tiers import StoredTier

log = logging.getLogger(__name__)


class SlotError(RuntimeError):
    """The executor process failed (died, spoke garbage): an infrastructure error."""


class SlotInputs:
    """Which tiers' inputs a slot holds (its executor keeps them decoded for the next jobs): the
    server sends a tier's inputs with the first job that needs them, and every io job lists the refs
    the slot is to keep (least recently used dropped first beyond ``capacity`` bytes of JSON), so the
    executor's cache follows this record even after a job it could not run."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held: OrderedDict[str, int] = OrderedDict()

    def attach(self, job: dict[str, Any], tier: StoredTier) -> None:
        """Add to an io job the inputs the slot lacks and the refs it keeps."""
        io = job["io"]
        if tier.ref in self.held:
            self.held.move_to_end(tier.ref)
        else:
            io["encoded"] = tier.encoded_inputs
            while self.held and sum(self.held.values()) + tier.inputs_bytes > self.capacity:
                self.held.popitem(last=False)
            if tier.inputs_bytes <= self.capacity:  # a tier larger than the cache is sent every time
                self.held[tier.ref] = tier.inputs_bytes
        io["hold"] = list(self.held)

    def clear(self) -> None:
        self.held.clear()


class ExecutorSlot:
    def __init__(
        self, index: int, cfg: SandboxConfig, runtime: RuntimeLayout, bwrap_prefix: list[str] | None
    ):
        self.index = index
        self.cfg = cfg
        self.runtime = runtime
        self.bwrap_prefix = bwrap_prefix
        self.proc: asyncio.subprocess.Process | None = None
        self.layers: dict[str, bool] = {}
        self.problems: list[str] = []
        self.sequence = 0
        self.inputs = SlotInputs(cfg.slot_inputs_cache_mb << 20)
        self.broken = False
        self.stderr_tail = ""
        self._stderr_pump: asyncio.Task | None = None

    async def start(self) -> None:
        self.inputs.clear()  # a new executor process holds nothing
        cmd = self.runtime.slot_command(str(self.index), str(self.cfg.sandbox_uid_base))
        if self.bwrap_prefix:
            cmd = [*self.bwrap_prefix, "--", *cmd]
        # inside bubblewrap the job dirs live on the slot's private /tmp, whatever the server's TMPDIR
        tmpdir = "/tmp" if self.bwrap_prefix else tempfile.gettempdir()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.runtime.slot_env(tmpdir=tmpdir),
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            raise SlotError(f"executor slot {self.index} could not run {cmd[0]}: {exc}") from None
        self.broken = False
        self.stderr_tail = ""
        self._stderr_pump = asyncio.create_task(self._pump_stderr(self.proc))
        try:
            hello = await asyncio.wait_for(self._read(), timeout=60)
        except (SlotError, TimeoutError) as exc:
            await self._reap()
            how = (
                "did not report ready within 60 s"
                if isinstance(exc, TimeoutError)
                else f"exited before it was ready (exit code {self.proc.returncode})"
            )
            raise SlotError(
                f"executor slot {self.index} {how}; its stderr ends with:\n{self.stderr_tail}"
            ) from None
        if not hello.get("ready"):
            await self._reap()
            raise SlotError(f"executor slot {self.index} did not start: {hello.get('error', hello)}")
        self.layers = dict(hello["layers"], bubblewrap=bool(self.bwrap_prefix))
        self.problems = list(hello.get("problems", []))

    async def _pump_stderr(self, proc: asyncio.subprocess.Process) -> None:
        """Forward the slot's stderr (bwrap's errors, the executor's tracebacks) to the log, keeping
        the end for start-up errors. Read continuously: a full pipe would block the executor."""
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            text = chunk.decode(errors="replace")
            self.stderr_tail = (self.stderr_tail + text)[-4000:]
            for line in text.rstrip().splitlines():
                log.warning("sandbox slot %d: %s", self.index, line)

    async def _reap(self) -> None:
        """Kill a slot that failed to start and wait until its stderr has been read to the end."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self._stderr_pump is not None:
            await self._stderr_pump

    async def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            frame = await framing.read_stream(self.proc.stdout)
        except framing.FrameError as exc:
            raise SlotError(f"executor slot {self.index} spoke garbage: {exc}") from None
        if frame is None:
            raise SlotError(f"executor slot {self.index} exited (code {self.proc.returncode})")
        return frame

    async def run(self, job: dict[str, Any], tier: StoredTier | None = None) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        if tier is not None:
            self.inputs.attach(job, tier)
        self.sequence += 1
        self.proc.stdin.write(framing.encode(dict(job, seq=self.sequence)))
        await self.proc.stdin.drain()
        # the executor enforces the job's limits itself; this outer deadline only catches a hung executor
        result = await asyncio.wait_for(self._read(), timeout=float(job["total_time_limit_s"]) + 30)
        if result.get("seq") != self.sequence:  # never hand one job's answer to another
            raise SlotError(
                f"executor slot {self.index} answered job {result.get('seq')}, expected {self.sequence}"
            )
        if result.get("infra_error"):
            self.inputs.clear()  # whatever the executor kept, the next io job sends its inputs again
        return result

    def alive(self) -> bool:
        return not self.broken and self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        self.broken = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class ExecutorPool:
    """N slots behind an asyncio queue of idle slots."""

    def __init__(self, cfg: SandboxConfig, runtime: RuntimeLayout, bwrap_prefix: list[str] | None):
        self.cfg = cfg
        self.slots = [ExecutorSlot(i, cfg, runtime, bwrap_prefix) for i in range(cfg.workers)]
        self.idle: asyncio.Queue[ExecutorSlot] = asyncio.Queue()

    async def start(self) -> None:
        """Start every slot; if any cannot start, stop the others and raise the first error."""
        outcomes = await asyncio.gather(*(s.start() for s in self.slots), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            await self.stop()
            raise failures[0]
        for slot in self.slots:
            self.idle.put_nowait(slot)

    @property
    def problems(self) -> list[str]:
        """What the first slot that found anything wrong with the runtime layout reported (the
        slots share the layout; only their uids differ)."""
        return next((s.problems for s in self.slots if s.problems), [])

    @property
    def slot_pids(self) -> list[int]:
        """Host pids of the slot processes (bwrap or executor): every job process descends from one."""
        return [s.proc.pid for s in self.slots if s.proc is not None]

    @property
    def layers(self) -> dict[str, bool]:
        return self.slots[0].layers if self.slots else {}

    async def run(self, job: dict[str, Any], tier: StoredTier | None = None) -> dict[str, Any]:
        slot = await self.idle.get()
        try:
            if not slot.alive():  # killed when a request was cancelled mid-job, or died between jobs
                await self._restart(slot)
            return await slot.run(job, tier)
        except (SlotError, TimeoutError, ConnectionError, BrokenPipeError) as exc:
            log.error("executor slot %d failed: %r; restarting it", slot.index, exc)
            await self._restart(slot)
            return {"infra_error": f"executor slot {slot.index} failed: {exc}"}
        except asyncio.CancelledError:
            # the request went away (shutdown past its grace): the slot is mid-job and would answer
            # the next caller with this job's result, so it is killed and restarted before reuse
            slot.kill()
            raise
        finally:
            self.idle.put_nowait(slot)

    async def _restart(self, slot: ExecutorSlot) -> None:
        if slot.proc is not None and slot.proc.returncode is None:
            slot.proc.kill()
            await slot.proc.wait()
        await slot.start()

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.slots))
