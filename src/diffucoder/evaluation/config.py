"""Typed config for the `evaluation` section. Owned by the evaluation package; composed in diffucoder.config.

Defaults follow the DiffuCoder protocol (paper §3, §B.2, Table 2): instruct prompts with
the pre-filled assistant turn, generation length = steps = 512 for "1x" and half the steps for "2x",
the best of temperatures {0.2, 0.3, 0.4}, and EvalPlus execution semantics (expected outputs from the
canonical solution, per-problem time limits scaled from its run time).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from diffucoder import benchmark_data
from diffucoder.config_base import StrictModel
from diffucoder.decoding.config import FastDecodingConfig, FastSettings

BenchmarkName = Literal["humaneval", "humaneval_plus", "mbpp", "mbpp_plus", "tiny_heldout"]
Speed = Literal["1x", "2x"]


class EvaluationConfig(StrictModel):
    """Evaluation stage: benchmarks, prompts, sampling grid, execution limits and reporting."""

    # --- benchmarks and data ---
    benchmarks: list[BenchmarkName] = Field(
        ["humaneval", "humaneval_plus", "mbpp", "mbpp_plus"],
        description="benchmarks evaluated when the CLI gives no --benchmarks",
    )
    data_root: str | None = Field(
        None,
        description="local dir or s3:// prefix holding evalplus/*.jsonl.gz and mbpp/mbpp.jsonl (a relative "
        "path is resolved against the working directory); null = the data shipped with the package",
    )
    humaneval_plus_file: str = Field(benchmark_data.HUMANEVAL_PLUS, description="under data_root")
    mbpp_plus_file: str = Field(benchmark_data.MBPP_PLUS, description="under data_root")
    mbpp_file: str = Field(benchmark_data.MBPP, description="original MBPP under data_root")
    mbpp_task_ids: tuple[int, int] = Field(
        (11, 510), description="inclusive task_id range of original MBPP evaluated (11-510 = the test split)"
    )
    tiny_heldout_uri: str | None = Field(
        None, description="tiny tasks heldout.jsonl (data stage output); required for tiny_heldout"
    )
    max_problems: PositiveInt | dict[BenchmarkName, PositiveInt] | None = Field(
        None,
        description="evaluate only the first N problems: one N for every benchmark, or a mapping "
        "{benchmark: N} that caps the named ones and runs the others in full (None = all)",
    )

    # --- prompts ---
    prompt_style: Literal["instruct", "base"] = Field(
        "instruct",
        description="instruct: Qwen chat template + pre-filled assistant turn; base: plain completion",
    )
    system_prompt: str = Field(
        "You are a helpful assistant.",
        description="system turn of instruct prompts (paper, Qwen default); empty = no system turn, as in "
        "the tiny SFT data",
    )

    # --- generation grid ---
    gen_length: int = Field(512, ge=2, description="max_new_tokens; '1x' decodes it in gen_length steps")
    speeds: list[Speed] = Field(
        ["1x", "2x"], description="1x: steps = gen_length; 2x: steps = gen_length / 2"
    )
    temperatures: list[float] = Field(
        [0.2, 0.3, 0.4],
        description="sampling temperatures; the best per benchmark is reported (paper Table 2)",
    )
    n_samples: int = Field(1, ge=1, description="completions per problem for each (speed, temperature)")
    pass_k: list[int] = Field(
        [1], description="k values of the unbiased pass@k estimator (each <= n_samples)"
    )
    batch_size: int = Field(8, ge=1, description="prompts decoded together (left-padded)")
    fast_decoding: bool = Field(
        False,
        description="decode with the fast (Fast-dLLM style) sampler: evaluation.fast, else decoding.fast",
    )
    fast: FastSettings | None = Field(
        None,
        description="evaluation's own fast-decoding settings (threshold, block_length, kv_cache; keys left "
        "out take their defaults); null = the decoding section's, which GRPO rollouts also use",
    )
    seed_offset: int = Field(0, description="added to the run seed for the sampling generator")

    # --- execution (EvalPlus 0.3.1 semantics) ---
    time_limit_factor: float = Field(
        4.0,
        gt=0,
        description="a candidate's input gets factor x the canonical solution's time on it (EvalPlus: 4)",
    )
    min_time_limit_s: float = Field(
        1.0, gt=0, le=60, description="floor of an input's time limit (EvalPlus 0.3.1: 1 s)"
    )
    max_time_limit_s: float = Field(
        60.0,
        gt=0,
        le=598,
        description="cap of the sum of a tier's input limits; the tier's wall clock is that + 2 s "
        "(EvalPlus: 60 s, EVALPLUS_TIMEOUT_PER_TASK)",
    )
    memory_mb: int = Field(4096, ge=64, description="address-space limit of each candidate program")
    max_io_inputs: int | None = Field(
        None,
        ge=1,
        description="cap on the inputs of each tier (base, plus) per problem (None = all; smoke runs)",
    )
    reference_cache_uri: str | None = Field(
        None,
        description="local dir or s3:// prefix keeping expected outputs and reference timings per "
        "(data file, task); None = <out>/reference_cache",
    )

    # --- analysis and report ---
    arness_local_ks: list[int] = Field(list(range(1, 10)), description="k of local AR-ness@k (paper: 1..9)")
    arness_global_ks: list[int] = Field(list(range(1, 5)), description="k of global AR-ness@k (paper: 1..4)")
    heatmap_problems: int = Field(4, ge=0, description="problems shown as decode-order heatmaps")
    report_failures: int = Field(20, ge=0, description="failed samples listed with verdicts in report.html")

    def fast_decoding_for(self, shared: FastDecodingConfig) -> FastDecodingConfig:
        """The fast settings evaluation decodes with, given the decoding section's ``shared`` ones."""
        settings = self.fast if self.fast is not None else shared
        return FastDecodingConfig(**settings.model_dump(exclude={"enabled"}), enabled=self.fast_decoding)

    def problem_cap(self, benchmark: str) -> int | None:
        """How many problems of ``benchmark`` to evaluate (None = all), from ``max_problems``."""
        if isinstance(self.max_problems, dict):
            return self.max_problems.get(benchmark)
        return self.max_problems

    @model_validator(mode="after")
    def _check_grid(self) -> EvaluationConfig:
        problems = []
        if not self.speeds:
            problems.append("evaluation.speeds is empty; use ['1x'] or ['1x', '2x']")
        if not self.temperatures:
            problems.append("evaluation.temperatures is empty; the paper uses [0.2, 0.3, 0.4]")
        if any(t < 0 for t in self.temperatures):
            problems.append(f"evaluation.temperatures={self.temperatures} has a negative value")
        if "2x" in self.speeds and self.gen_length % 2:
            problems.append(f"evaluation.gen_length={self.gen_length} must be even for the '2x' speed")
        bad_k = [k for k in self.pass_k if not 1 <= k <= self.n_samples]
        if bad_k or not self.pass_k:
            problems.append(
                f"evaluation.pass_k={self.pass_k} needs 1 <= k <= n_samples={self.n_samples}; "
                "raise evaluation.n_samples or drop those k"
            )
        if self.min_time_limit_s > self.max_time_limit_s:
            problems.append(
                f"evaluation.min_time_limit_s={self.min_time_limit_s} exceeds max_time_limit_s={self.max_time_limit_s}"
            )
        lo, hi = self.mbpp_task_ids
        if lo > hi:
            problems.append(f"evaluation.mbpp_task_ids={self.mbpp_task_ids} is not an increasing range")
        if problems:
            raise ValueError("; ".join(problems))
        return self
