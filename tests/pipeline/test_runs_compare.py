"""`diffucoder runs list` and `runs compare` through the real CLI, on runs in a real SQLite store."""

from __future__ import annotations

import pytest

from diffucoder import tracking
from diffucoder.cli import main
from diffucoder.config import load_config


def _pipeline(name: str, overrides: list[str], pass_at_1: float, losses: list[float]) -> dict[str, str]:
    """A pipeline run with an instruct stage (a loss curve) and its evaluation; returns the run ids."""
    cfg = load_config("tiny", overrides)
    parent = tracking.start_pipeline_run(cfg, run_name=name)
    with tracking.stage_run("instruct", cfg, parent_run_id=parent, metric_group="train") as tr:
        for step, loss in enumerate(losses, 1):
            tr.log_metrics({"loss": loss, "tokens_per_sec": 1000.0 * step}, step=step)
        instruct = tr.run_id
    with tracking.stage_run("evaluate-instruct", cfg, parent_run_id=parent, metric_group="eval") as tr:
        tr.log_metrics({"eval/tiny_heldout/pass_at_1_1x": pass_at_1, "throughput/tokens_per_s_1x": 250.0})
        evaluation = tr.run_id
    tracking.log_run_metrics(parent, {"eval/tiny_heldout/pass_at_1_instruct": pass_at_1}, cfg=cfg.tracking)
    tracking.end_pipeline_run(parent, cfg=cfg.tracking)
    return {"parent": parent, "instruct": instruct, "evaluate": evaluation}


@pytest.fixture
def two_pipelines(mlflow_sqlite):
    other_lr = 2 * load_config("tiny").instruct.lr  # differs from the preset whatever it holds
    long_path = "/data/" + "x" * 60 + "/tasks"
    a = _pipeline("tiny-a", ["seed=0"], 0.25, [2.0, 1.5, 1.25])
    b = _pipeline(
        "tiny-b", ["seed=1", f"instruct.lr={other_lr}", f"data.sources.instruct={long_path}"], 0.5, [2.0, 1.0]
    )
    return a, b, long_path


def test_list_shows_pipelines_with_stage_runs_and_scores(two_pipelines, mlflow_sqlite, capsys):
    a, b, _ = two_pipelines
    assert main(["runs", "list", "--tracking-uri", mlflow_sqlite]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines.index(next(line for line in lines if line.startswith("tiny-b "))) < lines.index(
        next(line for line in lines if line.startswith("tiny-a "))
    )  # newest first
    assert f"tiny-b  {b['parent'][:8]}  FINISHED" in out
    assert "eval/tiny_heldout/pass_at_1_instruct 0.5" in out
    stage_line = next(line for line in lines if a["evaluate"][:8] in line)
    assert stage_line.split()[:3] == ["evaluate-instruct", a["evaluate"][:8], "FINISHED"]
    assert "eval/tiny_heldout/pass_at_1_1x 0.25" in stage_line
    assert "train/loss 1.25" in next(line for line in lines if a["instruct"][:8] in line)


def test_compare_takes_what_list_prints_and_marks_the_better_run(
    two_pipelines, mlflow_sqlite, tmp_path, capsys
):
    a, b, long_path = two_pipelines
    plot = tmp_path / "cmp.png"
    refs = [a["evaluate"][:8], "tiny-b/evaluate-instruct"]  # a short id, and PIPELINE/STAGE
    assert main(["runs", "compare", *refs, "--tracking-uri", mlflow_sqlite, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert next(line for line in lines if line.startswith("pipeline ")).split()[1:] == ["tiny-a", "tiny-b"]
    score = next(line for line in lines if line.startswith("eval/tiny_heldout/pass_at_1_1x"))
    assert score.split()[1:] == ["0.25", "0.5", "(+0.25)", "*"]
    # headline metrics come before the params, the rest after them
    assert lines.index(score) < lines.index(
        next(line for line in lines if line.startswith("params that differ"))
    )
    # a long param value is shown in full, wrapped over lines, not cut
    assert long_path in "".join(
        line[line.index("/data/") :] if "/data/" in line else line.strip() for line in lines
    )
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_compare_draws_scores_throughput_and_histories_on_separate_panels(two_pipelines):
    from diffucoder.runs_cli import comparison_figure

    a, b, _ = two_pipelines
    cmp = tracking.compare_runs([a["instruct"], b["instruct"]])
    assert cmp.histories["train/loss"] == [[(1, 2.0), (2, 1.5), (3, 1.25)], [(1, 2.0), (2, 1.0)]]
    fig = comparison_figure(cmp)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "throughput (tokens/s)"
    assert "train/loss over steps" in titles and "train/tokens_per_sec over steps" in titles
    evals = tracking.compare_runs([a["evaluate"], b["evaluate"]])
    titles = [ax.get_title() for ax in comparison_figure(evals).axes]
    assert titles == ["scores", "throughput (tokens/s)"]
    # value labels on the score bars
    assert {t.get_text() for t in comparison_figure(evals).axes[0].texts} >= {"0.25", "0.5"}


def test_unknown_or_ambiguous_run_is_one_line(two_pipelines, mlflow_sqlite, capsys):
    assert main(["runs", "compare", "feedface", "evaluate-instruct", "--tracking-uri", mlflow_sqlite]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffucoder: error: no run 'feedface'")
    assert main(["runs", "compare", "evaluate-instruct", "tiny-a", "--tracking-uri", mlflow_sqlite]) == 2
    err = capsys.readouterr().err.strip()
    assert "'evaluate-instruct' matches 2 runs" in err and "\n" not in err
