"""The code that runs inside the sandbox child, around the code under test.

It is imported by the warm fork server before any job, so each job pays only for a fork. It
executes the solution once, then each probe (see probes.py), and writes one JSON line per event to
the result pipe. Nothing it writes is believed blindly: the executor derives verdicts from these
lines plus the child's fate, and values are compared on the trusted side against expected values
the child never sees.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import sys
import time
from typing import Any

from diffucoder.sandbox.codec import CodecError, decode, digest, encode


class ProbeTimeout(BaseException):
    """Raised by the per-test timer; a BaseException so ``except Exception`` in user code lets it pass."""


def _on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise ProbeTimeout()


class _Channel:
    """Line-oriented writer to the result pipe (raw os.write: no buffer the code under test can reach)."""

    def __init__(self, fd: int):
        self.fd = fd

    def send(self, **msg: Any) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]


def _status_of(exc: BaseException) -> str:
    if isinstance(exc, ProbeTimeout):
        return "timeout"
    if isinstance(exc, MemoryError):
        return "memory"
    return "error"


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:500] + "..."


def run(job: dict[str, Any], start: int, channel_fd: int) -> None:
    """Execute the solution and probes[start:]; never returns (exits the child)."""
    channel = _Channel(channel_fd)
    limits = [float(t) for t in job["time_limits_s"]]
    inputs = [decode(x) for x in job.get("inputs") or []]
    stop_on_failure = bool(job.get("stop_on_failure"))
    signal.signal(signal.SIGALRM, _on_alarm)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        code = compile(job["code"], "<solution>", "exec")
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        channel.send(event="syntax_error", error=_describe(exc))
        os._exit(0)
    try:
        signal.setitimer(signal.ITIMER_REAL, float(job["load_time_limit_s"]))
        exec(code, namespace)
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as exc:  # noqa: BLE001 - everything the solution raises is its own failure
        signal.setitimer(signal.ITIMER_REAL, 0)
        channel.send(event="load_failed", status=_status_of(exc), error=_describe(exc))
        _flush_and_exit()
    channel.send(event="loaded")
    probes = job["probes"]
    for index in range(start, len(probes)):
        status = _run_probe(probes[index], index, limits[index], namespace, inputs, channel)
        if status != "ok" and stop_on_failure:
            break
    _flush_and_exit()


def _run_probe(
    probe: dict[str, Any],
    index: int,
    limit: float,
    namespace: dict[str, Any],
    inputs: list[Any],
    channel: _Channel,
) -> str:
    """Run one probe under its time limit and report it; returns the reported status."""
    began = time.perf_counter()
    try:
        if probe["mode"] == "call":
            # EvalPlus times only the call: the function is looked up and the arguments copied
            # first (a copy, so a solution that mutates its arguments changes nothing judged)
            function = namespace[probe["source"]]
            args = copy.deepcopy(inputs[probe["input"]])
            began = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, limit)
            value = function(*args)
        elif probe["mode"] == "value":
            signal.setitimer(signal.ITIMER_REAL, limit)
            value = eval(compile(probe["source"], f"<test {index}>", "eval"), namespace)
        else:
            signal.setitimer(signal.ITIMER_REAL, limit)
            exec(compile(probe["source"], f"<test {index}>", "exec"), namespace)
            value = None
        signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.perf_counter() - began
    except BaseException as exc:  # noqa: BLE001
        signal.setitimer(signal.ITIMER_REAL, 0)
        status = _status_of(exc)
        channel.send(
            event="result",
            index=index,
            status=status,
            error=_describe(exc),
            seconds=time.perf_counter() - began,
        )
        return status
    try:
        encoded = _encode_result(value, probe["mode"])
    except BaseException as exc:  # noqa: BLE001 - e.g. a repr that raises while digesting
        channel.send(event="result", index=index, status="error", error=f"unencodable result: {exc!r}"[:500])
        return "error"
    channel.send(event="result", index=index, status="ok", value=encoded, seconds=seconds)
    return "ok"


def _encode_result(value: Any, mode: str) -> Any:
    """The value's encoding; an io output too large to carry is sent as its digest."""
    try:
        return encode(value)
    except CodecError:
        if mode != "call":
            raise
        return digest(value)


def _flush_and_exit() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # the solution may have replaced or closed the stream
            stream.flush()
    os._exit(0)
