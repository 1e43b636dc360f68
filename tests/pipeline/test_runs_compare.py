"""`diffucoder runs compare`: the side-by-side table and the plot, on runs in a real SQLite store."""

from __future__ import annotations

from diffucoder import tracking
from diffucoder.cli import main
from diffucoder.config import load_config


def _run(stage: str, overrides: list[str], metrics: dict[str, float]) -> str:
    cfg = load_config("tiny", overrides)
    with tracking.stage_run(stage, cfg) as tr:
        tr.log_metrics(metrics)
        return tr.run_id


def test_compare_prints_differing_params_metrics_and_writes_plot(mlflow_sqlite, tmp_path, capsys):
    other_lr = 2 * load_config("tiny").instruct.lr  # differs from the preset whatever it holds
    a = _run("instruct", ["seed=0"], {"loss": 1.5, "tiny_heldout_pass_at_1_1x": 0.2})
    b = _run(
        "instruct", ["seed=1", f"instruct.lr={other_lr}"], {"loss": 1.25, "tiny_heldout_pass_at_1_1x": 0.3}
    )
    plot = tmp_path / "cmp.png"
    assert main(["runs", "compare", a, b, "--tracking-uri", mlflow_sqlite, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    seed_row = next(line for line in out.splitlines() if line.startswith("seed "))
    assert seed_row.split()[1:] == ["0", "1"]
    assert any(line.startswith("instruct.lr ") for line in out.splitlines())
    pass_row = next(line for line in out.splitlines() if line.startswith("tiny_heldout_pass_at_1_1x"))
    assert pass_row.split()[1:] == ["0.2", "0.3"]
    assert "params that differ (2;" in out
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"
