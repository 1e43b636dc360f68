"""SFT/RL converters, the hard-sample filter and the signature augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from diffucoder.data.formats import (
    ASSISTANT_PREFIX,
    augment_with_signature,
    extract_signature,
    hard_sample_filter,
    opencoder_to_sft,
    rl_row,
    tasks_to_rl,
    tasks_to_sft,
)
from diffucoder.data.tiny_tasks import generate_tasks


def test_tiny_tasks_convert_to_sft_and_rl():
    tasks = generate_tasks(0, 20, 5, 2)["train"]
    sft = tasks_to_sft(tasks)
    rl = tasks_to_rl(tasks)
    for task, srow, rrow in zip(tasks, sft, rl, strict=True):
        user, assistant = srow["messages"]
        assert user == {"role": "user", "content": task.prompt}
        assert assistant["role"] == "assistant"
        assert assistant["content"] == f"{ASSISTANT_PREFIX}```python\n{task.solution.rstrip()}\n```"
        assert rrow == {
            "id": task.task_id,
            "question": task.prompt,
            "test_cases": task.tests,
            "entry_point": task.entry_point,
            "pass_rates": None,
        }


def test_opencoder_rows_and_missing_fields():
    rows = [
        {"instruction": "Add one.", "output": "Sure:\n```python\ndef f(x):\n    return x + 1\n```\nDone."}
    ]
    out = opencoder_to_sft(rows, "oc.jsonl")
    assert out[0]["messages"][1]["content"].endswith("```python\ndef f(x):\n    return x + 1\n```")
    with pytest.raises(ValueError, match=r"oc.jsonl: row 1: field 'output'"):
        opencoder_to_sft(rows + [{"instruction": "x"}], "oc.jsonl")


def test_hard_sample_filter_matches_percentile_rule():
    rng = np.random.default_rng(0)
    rows = [
        rl_row(f"r{i}", "q", ["assert 1"], "f", {"qwen": float(a), "llama": float(b)})
        for i, (a, b) in enumerate(rng.random((200, 2)))
    ]
    kept = hard_sample_filter(rows)
    means = np.array([np.mean(list(r["pass_rates"].values())) for r in rows])
    stds = np.array([np.std(list(r["pass_rates"].values())) for r in rows])
    expect = {
        r["id"]
        for r, m, s in zip(rows, means, stds, strict=True)
        if m <= np.percentile(means, 20) and s >= np.percentile(stds, 40)
    }
    assert {r["id"] for r in kept} == expect
    assert 0 < len(kept) < 40
    # worked by hand: means sorted [0, .1, .25, .75, .95, 1] -> P20 = .1 keeps b and f;
    # stds sorted [0, 0, .05, .1, .25, .25] -> P40 = .05 drops b (all models fail it alike)
    small = [
        rl_row("a", "q", [], "f", [0.0, 0.5]),
        rl_row("b", "q", [], "f", [0.0, 0.0]),
        rl_row("c", "q", [], "f", [0.9, 1.0]),
        rl_row("d", "q", [], "f", [0.5, 1.0]),
        rl_row("e", "q", [], "f", [1.0, 1.0]),
        rl_row("f", "q", [], "f", [0.0, 0.2]),
    ]
    assert [r["id"] for r in hard_sample_filter(small)] == ["f"]


def test_hard_sample_filter_names_row_without_rates():
    with pytest.raises(ValueError, match=r"row 1 \(id='y'\)"):
        hard_sample_filter([rl_row("x", "q", [], "f", [0.1]), rl_row("y", "q", [], "f", None)])


def test_signature_augmentation():
    rows = [
        rl_row("p1", "Return the sum of a list.", ["assert s([1]) == 1"], "s"),
        rl_row("p2", "Can you write a sorter?", ["assert 1"], "t"),
        rl_row("p3", "Print hello.", ["assert 1"], "u"),
    ]
    solutions = {
        "p1": "def s(xs: list[int]) -> int:\n    return sum(xs)\n",
        "p2": "def t(x):\n    return x\n",
        "p3": "print('hello')\n",
    }
    out = augment_with_signature(rows, solutions)
    assert [r["id"] for r in out] == ["p1", "p2", "p3", "p1/sig"]
    assert out[-1]["question"] == (
        'Please complete the following problem:\n```\ndef s(xs: list[int]) -> int:\n    """\n'
        'Return the sum of a list.\n    """\n```'
    )
    assert out[-1]["test_cases"] == rows[0]["test_cases"]
    assert extract_signature("x = 1\n") is None
