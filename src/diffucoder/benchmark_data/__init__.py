"""The benchmark data shipped inside the package: HumanEval+ v0.1.10, MBPP+ v0.2.0 and MBPP.

Evaluation (``evaluation.data_root``) and decontamination (``data.decontam.benchmarks_dir``) read
these files when their setting is unset, so an installed wheel or a container image needs nothing
beside the package. A local directory or ``s3://`` prefix with the same layout replaces them.
README.md in this folder gives each file's source, version, licence and row count.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

HUMANEVAL_PLUS = "evalplus/HumanEvalPlus-v0.1.10.jsonl.gz"
MBPP_PLUS = "evalplus/MbppPlus-v0.2.0.jsonl.gz"
MBPP = "mbpp/mbpp.jsonl"
FILES = (HUMANEVAL_PLUS, MBPP_PLUS, MBPP)

# The checksums of the releases as published; tests/test_benchmark_data.py holds the shipped files to them.
SHA256 = {
    HUMANEVAL_PLUS: "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
    MBPP_PLUS: "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
    MBPP: "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
}


def shipped_root() -> str:
    """The directory of the shipped files inside the installed package."""
    root = resources.files(__name__)
    # A wheel or an editable install is a directory on disk; only a zipped import would not be,
    # and the readers below take file paths.
    if not isinstance(root, Path):
        raise RuntimeError(
            f"the benchmark data of {__name__} is not a directory on disk ({root}); install diffucoder "
            "unzipped or set evaluation.data_root / data.decontam.benchmarks_dir to a copy"
        )
    return str(root)


def root(setting: str | None) -> str:
    """The directory or ``s3://`` prefix a benchmark setting names; unset (None or "") = the shipped data."""
    return setting if setting else shipped_root()
