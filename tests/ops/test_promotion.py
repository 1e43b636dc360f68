"""Candidate/champion promotion, rollback, cost totals and skip-if-unchanged against a real MLflow server."""

from __future__ import annotations

import json
import math

import pytest

from diffucoder import steps, storage, tracking
from diffucoder.cli import main
from diffucoder.config import load_config
from diffucoder.ops import cost
from diffucoder.ops.promotion import (
    DATA_HASH_TAG,
    HISTORY_TAG,
    PER_PROBLEM_TAG,
    PromotionError,
    paired,
    promote,
    rollback,
)

N = 60


def _per_problem(path, passed: list[int], ids: range = range(N)) -> str:
    rows = [
        {
            "benchmark": "tiny_heldout",
            "task_id": f"t{i}",
            "speed": "1x",
            "temperature": 0.2,
            "pass_at_1": float(p),
        }
        for i, p in zip(ids, passed, strict=True)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def registry(mlflow_server, monkeypatch, request):
    """A config on the real server, with a registered-model name of its own per test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    name = f"m-{request.node.name}"[:60]
    return load_config(
        "tiny", [f"tracking.tracking_uri={mlflow_server}", f"tracking.registered_model_name={name}"]
    )


def _register(cfg, per_problem: str, data_hash: str = "d0") -> str:
    return tracking.register_model(
        f"s3://models/{per_problem.rsplit('/', 1)[-1]}",
        cfg.tracking.registered_model_name,
        alias="candidate",
        tags={PER_PROBLEM_TAG: per_problem, DATA_HASH_TAG: data_hash},
        cfg=cfg.tracking,
    )


def test_paired_difference_and_its_standard_error():
    cand = {"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0}
    champ = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}
    cmp = paired(cand, champ, min_problems=4)
    diffs = [0, 1, 0, 1]
    mean = sum(diffs) / 4
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3 / 4)
    assert (cmp.n, cmp.candidate, cmp.champion, cmp.diff) == (4, 0.75, 0.25, 0.5)
    assert cmp.se == pytest.approx(se)
    with pytest.raises(PromotionError, match="min_problems is 5"):
        paired(cand, champ, min_problems=5)
    with pytest.raises(PromotionError, match="not comparable: .* 1 problems the champion was not"):
        paired({**cand, "e": 1.0}, champ, min_problems=1)


def test_first_model_then_promote_keep_refuse_and_roll_back(registry, tmp_path, capsys):
    cfg = registry
    v1 = _register(cfg, _per_problem(tmp_path / "v1.jsonl", [i % 2 for i in range(N)]))
    first = promote(cfg)
    assert first.outcome == "first" and first.candidate_version == v1

    # better on 15 of the shared problems: promoted, with scores and SE on the version
    v2 = _register(cfg, _per_problem(tmp_path / "v2.jsonl", [1 if i % 2 or i < 30 else 0 for i in range(N)]))
    second = promote(cfg)
    assert second.outcome == "promoted" and second.comparison.diff == pytest.approx(15 / N)
    assert (
        tracking.model_version(cfg.tracking.registered_model_name, alias="champion", cfg=cfg.tracking).version
        == v2
    )
    tags = tracking.model_version(cfg.tracking.registered_model_name, version=v2, cfg=cfg.tracking).tags
    assert tags["promotion/decision"] == "promoted" and float(tags["promotion/se"]) > 0

    # worse: kept, the champion stays
    _register(cfg, _per_problem(tmp_path / "v3.jsonl", [0] * N))
    assert promote(cfg).outcome == "kept"
    # a margin the gain does not clear keeps it too
    _register(cfg, _per_problem(tmp_path / "v4.jsonl", [1 if i % 2 or i < 32 else 0 for i in range(N)]))
    strict = load_config(
        "tiny",
        [
            f"tracking.tracking_uri={cfg.tracking.tracking_uri}",
            f"tracking.registered_model_name={cfg.tracking.registered_model_name}",
            "promotion.z=1.64",
            "promotion.margin=0.05",
        ],
    )
    assert promote(strict).outcome == "kept"

    # evaluated on other problems: refused, champion untouched
    _register(cfg, _per_problem(tmp_path / "v5.jsonl", [1] * N, ids=range(100, 100 + N)))
    with pytest.raises(PromotionError, match="not comparable"):
        promote(cfg)
    assert (
        tracking.model_version(cfg.tracking.registered_model_name, alias="champion", cfg=cfg.tracking).version
        == v2
    )

    assert (
        tracking.registered_model_tags(cfg.tracking.registered_model_name, cfg=cfg.tracking)[HISTORY_TAG]
        == f"{v1},{v2}"
    )
    assert rollback(cfg) == (v2, v1)
    with pytest.raises(PromotionError, match="only champion"):
        rollback(cfg)


def test_cli_promote_and_rollback(registry, tmp_path, capsys):
    cfg = registry
    common = [
        "--config",
        "tiny",
        "--tracking-uri",
        cfg.tracking.tracking_uri,
        f"tracking.registered_model_name={cfg.tracking.registered_model_name}",
    ]
    assert main(["model", "rollback", *common]) == 2
    assert "no 'champion' yet" in capsys.readouterr().err
    assert main(["model", "promote", *common]) == 2
    assert "has no alias 'candidate'" in capsys.readouterr().err
    _register(cfg, _per_problem(tmp_path / "a.jsonl", [0] * N))
    assert main(["model", "promote", *common]) == 0
    assert capsys.readouterr().out.startswith("first: version 1")
    v2 = _register(cfg, _per_problem(tmp_path / "b.jsonl", [1] * N))
    assert main(["model", "promote", *common]) == 0
    assert "promoted: version 2" in capsys.readouterr().out
    assert main(["model", "rollback", *common, "--to", "1"]) == 0
    assert "version 2 -> version 1" in capsys.readouterr().out
    assert v2 == "2"


def test_skip_when_the_champion_has_the_same_data(registry, tmp_path):
    cfg = registry
    root = str(tmp_path / "run")
    storage.write_text(storage.join(root, steps.PIPELINE_RECORD), json.dumps({"run_root": root}))
    parent = tracking.start_pipeline_run(cfg)
    fp = steps.data_fingerprint({name: f"sha-{name}" for name in steps.DATA_ARTIFACTS}, {"instruct": ""})
    # no champion: train
    assert (
        steps.check_data(cfg, root=root, parent_run_id=parent, fingerprint=fp, skip_if_unchanged=True) is True
    )
    _register(cfg, _per_problem(tmp_path / "a.jsonl", [1] * N), data_hash=fp)
    promote(cfg)
    assert (
        steps.check_data(cfg, root=root, parent_run_id=parent, fingerprint=fp, skip_if_unchanged=False)
        is True
    )  # flag off: always train
    assert (
        steps.check_data(cfg, root=root, parent_run_id=parent, fingerprint=fp, skip_if_unchanged=True)
        is False
    )
    run = tracking._client(cfg.tracking).get_run(parent)
    assert run.data.tags[DATA_HASH_TAG] == fp and "data unchanged" in run.data.tags[steps.SKIPPED_TAG]
    other = steps.data_fingerprint({name: f"sha2-{name}" for name in steps.DATA_ARTIFACTS}, {})
    assert (
        steps.check_data(cfg, root=root, parent_run_id=parent, fingerprint=other, skip_if_unchanged=True)
        is True
    )
    assert (
        json.loads(storage.read_text(storage.join(root, steps.PIPELINE_RECORD)))["data_fingerprint"] == other
    )


def test_stage_cost_and_run_totals_reach_mlflow_and_runs_compare(registry, capsys):
    cfg = registry
    tracking.configure(cfg.tracking)
    parent = tracking.start_pipeline_run(cfg)
    with tracking.stage_run("instruct", cfg, parent_run_id=parent) as tr:
        train_run = tr.run_id
    with tracking.stage_run("evaluate", cfg, parent_run_id=parent, tags={cost.FINAL_EVAL_TAG: "true"}) as tr:
        tr.log_metrics({"eval/tiny_heldout/pass_at_1_1x": 0.6})
        eval_run = tr.run_id
    assert cost.log_stage_cost(cfg, train_run, "instruct", 1800.0)["cost/gpu_seconds"] == 1800.0  # 1 GPU
    cost.log_stage_cost(cfg, eval_run, "evaluate", 1800.0)
    totals = cost.log_run_totals(cfg, parent, "eval/tiny_heldout/pass_at_1_1x")
    assert totals["cost/gpu_hours"] == pytest.approx(1.0)
    assert totals["cost/amount"] == pytest.approx(cfg.plan.gpu_hour_price)
    assert totals["cost/pass_at_1_per_gpu_hour"] == pytest.approx(0.6)
    tracking.set_run_tags(parent, {"promotion/decision": "promoted"}, cfg=cfg.tracking)
    other = tracking.start_pipeline_run(cfg)
    assert main(["runs", "compare", parent, other, "--tracking-uri", cfg.tracking.tracking_uri]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    per_hour = next(line for line in lines if line.startswith("cost/pass_at_1_per_gpu_hour"))
    assert per_hour.split()[-2:] == ["0.6", "-"]
    # quality and cost head the table, before the params
    assert lines.index(per_hour) < lines.index(next(x for x in lines if x.startswith("params that differ")))
    assert (
        next(line for line in out.splitlines() if line.startswith("promotion/decision")).split()[1]
        == "promoted"
    )


def test_fingerprint_follows_the_stage_sources_files(tmp_path):
    """Stages 3-4 read data.sources directly; changing a byte of a source file (or a file of a
    source dir) changes the fingerprint, renaming nothing else does not."""
    contents = {name: f"sha-{name}" for name in steps.DATA_ARTIFACTS}
    sft = tmp_path / "sft.jsonl"
    sft.write_text('{"id": 1}\n')
    rl_dir = tmp_path / "rl"
    rl_dir.mkdir()
    (rl_dir / "part-0.jsonl").write_text('{"id": 2}\n')
    sources = {"instruct": str(sft), "grpo": str(rl_dir)}
    first = steps.data_fingerprint(contents, sources)
    assert steps.data_fingerprint(contents, sources) == first
    (rl_dir / "part-0.jsonl").write_text('{"id": 3}\n')
    changed_dir = steps.data_fingerprint(contents, sources)
    sft.write_text('{"id": 4}\n')
    changed_file = steps.data_fingerprint(contents, sources)
    assert len({first, changed_dir, changed_file}) == 3
