"""Trusted side: build probes for a request and turn the child's raw outcomes into verdicts.

This runs in the server process, which holds the expected values; the sandbox child only ever
sees the probes' sources (see probes.py for why that makes verdicts unforgeable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffucoder.sandbox.codec import CodecError, decode
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.evalplus import TierComparison
from diffucoder.sandbox.probes import Probe, probe_for_assert, probes_for_io
from diffucoder.sandbox.protocol import RunRequest, RunResult
from diffucoder.sandbox.tiers import StoredTier

_STATUS_VERDICT = {
    "error": "failed",
    "skipped": "skipped",
    "timeout": "timeout",
    "memory": "memory",
    "crashed": "crashed",
    "syntax_error": "syntax_error",
}


@dataclass(frozen=True)
class PreparedJob:
    """A request as the server runs it: its probes and, for an io job, its stored tier."""

    request: RunRequest
    probes: list[Probe]
    tier: StoredTier | None = None


def prepare(req: RunRequest, tier: StoredTier | None) -> PreparedJob:
    """The job's probes (io probes carry their decoded input and expected output for the judge);
    ``tier`` holds an io job's inputs, whether registered or sent with it."""
    if tier is not None:
        assert req.entry_point is not None
        if req.time_limits_s is not None and len(req.time_limits_s) != len(tier):
            raise ValueError(f"time_limits_s has {len(req.time_limits_s)} items for {len(tier)} inputs")
        return PreparedJob(req, probes_for_io(req.entry_point, tier.inputs, tier.expected), tier)
    return PreparedJob(req, [probe_for_assert(t) for t in req.tests])


def executor_job(job: PreparedJob, cfg: SandboxConfig) -> dict[str, Any]:
    """The message the fork server receives: limits, code and probe sources, no expected values.
    An io job names its inputs by the tier's ref (the slot is sent them once, pool.py) and its
    probes by the function and the number of inputs."""
    req, probes = job.request, job.probes
    per_test = req.time_limit_s or cfg.time_limit_s
    message = {
        "code": req.code,
        "time_limits_s": list(req.time_limits_s or [per_test] * len(probes)),
        "load_time_limit_s": req.load_time_limit_s or per_test,
        "total_time_limit_s": req.total_time_limit_s or cfg.total_time_limit_s,
        "stop_on_failure": req.stop_on_failure,
        # tests that run whole go to a tester process the solution cannot speak for (remote.py)
        "tester": any(p.mode == "exec" for p in probes),
        "memory_mb": req.memory_mb or cfg.memory_mb,
        "max_output_bytes": cfg.max_output_bytes,
        "max_processes": cfg.max_processes,
        "max_file_mb": cfg.max_file_mb,
        "max_open_files": cfg.max_open_files,
    }
    if job.tier is not None:
        message["io"] = {"call": req.entry_point, "count": len(probes), "inputs": job.tier.ref}
    else:
        message["probes"] = [p.wire() for p in probes]
    return message


def _io_comparison(job: PreparedJob) -> TierComparison | None:
    """EvalPlus's comparison of an io job's outputs, or None when the job only collects outputs."""
    req = job.request
    if job.tier is None or job.tier.expected is None or req.entry_point is None:
        return None
    return TierComparison(
        expected=job.tier.expected,
        inputs=job.tier.inputs,
        atol=req.atol,
        entry_point=req.entry_point,
        dataset=req.evalplus_dataset,
    )


def verdicts_from(raw: dict[str, Any], job: PreparedJob) -> RunResult:
    probes = job.probes
    if raw.get("infra_error"):
        return infra_result(raw["infra_error"], len(probes))
    want_outputs = job.tier is not None and job.tier.expected is None
    comparison = _io_comparison(job)
    verdicts, outputs, seconds = [], [], []
    wall_timeout_at = None
    for index, (probe, outcome) in enumerate(zip(probes, raw["outcomes"], strict=True)):
        outcome = outcome or {"status": "crashed"}
        verdict, output = _verdict(probe, outcome, comparison, index)
        verdicts.append(verdict)
        outputs.append(output)
        seconds.append(outcome.get("seconds") if isinstance(outcome.get("seconds"), float) else None)
        if outcome.get("wall") and wall_timeout_at is None:
            wall_timeout_at = index
    passed = verdicts.count("passed")
    program = raw.get("program") or {}
    return RunResult(
        verdicts=verdicts,
        passed=passed,
        total=len(probes),
        pass_rate=passed / len(probes) if probes else 0.0,
        program_status=str(program.get("status", "ok")),
        program_error=program.get("error"),
        outputs=outputs if want_outputs else None,
        test_seconds=seconds,
        stdout=raw.get("stdout", ""),
        stderr=raw.get("stderr", ""),
        duration_s=float(raw.get("duration_s", 0.0)),
        wall_timeout_at=wall_timeout_at,
    )


def _verdict(
    probe: Probe, outcome: dict[str, Any], comparison: TierComparison | None, index: int
) -> tuple[str, Any]:
    status = outcome.get("status")
    if status != "ok":
        return _STATUS_VERDICT.get(status, "crashed"), None
    if probe.mode == "exec":
        return "passed", None
    try:
        value = decode(outcome.get("value"))
    except CodecError:
        return "failed", None  # a malformed report is the program's doing, never a pass
    passed = comparison.passes(index, value) if comparison is not None else probe.judge(value)
    return ("passed" if passed else "failed"), outcome.get("value")


def infra_result(message: str, total: int) -> RunResult:
    """The sandbox failed, not the program: no verdict is claimed (callers retry or skip the reward)."""
    return RunResult(verdicts=[], passed=0, total=total, pass_rate=0.0, infra_error=message)
