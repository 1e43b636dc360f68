"""Converters to the row formats stages 3 and 4 read, and the paper's RL hard-sample filter.

- SFT (stage 3, OpenCoder-SFT-like): ``{"id", "messages": [user, assistant]}``; the assistant turn is
  "Here is the code to solve this problem:" plus one fenced python block, the shape the paper's
  evaluation prompt pre-fills (paper §B.2, Qwen2.5-Coder's evaluation templates).
- RL (stage 4, AceCode-like): ``{"id", "question", "test_cases", "entry_point", "pass_rates"}``.
- ``hard_sample_filter``: keep rows whose mean pass rate is <= the 20th percentile of all means and
  whose std is >= the 40th percentile of the whole set's stds (paper §B.1; apple/ml-diffucoder
  ``recipes/process_data.py``).
- ``augment_with_signature``: the released recipe's second copy of a problem, wrapped as
  "Please complete the following problem:" with the signature and the question as its docstring.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence

import numpy as np

from diffucoder.data import io
from diffucoder.data.config import TinyTasksConfig
from diffucoder.data.tiny_tasks import TinyTask, generate_tasks

ASSISTANT_PREFIX = "Here is the code to solve this problem:\n"


def assistant_answer(code: str) -> str:
    return f"{ASSISTANT_PREFIX}```python\n{code.rstrip()}\n```"


def sft_row(row_id: str, instruction: str, code: str) -> dict:
    """One stage-3 chat row from an instruction and its code answer."""
    return {
        "id": row_id,
        "messages": [
            {"role": "user", "content": instruction},
            {"role": "assistant", "content": assistant_answer(code)},
        ],
    }


def tasks_to_sft(tasks: Iterable[TinyTask]) -> list[dict]:
    return [sft_row(t.task_id, t.prompt, t.training_solution) for t in tasks]


def opencoder_to_sft(rows: Iterable[dict], source: str = "input") -> list[dict]:
    """OpenCoder-SFT-like rows ``{instruction, output}`` -> chat rows.

    ``output`` is used as the code when it holds no fenced block; otherwise its first python block.
    Raises ValueError naming the row and field that is missing.
    """
    out = []
    for i, row in enumerate(rows):
        for field in ("instruction", "output"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise ValueError(f"{source}: row {i}: field {field!r} missing or empty")
        match = re.search(r"```(?:python|py)?\n(.*?)```", row["output"], re.S)
        code = match.group(1) if match else row["output"]
        out.append(sft_row(str(row.get("id", f"{source}/{i}")), row["instruction"], code))
    return out


def rl_row(row_id: str, question: str, tests: Sequence[str], entry_point: str, pass_rates=None) -> dict:
    return {
        "id": row_id,
        "question": question,
        "test_cases": list(tests),
        "entry_point": entry_point,
        "pass_rates": pass_rates,
    }


def tasks_to_rl(tasks: Iterable[TinyTask]) -> list[dict]:
    return [rl_row(t.task_id, t.prompt, t.tests, t.entry_point) for t in tasks]


def hard_sample_filter(rows: Sequence[dict], mean_pct: float = 20.0, std_pct: float = 40.0) -> list[dict]:
    """Keep hard-but-learnable problems: mean(pass_rates) <= P{mean_pct}, std >= P{std_pct} (whole set).

    ``pass_rates`` is a dict ``model -> rate`` or a list of rates per row. Rows without rates raise,
    naming the row, because silently keeping or dropping them would change the set's difficulty.
    """
    means, stds = [], []
    for i, row in enumerate(rows):
        rates = row.get("pass_rates")
        values = list(rates.values()) if isinstance(rates, dict) else rates
        if not values:
            raise ValueError(f"hard_sample_filter: row {i} (id={row.get('id')!r}) has no pass_rates")
        arr = np.asarray(values, dtype=float)
        means.append(arr.mean())
        stds.append(arr.std())
    if not rows:
        return []
    means_a, stds_a = np.asarray(means), np.asarray(stds)
    mean_cut = np.percentile(means_a, mean_pct)
    std_cut = np.percentile(stds_a, std_pct)  # over the whole set, as in the released code
    return [row for row, m, s in zip(rows, means_a, stds_a, strict=True) if m <= mean_cut and s >= std_cut]


def extract_signature(code: str) -> str | None:
    """The first top-level ``def`` line of ``code`` (with annotations), or None."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            args = ast.unparse(node.args)
            ret = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
            return f"def {node.name}({args}){ret}:"
    return None


def augment_with_signature(rows: Sequence[dict], solutions: dict[str, str]) -> list[dict]:
    """Originals plus, where it applies, a signature-wrapped copy (id suffixed ``/sig``).

    Applies when the question does not contain "you" (case-insensitive) and the best completion
    ``solutions[id]`` starts with ``def `` (the released recipe's rule).
    """
    out = list(rows)
    for row in rows:
        code = solutions.get(row["id"], "")
        if "you" in row["question"].lower() or not code.lstrip().startswith("def "):
            continue
        signature = extract_signature(code)
        if signature is None:
            continue
        doc = row["question"].replace('"""', "'''")
        question = f'Please complete the following problem:\n```\n{signature}\n    """\n{doc}\n    """\n```'
        out.append({**row, "id": f"{row['id']}/sig", "question": question})
    return out


def write_tiny_task_sets(out_uri: str, cfg: TinyTasksConfig) -> dict:
    """Generate the tiny tasks and write every format the later stages read, under ``out_uri``:

    ``train.jsonl`` / ``heldout.jsonl`` / ``rl.jsonl`` (task rows), ``sft/train.jsonl`` (stage 3, from
    train), ``rl/train.jsonl`` (stage 4, from rl) and ``meta.json``. The held-out split is for
    evaluation alone. SFT rows show a train task's slipped solution where it has one.
    """
    tasks = generate_tasks(
        cfg.seed,
        cfg.n_train,
        cfg.n_heldout,
        cfg.difficulty,
        cfg.heldout_fraction,
        cfg.n_rl,
        cfg.rl_fraction,
        cfg.slip_rate,
    )
    with io.output_dir(out_uri) as out:
        for split, rows in tasks.items():
            io.write_jsonl(str(out / f"{split}.jsonl"), [t.to_dict() for t in rows])
        io.write_jsonl(str(out / "sft" / "train.jsonl"), tasks_to_sft(tasks["train"]))
        io.write_jsonl(str(out / "rl" / "train.jsonl"), tasks_to_rl(tasks["rl"]))
        meta = {
            "seed": cfg.seed,
            "difficulty": cfg.difficulty,
            "heldout_fraction": cfg.heldout_fraction,
            "rl_fraction": cfg.rl_fraction,
            "slip_rate": cfg.slip_rate,
            "counts": {split: len(rows) for split, rows in tasks.items()},
            "slipped_train_solutions": sum(bool(t.slips) for t in tasks["train"]),
            "by_difficulty": {
                split: {str(d): sum(t.difficulty == d for t in rows) for d in range(1, cfg.difficulty + 1)}
                for split, rows in tasks.items()
            },
        }
        io.write_json(str(out / "meta.json"), meta)
    return meta
