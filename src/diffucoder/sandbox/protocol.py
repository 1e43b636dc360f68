"""HTTP request/response models of the sandbox service (pydantic, shared by server and client)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Verdict = Literal["passed", "failed", "timeout", "memory", "syntax_error", "crashed", "skipped"]


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
    tier: str | None = Field(
        None,
        description="io jobs: the ref of inputs and expected outputs registered with /v1/tiers, instead "
        "of sending them with every job",
    )
    atol: float = Field(0.0, ge=0)
    evalplus_dataset: Literal["humaneval", "mbpp"] | None = Field(
        None, description="io jobs: apply that EvalPlus dataset's special oracles (chosen by entry point)"
    )
    time_limit_s: float | None = Field(None, gt=0, le=60, description="per test case")
    time_limits_s: list[Annotated[float, Field(gt=0, le=60)]] | None = Field(
        None, description="one limit per test case (EvalPlus scales each from the reference's time)"
    )
    load_time_limit_s: float | None = Field(
        None, gt=0, le=600, description="for loading the program; default the per-test limit"
    )
    total_time_limit_s: float | None = Field(None, gt=0, le=600)
    memory_mb: int | None = Field(None, ge=64, le=65536)
    stop_on_failure: bool = Field(
        False, description="run no test after the first that raises, times out or crashes (EvalPlus)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> RunRequest:
        if self.tier is not None and (self.inputs is not None or self.expected is not None):
            raise ValueError("give either tier or inputs+expected, not both")
        if (self.inputs is not None or self.tier is not None) and self.entry_point is None:
            raise ValueError("inputs given without entry_point")
        if (self.inputs is not None or self.tier is not None) and self.tests:
            raise ValueError("give either tests or entry_point+inputs, not both")
        if self.tier is not None:
            return self  # the tier's size is checked when the server resolves it
        n_cases = len(self.inputs) if self.inputs is not None else len(self.tests)
        if self.time_limits_s is not None and len(self.time_limits_s) != n_cases:
            raise ValueError(f"time_limits_s has {len(self.time_limits_s)} items for {n_cases} test cases")
        if self.expected is not None and len(self.expected) != n_cases:
            raise ValueError(f"expected has {len(self.expected)} items for {n_cases} inputs")
        return self


class TierData(BaseModel):
    """The inputs of an io tier and, for candidate jobs, its expected outputs (codec-encoded)."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any]
    expected: list[Any] | None = None

    @model_validator(mode="after")
    def _sizes(self) -> TierData:
        if self.expected is not None and len(self.expected) != len(self.inputs):
            raise ValueError(f"expected has {len(self.expected)} items for {len(self.inputs)} inputs")
        return self


class TiersRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiers: list[TierData] = Field(max_length=4096)


class TiersResult(BaseModel):
    refs: list[str]


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
    wall_timeout_at: int | None = Field(
        None, description="the test running when the job's wall-clock limit ended it, if it did"
    )
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[RunRequest] = Field(max_length=4096)


class BatchResult(BaseModel):
    results: list[RunResult]
