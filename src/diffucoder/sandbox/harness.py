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

from diffucoder.sandbox.codec import CodecError, decode, encode


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
    time_limit = float(job["time_limit_s"])
    inputs = [decode(x) for x in job.get("inputs") or []]
    signal.signal(signal.SIGALRM, _on_alarm)

    def input_for(i: int) -> list[Any]:
        return copy.deepcopy(
            inputs[i]
        )  # EvalPlus deep-copies too: a mutating solution must not see its own edits

    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": __builtins__,
        "__diffucoder_input__": input_for,
    }
    try:
        code = compile(job["code"], "<solution>", "exec")
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        channel.send(event="syntax_error", error=_describe(exc))
        os._exit(0)
    try:
        signal.setitimer(signal.ITIMER_REAL, time_limit)
        exec(code, namespace)
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as exc:  # noqa: BLE001 - everything the solution raises is its own failure
        signal.setitimer(signal.ITIMER_REAL, 0)
        channel.send(event="load_failed", status=_status_of(exc), error=_describe(exc))
        _flush_and_exit()
    channel.send(event="loaded")
    probes = job["probes"]
    for index in range(start, len(probes)):
        probe = probes[index]
        began = time.perf_counter()
        try:
            signal.setitimer(signal.ITIMER_REAL, time_limit)
            if probe["mode"] == "value":
                value = eval(compile(probe["source"], f"<test {index}>", "eval"), namespace)
            else:
                exec(compile(probe["source"], f"<test {index}>", "exec"), namespace)
                value = None
            signal.setitimer(signal.ITIMER_REAL, 0)
            try:
                encoded = encode(value)
            except CodecError as exc:
                channel.send(
                    event="result",
                    index=index,
                    status="error",
                    error=f"unencodable result: {exc}",
                    seconds=time.perf_counter() - began,
                )
                continue
            channel.send(
                event="result", index=index, status="ok", value=encoded, seconds=time.perf_counter() - began
            )
        except BaseException as exc:  # noqa: BLE001
            signal.setitimer(signal.ITIMER_REAL, 0)
            channel.send(
                event="result",
                index=index,
                status=_status_of(exc),
                error=_describe(exc),
                seconds=time.perf_counter() - began,
            )
    _flush_and_exit()


def _flush_and_exit() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # the solution may have replaced or closed the stream
            stream.flush()
    os._exit(0)
