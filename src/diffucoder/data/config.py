"""Typed config for the `data` section. Owned by the data package; composed in diffucoder.config.

Defaults are the RefineCode/OpenCoder values (opc_data_filtering's code_filter_config.py) where they exist; a
threshold set to ``None`` turns that rule off (datatrove convention).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from diffucoder.config_base import StrictModel


class ReaderConfig(StrictModel):
    """What the readers accept; everything else is skipped and counted by reason."""

    max_file_bytes: int = Field(
        8_000_000, ge=1, description="larger source files are skipped (RefineCode: 8 MB)"
    )
    extensions: list[str] = Field([".py"], description="source-dir reader keeps files with these suffixes")
    exclude_dirs: list[str] = Field(
        ["site-packages", "__pycache__", ".git"],
        description="directory names the source-dir reader never enters",
    )


class GeneralFilterConfig(StrictModel):
    """RefineCode general code rules (drop-if thresholds; None disables a rule)."""

    max_size_bytes: int | None = Field(3_000_000, description="drop files larger than this")
    min_lines: int | None = Field(10, description="drop files with fewer raw lines")
    max_lines: int | None = Field(100_000, description="drop files with more raw lines")
    max_line_length: int | None = Field(1000, description="drop if the longest line is longer")
    min_mean_line_length: float | None = 5.0
    max_mean_line_length: float | None = 100.0
    min_alpha_fraction: float | None = Field(0.5, description="alphabetic share of non-whitespace chars")
    max_digit_fraction: float | None = 0.2
    max_whitespace_fraction: float | None = 0.5
    max_comment_fraction: float | None = Field(0.8, description="comment+docstring share of chars (Python)")
    drop_xml_declaration: bool = True
    drop_auto_generated: bool = Field(
        True, description="strict phrase list in the first 200 chars (the loose 'generate' rule is not used)"
    )
    drop_encoded_data: bool = True
    max_hex_fraction: float | None = 0.4
    max_long_string_line_fraction: float | None = Field(
        0.2, description="lines with a > 20-word string literal"
    )
    max_string_char_fraction: float | None = Field(0.6, description="share of chars inside string literals")
    max_long_word_in_string_fraction: float | None = Field(
        0.4, description="share of string chars in words > 20 chars (URLs excluded)"
    )
    max_prompt_comment_fraction: float | None = Field(
        0.01, description="'your code here'/'fixme'/'todo' lines"
    )
    max_assert_line_fraction: float | None = 0.4
    max_duplicate_line_fraction: float | None = 0.7
    max_replacement_char_fraction: float | None = 0.01
    min_words: int | None = 30
    min_chars: int | None = 50
    min_mean_word_length: float | None = 2.0
    max_mean_word_length: float | None = 10.0
    max_top_ngram_char_fraction: dict[int, float] | None = Field(
        {2: 0.20, 3: 0.18, 4: 0.16}, description="n -> max share of chars in the most frequent word n-gram"
    )
    max_duplicate_ngram_char_fraction: dict[int, float] | None = Field(
        {5: 0.80, 6: 0.70, 7: 0.70, 8: 0.70, 9: 0.70, 10: 0.60},
        description="n -> max share of chars covered by word n-grams that occur more than once",
    )


class PythonFilterConfig(StrictModel):
    """RefineCode Python-specific rules (ratios are per non-empty code line)."""

    require_ast_parse: bool = True
    max_function_fraction: float | None = 0.2
    require_variable: bool = True
    max_pass_fraction: float | None = 0.05
    max_import_fraction: float | None = 0.3
    max_simple_function_fraction: float | None = 0.1
    max_no_logic_score: float | None = 0.5
    no_logic_drop_probability: float = Field(
        0.8,
        ge=0,
        le=1,
        description="share of flagged files dropped, chosen by hashing the doc id (deterministic)",
    )
    max_print_fraction: float | None = 0.4


class DedupConfig(StrictModel):
    """Exact (sha256) then MinHash LSH near-dedup over code-token shingles."""

    exact: bool = True
    near: bool = True
    shingle_size: int = Field(5, ge=1, description="code-token n-gram size")
    bands: int = Field(25, ge=1, description="LSH bands b")
    rows: int = Field(10, ge=1, description="rows per band r; num_perm = bands * rows")
    seed: int = Field(1, ge=0, description="seed of the MinHash permutations")
    lsh_tasks: int = Field(
        25,
        ge=1,
        description="parallel tasks of the global LSH stage (KFP ParallelFor, local process pool); "
        "the (band, bucket range) cells are split among them, at most one task per cell",
    )
    band_ranges: int = Field(
        1,
        ge=1,
        description="bucket-hash ranges per band: each (band, range) cell holds ~1/band_ranges of "
        "the documents, so a task's memory shrinks with it (for corpora whose band columns do not "
        "fit one task)",
    )

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def threshold(self) -> float:
        """Jaccard similarity at which a pair becomes a candidate with probability ~1/2: (1/b)^(1/r)."""
        return (1.0 / self.bands) ** (1.0 / self.rows)


class DecontamConfig(StrictModel):
    """Benchmark decontamination (BigCode substring method + n-gram overlap)."""

    enabled: bool = True
    benchmarks_dir: str | None = Field(
        None,
        description="local dir or s3:// prefix holding evalplus/ and mbpp/ as in diffucoder/benchmark_data "
        "(a relative path resolves against the working directory); null = the data shipped with the package",
    )
    extra_files: list[str] = Field(
        [], description="more JSONL files (local or s3://) with prompt/canonical_solution/text/code fields"
    )
    ngram: int = Field(
        13, ge=8, description="n-gram size in code tokens (n >= 13 avoids number-sequence hits)"
    )
    max_ngram_hits: int = Field(0, ge=0, description="drop a document with more matching n-grams than this")
    min_substring_chars: int = Field(
        25,
        ge=1,
        description="normalised benchmark strings shorter than this are not used for substring matching",
    )


class PackConfig(StrictModel):
    """Packing tokenised documents into fixed-length rows for stages 1-2."""

    seq_len: int = Field(4096, ge=8, description="tokens per packed row (paper: 4096)")
    rows_per_shard: int = Field(4096, ge=1)


class TinyTasksConfig(StrictModel):
    """The generated Python function tasks of the tiny preset."""

    seed: int = 0
    n_train: int = Field(4000, ge=1)
    n_heldout: int = Field(200, ge=1)
    n_rl: int = Field(
        400,
        ge=1,
        description="stage-4 problems from the RL slice; keep it well below the slice's size (~1,750 "
        "chains at difficulty 2) or the draw exhausts the parameter-free operations and skews the mix",
    )
    difficulty: int = Field(2, ge=1, le=3, description="max operations composed per task (1-3 lines)")
    heldout_fraction: float = Field(
        0.15, gt=0, lt=1, description="share of the task space (hashed task keys) reserved for held-out"
    )
    rl_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of the task space reserved for the stage-4 RL problems"
    )
    slip_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="chance that a train solution writes a step that has a classic bug (/ for //, "
        ".sort() used as a value) with it, the instruction unchanged: the wrong answers of real "
        "instruction data, which only execution feedback (stage 4) tells apart; held-out and RL rows "
        "stay correct",
    )

    @model_validator(mode="after")
    def _slices_leave_room_for_training(self) -> TinyTasksConfig:
        if self.heldout_fraction + self.rl_fraction >= 1:
            raise ValueError(
                f"data.tiny_tasks: heldout_fraction ({self.heldout_fraction}) + rl_fraction "
                f"({self.rl_fraction}) must be below 1 to leave a train slice"
            )
        return self


class MidtrainMixConfig(StrictModel):
    """Stage-2 annealing mix for tiny: the code corpus plus the train tasks written out as code."""

    task_copies: int = Field(1, ge=1, description="times each train task appears in the mix")


GENERATED_TINY = "generated:tiny"


class DataSourcesConfig(StrictModel):
    """Where each training stage's data comes from: one setting per stage, nothing implicit.

    A stage without a source cannot train: a pipeline run that would train it fails before any
    compute, naming the setting. ``generated:tiny`` is the tiny preset's own data for that stage.
    """

    pretrain: list[str] = Field(
        [],
        description="raw code for the stage-1 corpus, filtered and deduplicated by the pipeline: local "
        "dirs or s3:// prefixes of source files, JSONL/Parquet files with a text column, HF saved "
        "datasets (what `diffucoder data prepare --input` takes); [generated:tiny] = the running "
        "interpreter's CPython standard library",
    )
    midtrain: str | None = Field(
        None,
        description="stage-2 annealing text: sealed filtered-text shards (the output of `diffucoder data "
        "prepare --out`); generated:tiny = the stage-1 corpus plus the tiny train tasks written as code",
    )
    instruct: str | None = Field(
        None,
        description="stage-3 SFT rows, a JSONL/Parquet file or a dir of them: chat rows {id, messages} or "
        "OpenCoder-style {instruction, output} (converted as they are read); generated:tiny = the tiny "
        "train tasks' SFT set",
    )
    grpo: str | None = Field(
        None,
        description="stage-4 RL problems, a JSONL/Parquet file: AceCode-style {id, question, test_cases, "
        "entry_point, pass_rates} (`diffucoder data rl-hard-filter` makes the paper's hard split); "
        "generated:tiny = the tiny tasks' RL slice",
    )

    @field_validator("pretrain")
    @classmethod
    def _pretrain_is_uris_or_generated(cls, value: list[str]) -> list[str]:
        generated = [v for v in value if v.startswith("generated:")]
        if generated and (len(value) > 1 or generated[0] != GENERATED_TINY):
            raise ValueError(f"data.sources.pretrain: use [{GENERATED_TINY}] alone or URIs, got {value}")
        return value

    @field_validator("midtrain", "instruct", "grpo")
    @classmethod
    def _known_generator(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("generated:") and value != GENERATED_TINY:
            raise ValueError(f"unknown generated source {value!r}; the one generator is {GENERATED_TINY}")
        return value

    def of(self, stage: str) -> str | list[str] | None:
        """The source of ``stage`` (None or [] when not given)."""
        return getattr(self, stage)

    def generated(self, stage: str) -> bool:
        """Whether ``stage`` reads the tiny preset's generated data."""
        source = self.of(stage)
        return source == [GENERATED_TINY] if stage == "pretrain" else source == GENERATED_TINY


class DataConfig(StrictModel):
    """Data stage: readers, filters, dedup, decontamination, packing, the tiny task sets and the
    stages' sources."""

    shard_docs: int = Field(2000, ge=1, description="documents per output Parquet shard")
    workers: int = Field(2, ge=1, description="local process-pool size for `diffucoder data prepare`")
    examples_per_rule: int = Field(3, ge=0, description="dropped examples kept per rule in stats")
    reader: ReaderConfig = ReaderConfig()
    general: GeneralFilterConfig = GeneralFilterConfig()
    python: PythonFilterConfig = PythonFilterConfig()
    dedup: DedupConfig = DedupConfig()
    decontam: DecontamConfig = DecontamConfig()
    pack: PackConfig = PackConfig()
    tiny_tasks: TinyTasksConfig = TinyTasksConfig()
    midtrain_mix: MidtrainMixConfig = MidtrainMixConfig()
    sources: DataSourcesConfig = DataSourcesConfig()

    @model_validator(mode="after")
    def _check_dedup(self) -> DataConfig:
        if self.dedup.near and self.dedup.num_perm > 4096:
            raise ValueError(
                f"data.dedup: bands*rows = {self.dedup.num_perm} permutations is too many (max 4096); "
                "lower data.dedup.bands or data.dedup.rows"
            )
        return self
