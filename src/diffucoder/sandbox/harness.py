"""The code that runs inside the sandbox children, around the code under test.

It is imported by the warm fork server before any job, so each job pays only for a fork. ``run``
executes the solution once, then each probe (see probes.py), and writes one JSON line per event to
the result pipe. Nothing it writes is believed blindly: the executor derives verdicts from these
lines plus the child's fate, and values are compared on the trusted side against expected values
the child never sees. Jobs with tests that must run whole use two processes instead (remote.py):
``serve_solution`` in the solution's, ``run_tester`` in the tester's, which alone holds the pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

from diffucoder.sandbox import remote
from diffucoder.sandbox.codec import CodecError, digest, encode, too_large


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


def _load(job: dict[str, Any], report) -> dict[str, Any]:
    """Execute the program; reports how that went with ``report(event=..., ...)``. Returns its
    namespace, or exits the process when the program does not compile or fails while loading."""
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        code = compile(job["code"], "<solution>", "exec")
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        report(event="syntax_error", error=_describe(exc))
        os._exit(0)
    try:
        signal.setitimer(signal.ITIMER_REAL, float(job["load_time_limit_s"]))
        exec(code, namespace)
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as exc:  # noqa: BLE001 - everything the solution raises is its own failure
        signal.setitimer(signal.ITIMER_REAL, 0)
        report(event="load_failed", status=_status_of(exc), error=_describe(exc))
        _flush_and_exit()
    report(event="loaded")
    return namespace


def _run_probes(
    job: dict[str, Any], start: int, namespace: dict[str, Any], channel: _Channel, *, stop_on: set[str]
) -> str | None:
    """Run probes[start:]; returns the status that stopped the loop, if one did."""
    limits = [float(t) for t in job["time_limits_s"]]
    inputs = job.get("decoded_inputs") or []  # this process's copy (a fork): its calls may mutate it
    probes = job["probes"]
    for index in range(start, len(probes)):
        status = _run_probe(probes[index], index, limits[index], namespace, inputs, channel)
        if status in stop_on or (status != "ok" and job.get("stop_on_failure")):
            return status
    return None


def run(job: dict[str, Any], start: int, channel_fd: int) -> None:
    """Execute the solution and probes[start:]; never returns (exits the child)."""
    channel = _Channel(channel_fd)
    signal.signal(signal.SIGALRM, _on_alarm)
    namespace = _load(job, channel.send)
    _run_probes(job, start, namespace, channel, stop_on=set())
    _flush_and_exit()


def serve_solution(job: dict[str, Any], read_fd: int, write_fd: int) -> None:
    """The solution process of a tester job: load the program, then answer the tester; never returns."""
    # what the program printed goes into the output pipe before each answer: once the tester has its
    # last answer it exits and the executor kills this process, so output still buffered would be lost
    pipe = remote._Pipe(read_fd, write_fd, before_send=_flush_stdio)
    signal.signal(signal.SIGALRM, _on_alarm)
    namespace = _load(job, lambda **event: pipe.send({"load": event}))
    with contextlib.suppress(remote.SolutionGone):  # the tester is done: so is this process
        remote.SolutionServer(namespace, pipe).serve()
    _flush_and_exit()


def run_tester(job: dict[str, Any], start: int, channel_fd: int, read_fd: int, write_fd: int) -> None:
    """The tester process: relay how the program loaded, then run probes[start:] against the
    solution's names as proxies. A test that times out or loses the solution ends this attempt (the
    solution may be wedged; the executor resumes with fresh processes); never returns."""
    remote.make_undumpable()
    channel = _Channel(channel_fd)
    signal.signal(signal.SIGALRM, _on_alarm)
    pipe = remote._Pipe(read_fd, write_fd)
    try:
        # the solution process's first line comes from the executor's trusted code, before any of
        # the program's: without it that process never isolated itself (an infrastructure error)
        if pipe.receive() != {"event": "isolated"}:
            raise remote.SolutionGone()
    except remote.SolutionGone:
        channel.send(event="solution_not_isolated")
        _flush_and_exit()
    try:
        while True:  # the first well-formed load event; anything the solution printed before is ignored
            message = pipe.receive()
            if isinstance(message, dict) and isinstance(message.get("load"), dict):
                break
        event = message["load"]
        if event.get("event") not in ("loaded", "load_failed", "syntax_error"):
            raise remote.SolutionGone()
        channel.send(**{k: str(v)[:500] for k, v in event.items()})
        if event["event"] != "loaded":
            _flush_and_exit()
        signal.setitimer(signal.ITIMER_REAL, float(job["load_time_limit_s"]))
        namespace = remote.SolutionClient(pipe).namespace()
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException:  # noqa: BLE001 - the solution died or never answered: no test ran
        signal.setitimer(signal.ITIMER_REAL, 0)
        _flush_and_exit()
    stopped = _run_probes(job, start, namespace, channel, stop_on={"timeout", "crashed"})
    if stopped == "timeout" and not job.get("stop_on_failure"):
        channel.send(event="restart")  # the solution may still be busy: go on with fresh processes
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
            # EvalPlus times only the call; each input is used once per process, and the trusted
            # side judges with its own copy, so a solution that mutates its arguments changes nothing
            function = namespace[probe["source"]]
            args = inputs[probe["input"]]
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
        if probe["mode"] == "call" and _sizeable(value):
            # the call is done in time: encoding and sending its output count against the tier's
            # wall clock only, as EvalPlus's comparison does, not against this input's limit
            channel.send(event="returned", index=index)
    except BaseException as exc:  # noqa: BLE001
        signal.setitimer(signal.ITIMER_REAL, 0)
        status = _status_of(exc)
        if isinstance(exc, remote.SolutionGone):
            return "crashed"  # unreported: the executor gives the test the solution's fate
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


SIZEABLE_ITEMS = 10_000  # an output with this many items or more may take a noticeable time to encode


def _sizeable(value: Any) -> bool:
    """Whether ``value`` has ``SIZEABLE_ITEMS`` or more items at its top level (a lower bound on
    what encoding it walks); smaller outputs encode in well under the executor's grace period."""
    return type(value) in (list, tuple, set, frozenset, dict, str, bytes) and len(value) >= SIZEABLE_ITEMS


def _encode_result(value: Any, mode: str) -> Any:
    """The value's encoding; an io output too large to carry is sent as its digest (encoding and
    digesting run outside the input's time limit but inside the tier's wall clock, as EvalPlus's
    comparison does)."""
    if mode == "call" and too_large(value):
        return digest(value)
    try:
        return encode(value)
    except CodecError:
        if mode != "call":
            raise
        return digest(value)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # the solution may have replaced or closed the stream
            stream.flush()


def _flush_and_exit() -> None:
    _flush_stdio()
    os._exit(0)
