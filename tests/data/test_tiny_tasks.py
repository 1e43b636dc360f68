"""Tiny tasks: determinism, disjoint splits, tests that the references pass, no held-out leakage."""

from __future__ import annotations

import ast
import builtins
import json
import keyword
import random

import pytest

from diffucoder.data.config import TinyTasksConfig
from diffucoder.data.corpus import build_stdlib_corpus, read_tasks, task_docs
from diffucoder.data.formats import ASSISTANT_PREFIX, write_tiny_task_sets
from diffucoder.data.io import read_text_shard
from diffucoder.data.tiny_tasks import (
    OPS,
    Step,
    compile_solution,
    generate_tasks,
    random_input,
    render_solution,
    split_of,
    task_key,
)


@pytest.fixture(scope="module")
def tasks():
    return generate_tasks(seed=3, n_train=1500, n_heldout=150, difficulty=3)


def test_generation_is_deterministic_and_seed_dependent():
    a = generate_tasks(1, 200, 30, 2)
    b = generate_tasks(1, 200, 30, 2)
    c = generate_tasks(2, 200, 30, 2)
    assert [t.to_dict() for t in a["train"]] == [t.to_dict() for t in b["train"]]
    assert [t.prompt for t in a["train"]] != [t.prompt for t in c["train"]]


def test_reference_solutions_pass_their_own_tests(tasks):
    for task in tasks["train"][:400] + tasks["heldout"]:
        assert 3 <= len(task.tests) <= 5, task.task_id
        ast.parse(task.solution)
        namespace: dict = {}
        exec(task.solution, namespace)  # our own reference code
        for test in task.tests:
            exec(test, namespace)
        # a constant answer must not pass every test
        outputs = {t.rsplit("==", 1)[1] for t in task.tests}
        assert len(outputs) >= 2, task.task_id


def test_solution_lines_match_difficulty_and_names_are_safe(tasks):
    for task in tasks["train"] + tasks["heldout"]:
        body = task.solution.strip().splitlines()[1:]
        assert len(body) == task.difficulty
        assert task.entry_point.isidentifier() and not keyword.iskeyword(task.entry_point)
        assert not hasattr(builtins, task.entry_point), task.entry_point
        # the signature is the prompt's last line, written exactly as the solution's first line
        assert task.prompt.splitlines()[-1] == task.signature
        assert task.solution.startswith(task.signature)


def test_every_op_renders_runnable_code():
    for op in OPS:
        value = op.params[0] if op.params else None
        name, _, solution = render_solution((Step(op, value),))
        fn = compile_solution(solution, name)
        assert callable(fn)


def test_heldout_is_disjoint_from_train(tasks):
    train_keys = {tuple(t.steps) for t in tasks["train"]}
    for task in tasks["heldout"]:
        assert tuple(task.steps) not in train_keys
    train_text = {t.solution for t in tasks["train"]} | {t.prompt for t in tasks["train"]}
    for task in tasks["heldout"]:
        assert task.solution not in train_text and task.prompt not in train_text
    # the split is a property of the task space: another seed's train set is disjoint as well
    other = generate_tasks(seed=99, n_train=1500, n_heldout=1, difficulty=3)
    other_solutions = {t.solution for t in other["train"]}
    assert not other_solutions & {t.solution for t in tasks["heldout"]}


def test_heldout_is_new_combinations_of_seen_parts(tasks):
    train_steps = {slug for t in tasks["train"] for slug in t.steps}
    for task in tasks["heldout"]:
        assert set(task.steps) <= train_steps, task.steps


def test_no_heldout_leaks_into_any_training_set(tmp_path, data_cfg):
    out = tmp_path / "tasks"
    cfg = TinyTasksConfig(seed=0, n_train=800, n_heldout=80, difficulty=2, n_rl=200, slip_rate=0.5)
    write_tiny_task_sets(str(out), cfg)
    heldout = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    sft = (out / "sft" / "train.jsonl").read_text()
    rl = (out / "rl" / "train.jsonl").read_text()
    train = (out / "train.jsonl").read_text()

    mid = "\n".join(d["text"] for d in task_docs(read_tasks(str(out / "train.jsonl"))))
    corpus_dir = tmp_path / "stdlib"
    build_stdlib_corpus(str(corpus_dir), data_cfg, max_files=150)
    stdlib = "\n".join(d["text"] for d in read_text_shard(str(corpus_dir / "shard-00000.parquet")))
    for row in heldout:
        needles = (row["solution"].strip(), row["prompt"], f"def {row['entry_point']}(")
        for name, blob in (("sft", sft), ("rl", rl), ("train", train), ("midtrain", mid), ("stdlib", stdlib)):
            for needle in needles:
                assert needle not in blob, f"held-out {row['task_id']} leaks into {name}: {needle!r}"


def test_rl_problems_come_from_their_own_slice_with_known_steps():
    sets = generate_tasks(0, 300, 30, 2, 0.15, n_rl=100, rl_fraction=0.2)
    train_keys = {t.key for t in sets["train"]}
    heldout_keys = {t.key for t in sets["heldout"]}
    rl_keys = [t.key for t in sets["rl"]]
    assert len(rl_keys) == len(set(rl_keys)) == 100
    assert not set(rl_keys) & train_keys, "an RL problem repeats an SFT task"
    assert not set(rl_keys) & heldout_keys
    assert all(split_of(key, 0.15, 0.2) == "rl" for key in rl_keys)
    assert all(split_of(key, 0.15, 0.2) == "train" for key in train_keys)
    known = {slug for t in sets["train"] for slug in t.steps}
    assert all(set(t.steps) <= known for t in sets["rl"])
    assert {t.task_id.split("/")[1] for t in sets["rl"]} == {"rl"}
    # adding RL problems leaves the SFT and held-out sets exactly as they were
    plain = generate_tasks(0, 300, 30, 2, 0.15, rl_fraction=0.2)
    assert [t.to_dict() for t in plain["train"]] == [t.to_dict() for t in sets["train"]]
    assert [t.to_dict() for t in plain["heldout"]] == [t.to_dict() for t in sets["heldout"]]


def test_reserving_an_rl_slice_leaves_the_heldout_split_alone():
    keys = [f"add{k}|negate" for k in range(2, 10)] + ["reverse", "evens|total", "square|is_even"]
    for key in keys:
        assert (split_of(key, 0.15) == "heldout") == (split_of(key, 0.15, 0.3) == "heldout")
    narrow, wide = (generate_tasks(0, 1500, 60, 2, 0.15, rl_fraction=r)["heldout"] for r in (0.1, 0.3))
    assert [t.to_dict() for t in narrow] == [t.to_dict() for t in wide]


def test_rl_problems_mix_operations_like_the_heldout_split():
    """At the preset's sizes the RL set practises the parameter-free operations about as often as
    the held-out split tests them (train-side leftovers of SFT had 1 "negate" in 1,000)."""
    sets = generate_tasks(0, 4000, 200, 2, 0.15, n_rl=400, rl_fraction=0.2)

    def share(rows, slugs):
        return sum(step in slugs for t in rows for step in t.steps) / len(rows)

    parameter_free = {op.slug for op in OPS if op.param is None}
    assert share(sets["rl"], parameter_free) > 0.7 * share(sets["heldout"], parameter_free)


def test_slices_must_leave_a_train_slice():
    with pytest.raises(ValueError, match="heldout_fraction .* rl_fraction"):
        TinyTasksConfig(heldout_fraction=0.5, rl_fraction=0.5)


def test_task_key_is_the_chain():
    op = next(o for o in OPS if o.slug == "add{k}")
    assert task_key((Step(op, 3),)) == "add3"


def test_too_many_tasks_for_the_space_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct train tasks"):
        generate_tasks(0, 5000, 10, 1)


OP_OF_SLUG = {Step(op, v).slug: op for op in OPS for v in (op.params or (None,))}


def _drop_slips(task) -> dict:
    return {k: v for k, v in task.to_dict().items() if k not in ("sft_solution", "slips")}


def test_slips_touch_only_train_solutions():
    clean = generate_tasks(0, 1500, 60, 2, 0.15, n_rl=100, rl_fraction=0.2)
    slipped = generate_tasks(0, 1500, 60, 2, 0.15, n_rl=100, rl_fraction=0.2, slip_rate=0.5)
    for split in ("train", "heldout", "rl"):
        # the slips come from their own random stream: chains, prompts, tests are unchanged
        assert [_drop_slips(t) for t in clean[split]] == [_drop_slips(t) for t in slipped[split]]
    assert not any(t.slips or t.sft_solution for t in slipped["heldout"] + slipped["rl"] + clean["train"])
    slippable = [s for t in slipped["train"] for s in t.steps if OP_OF_SLUG[s].slip]
    share = sum(len(t.slips) for t in slipped["train"]) / len(slippable)
    assert 0.45 < share < 0.55, share


def test_a_slipped_solution_is_wrong_exactly_at_its_slipped_steps():
    tasks = [t for t in generate_tasks(0, 800, 10, 2, slip_rate=0.5)["train"] if t.slips]
    failing = 0
    for task in tasks:
        shown, reference = task.sft_solution.splitlines(), task.solution.splitlines()
        changed = [task.steps[i - 1] for i, (a, b) in enumerate(zip(shown, reference, strict=True)) if a != b]
        assert changed == task.slips and len(shown) == len(reference), task.task_id
        assert task.training_solution == task.sft_solution
        namespace: dict = {}
        exec(task.sft_solution, namespace)  # our own generated code
        try:
            for test in task.tests:  # the tests come from the reference solution
                exec(test, namespace)
        except Exception:  # a wrong assert, or e.g. None.upper() after a slipped .sort()
            failing += 1
    # a slip can still agree with the reference on every generated input ("upper" of upper-case text)
    assert failing >= 0.9 * len(tasks), (failing, len(tasks))


def test_every_slip_runs_and_differs_from_its_operation():
    rng = random.Random(0)
    for op in (op for op in OPS if op.slip):
        step = Step(op, op.params[0] if op.params else None)
        name, _, right = render_solution((step,))
        _, _, wrong = render_solution((step,), frozenset({0}))
        f, g = compile_solution(right, name), compile_solution(wrong, name)
        inputs = [random_input(rng, op.src) for _ in range(300)]
        assert any(f(*args) != g(*args) for args in inputs), op.slug


def test_sft_rows_show_the_slipped_solutions(tmp_path):
    cfg = TinyTasksConfig(n_train=300, n_heldout=20, n_rl=20, slip_rate=0.5)
    meta = write_tiny_task_sets(str(tmp_path), cfg)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    sft = [json.loads(line) for line in (tmp_path / "sft" / "train.jsonl").read_text().splitlines()]
    assert (
        meta["slip_rate"] == 0.5
        and meta["slipped_train_solutions"] == sum(bool(r["slips"]) for r in rows) > 0
    )
    for row, chat in zip(rows, sft, strict=True):
        shown = row["sft_solution"] or row["solution"]
        assert chat["messages"][1]["content"] == f"{ASSISTANT_PREFIX}```python\n{shown.rstrip()}\n```"
    # mid-training sees the same code as SFT
    docs = task_docs(read_tasks(str(tmp_path / "train.jsonl")))
    for row, doc in zip(rows, docs, strict=True):
        body = (row["sft_solution"] or row["solution"]).split("\n", 1)[1]
        assert body in doc["text"]
        if row["sft_solution"]:
            assert row["solution"].split("\n", 1)[1] not in doc["text"]


def test_no_slip_is_another_operations_right_code():
    """Measured: with `min` as the slip of "take the larger", GRPO learned "always max" and broke the
    operations whose right code is `min` (BENCHMARKS.md `## grpo`)."""
    right_code = {op.expr for op in OPS}
    assert not [op.slug for op in OPS if op.slip in right_code]
