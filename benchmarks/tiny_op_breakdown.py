"""Pass rate per tiny-task operation: which operations a model gets wrong, and what a task set practises.

Each tiny task is a chain of operations (its ``steps``, e.g. ``["add6", "negate"]``); a task's pass
rate counts towards every operation family in its chain (parameters dropped: ``add6`` -> ``add``).
Given one task file and one or more `diffucoder evaluate --out` directories evaluated on it, prints a
table: tasks per family and the mean pass rate under each evaluation, e.g. whether an RL set
practises the operations a stage-3 model fails on held-out tasks.

    .venv/bin/python benchmarks/tiny_op_breakdown.py TASKS.jsonl EVAL_DIR [EVAL_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from diffucoder.data.tiny_tasks import OPS

# slug template -> family, e.g. "add{k}" -> "add", "count_{c}" -> "count_"; longest first so
# "count_{c}" is tried before "count".
_FAMILIES = sorted(
    (
        (
            re.compile("^" + op.slug.replace("{k}", r"\d+").replace("{c}", "[a-z]") + "$"),
            op.slug.split("{")[0],
        )
        for op in OPS
    ),
    key=lambda pair: -len(pair[0].pattern),
)


def family(slug: str) -> str:
    for pattern, name in _FAMILIES:
        if pattern.match(slug):
            return name
    raise ValueError(f"unknown tiny-task step {slug!r}")


def read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", help="train/heldout/rl.jsonl written by `diffucoder data tiny-tasks`")
    parser.add_argument("evals", nargs="+", help="evaluation output directories on those tasks")
    args = parser.parse_args()
    steps = {row["task_id"]: row["steps"] for row in read_jsonl(args.tasks)}
    # family -> eval index -> per-task pass rates
    rates: dict[str, list[list[float]]] = defaultdict(lambda: [[] for _ in args.evals])
    for i, eval_dir in enumerate(args.evals):
        for row in read_jsonl(str(Path(eval_dir, "per_problem.jsonl"))):
            for name in {family(slug) for slug in steps[row["task_id"]]}:
                rates[name][i].append(row["n_correct"] / row["n"])
    print(
        "family".ljust(12)
        + "tasks".rjust(6)
        + "".join(f"{'eval ' + str(i):>9}" for i in range(len(args.evals)))
    )
    for name, per_eval in sorted(rates.items(), key=lambda item: sum(item[1][0]) / len(item[1][0])):
        means = "".join(f"{sum(r) / len(r):9.2f}" if r else f"{'-':>9}" for r in per_eval)
        print(name.ljust(12) + str(len(per_eval[0])).rjust(6) + means)


if __name__ == "__main__":
    main()
