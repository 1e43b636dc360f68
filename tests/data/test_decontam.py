"""Decontamination: injected HumanEval+/MBPP+ items are removed, stdlib files are not flagged."""

from __future__ import annotations

import gzip
import json

import pytest

from diffucoder.data.config import DecontamConfig
from diffucoder.data.corpus import stdlib_root
from diffucoder.data.decontam import Decontaminator, normalise

HEADER = "import os\nimport sys\n\n\ndef helper(path):\n    return os.path.join(sys.prefix, path)\n\n\n"


@pytest.fixture(scope="module")
def decon() -> Decontaminator:
    return Decontaminator.build(DecontamConfig())


@pytest.fixture(scope="module")
def rows(benchmark_dir):
    def read(name: str) -> list[dict]:
        with gzip.open(benchmark_dir / "evalplus" / name, "rt") as fh:
            return [json.loads(line) for line in fh]

    return read


def test_humaneval_plus_functions_injected_are_all_removed(decon, rows):
    he = rows("HumanEvalPlus-v0.1.10.jsonl.gz")
    missed = [
        r["task_id"] for r in he if decon.reason(HEADER + r["prompt"] + r["canonical_solution"]) is None
    ]
    assert missed == []


def test_mbpp_plus_solutions_injected_are_all_removed(decon, rows):
    he = rows("MbppPlus-v0.2.0.jsonl.gz")
    missed = [r["task_id"] for r in he if decon.reason(HEADER + r["canonical_solution"]) is None]
    assert missed == []


def test_humaneval_solution_bodies_removed_unless_trivial(decon, rows):
    """Bodies alone are caught when they are long enough to mean something (>= 25 normalised chars
    or >= 13 tokens); one-liners like `return x + y` are left, as in BigCode's method."""
    he = rows("HumanEvalPlus-v0.1.10.jsonl.gz")
    for r in he:
        text = HEADER + "def renamed():\n" + r["canonical_solution"]
        if len(normalise(r["canonical_solution"])) >= 25:
            assert decon.reason(text) is not None, r["task_id"]


def test_reason_names_the_benchmark_item(decon, rows):
    row = rows("HumanEvalPlus-v0.1.10.jsonl.gz")[0]
    reason = decon.reason(HEADER + row["prompt"] + row["canonical_solution"])
    assert reason.startswith("decontam_") and "HumanEvalPlus" in reason and "HumanEval/0" in reason


def test_ngram_check_ignores_number_and_single_char_ngrams(decon):
    numbers = "TABLE = [" + ", ".join(str(i) for i in range(200)) + "]\n"
    letters = "LETTERS = [" + ", ".join(repr(c) for c in "abcdefghijklmnopqrstuvwxyz") + "]\n"
    assert decon.reason(HEADER + numbers + letters) is None


@pytest.mark.parametrize("subset", ["top", "packages"])
def test_no_stdlib_file_is_flagged(decon, subset):
    root = stdlib_root()
    if subset == "top":
        paths = sorted(root.glob("*.py"))
    else:
        paths = sorted(
            p
            for d in ("json", "email", "collections", "asyncio", "unittest")
            for p in (root / d).rglob("*.py")
        )
    flagged = [
        (p.name, r) for p in paths if (r := decon.reason(p.read_text(encoding="utf-8", errors="replace")))
    ]
    assert flagged == []


@pytest.mark.slow
def test_no_file_of_the_whole_stdlib_is_flagged(decon):
    root = stdlib_root()
    paths = [p for p in sorted(root.rglob("*.py")) if "site-packages" not in p.parts]
    flagged = [
        (str(p), r) for p in paths if (r := decon.reason(p.read_text(encoding="utf-8", errors="replace")))
    ]
    assert flagged == []


def test_extra_file_and_bad_rows(tmp_path):
    extra = tmp_path / "private.jsonl"
    extra.write_text(
        json.dumps({"task_id": "p/1", "prompt": "Compute the frobnication index of a widget list."}) + "\n"
    )
    d = Decontaminator.build(DecontamConfig(extra_files=[str(extra)]))
    assert d.reason("# compute the   FROBNICATION index of a widget list.\nx = 1\n").endswith(
        "private.jsonl:p/1"
    )
    extra.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"private.jsonl:1: invalid JSON"):
        Decontaminator.build(DecontamConfig(extra_files=[str(extra)]))
