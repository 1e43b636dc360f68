"""Benchmark loaders on the real data files, input-type restoration and error messages."""

import gzip
import json
import re

import pytest

from diffucoder.evaluation.benchmarks import (
    BenchmarkFormatError,
    load_benchmark,
    load_evalplus,
    load_tiny_tasks,
    mbpp_deserialize_inputs,
)
from diffucoder.evaluation.config import EvaluationConfig


def test_full_sets_load_with_expected_sizes():
    cfg = EvaluationConfig()
    sizes = {
        name: len(load_benchmark(name, cfg)) for name in ("humaneval", "humaneval_plus", "mbpp", "mbpp_plus")
    }
    assert sizes == {"humaneval": 164, "humaneval_plus": 164, "mbpp": 500, "mbpp_plus": 378}


def test_humaneval_base_vs_plus_inputs():
    cfg = EvaluationConfig(max_problems=1)
    base = load_benchmark("humaneval", cfg)[0]
    plus = load_benchmark("humaneval_plus", cfg)[0]
    assert base.task_id == plus.task_id == "HumanEval/0"
    assert [t.name for t in base.tiers] == ["base"] and [t.name for t in plus.tiers] == ["base", "plus"]
    assert len(plus.inputs) > len(base.inputs) > 0
    assert plus.tiers[0] == base.tiers[0]
    assert plus.reference.startswith(plus.prompt) and plus.code_prompt == plus.prompt


def test_mbpp_plus_inputs_get_the_types_evalplus_0_3_1_passes():
    problems = {p.task_id: p for p in load_benchmark("mbpp_plus", EvaluationConfig())}
    assert problems["Mbpp/2"].tiers[0].inputs[0] == [(3, 4, 5, 6), (5, 7, 4, 10)]
    assert all(isinstance(args[1], complex) for args in problems["Mbpp/124"].inputs)
    assert all(isinstance(args[0], complex) for args in problems["Mbpp/252"].inputs)
    # EvalPlus's table passes lists where the prompt shows tuples (Mbpp/98) ...
    assert type(problems["Mbpp/98"].inputs[0][0]) is list
    # ... and keeps genuine strings as strings ('j' is not 1j, '3' is not 3.0)
    strings = [a for p in ("Mbpp/222", "Mbpp/425", "Mbpp/457") for args in problems[p].inputs for a in args]
    assert not any(isinstance(a, complex) for a in strings)
    # Mbpp/115: an empty item becomes {} (a dict), as in EvalPlus
    assert mbpp_deserialize_inputs("Mbpp/115", [[[[1, 2], []]]]) == [[[{1, 2}, {}]]]
    # Mbpp/793 stores "no plus inputs" as {}
    assert len(problems["Mbpp/793"].tiers[1].inputs) == 0


def test_mbpp_prompt_shape_and_reference():
    p = load_benchmark("mbpp", EvaluationConfig(max_problems=1))[0]
    assert p.task_id == "Mbpp/11" and p.entry_point == "remove_Occ"
    assert p.prompt.startswith('"""\n') and "assert remove_Occ(" in p.prompt
    assert "\r" not in p.reference
    # literal-shaped asserts, split by the sandbox into values it compares with Python's ==
    assert p.tests[0].startswith("assert remove_Occ(")


def test_bad_rows_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "he.jsonl.gz"
    rows = [
        {
            "task_id": "X/0",
            "prompt": "def f():\n",
            "entry_point": "f",
            "canonical_solution": "  return 1\n",
            "base_input": [[]],
            "plus_input": [],
            "atol": 0,
        },
        {"task_id": "X/1", "prompt": "def g():\n", "entry_point": "g", "base_input": [[]], "atol": 0},
    ]
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    with pytest.raises(BenchmarkFormatError, match=rf"{path} line 2: missing field 'canonical_solution'"):
        load_evalplus(str(path), "humaneval_plus", with_plus=True)

    bad_json = tmp_path / "tiny.jsonl"
    bad_json.write_text(
        '{"task_id": "t0", "prompt": "p", "entry_point": "f", "solution": "s", "tests": []}\n{oops\n'
    )
    with pytest.raises(BenchmarkFormatError, match=rf"{bad_json} line 2: invalid JSON"):
        load_tiny_tasks(str(bad_json))


def test_a_missing_file_names_the_file_and_the_settings_that_point_at_it(tmp_path):
    cfg = EvaluationConfig(data_root=str(tmp_path))
    missing = re.escape(str(tmp_path / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"))
    with pytest.raises(FileNotFoundError, match=missing) as err:
        load_benchmark("humaneval", cfg)
    assert f"evaluation.data_root='{tmp_path}'" in str(err.value)
    assert "evaluation.humaneval_plus_file='evalplus/HumanEvalPlus-v0.1.10.jsonl.gz'" in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"mbpp\.jsonl does not exist .*evaluation\.mbpp_file"):
        load_benchmark("mbpp", cfg)
    with pytest.raises(ValueError, match="tiny_heldout_uri"):
        load_benchmark("tiny_heldout", cfg)
    gone = tmp_path / "heldout.jsonl"
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(gone))} .*evaluation\.tiny_heldout_uri"):
        load_benchmark("tiny_heldout", EvaluationConfig(tiny_heldout_uri=str(gone)))
    with pytest.raises(ValueError, match="unknown benchmark 'humaneval_pluss'"):
        load_benchmark("humaneval_pluss", cfg)


def test_max_problems_mapping_caps_only_the_named_benchmarks():
    cfg = EvaluationConfig(max_problems={"humaneval": 3})
    assert len(load_benchmark("humaneval", cfg)) == 3
    assert len(load_benchmark("mbpp", cfg)) == 500


def test_max_problems_rejects_unknown_benchmarks_and_non_positive_caps():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="humaneval_pluss"):
        EvaluationConfig(max_problems={"humaneval_pluss": 3})
    with pytest.raises(ValidationError, match="greater than 0"):
        EvaluationConfig(max_problems={"mbpp": 0})
