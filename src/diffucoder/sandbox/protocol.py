"""HTTP request/response models of the sandbox service (pydantic, shared by server and client)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Verdict = Literal["passed", "failed", "timeout", "memory", "syntax_error", "crashed"]


class RunRequest(BaseModel):
    """One job: a solution plus either assert-style tests or EvalPlus-style io cases."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=1_000_000)
    tests: list[str] = Field(
        default_factory=list, description="assert statements or test programs, one per case"
    )
    entry_point: str | None = Field(None, description="io jobs: the function to call with each input")
    inputs: list[Any] | None = Field(None, description="io jobs: codec-encoded argument lists (see codec.py)")
    expected: list[Any] | None = Field(
        None, description="io jobs: codec-encoded outputs; None = return outputs"
    )
    atol: float = Field(0.0, ge=0)
    time_limit_s: float | None = Field(None, gt=0, le=60, description="per test case")
    total_time_limit_s: float | None = Field(None, gt=0, le=600)
    memory_mb: int | None = Field(None, ge=64, le=65536)

    @model_validator(mode="after")
    def _one_kind(self) -> RunRequest:
        if self.inputs is not None and self.entry_point is None:
            raise ValueError("inputs given without entry_point")
        if self.inputs is not None and self.tests:
            raise ValueError("give either tests or entry_point+inputs, not both")
        return self


class RunResult(BaseModel):
    verdicts: list[Verdict]
    passed: int
    total: int
    pass_rate: float
    infra_error: str | None = None
    program_status: str = "ok"
    program_error: str | None = None
    outputs: list[Any] | None = None
    test_seconds: list[float | None] = Field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[RunRequest] = Field(max_length=4096)


class BatchResult(BaseModel):
    results: list[RunResult]
