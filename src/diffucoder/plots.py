"""Training curves logged as figures with each stage's MLflow run (``plots/*.png``).

A figure is drawn from the stage's logged history (one dict of metrics per log step, with
``step``), so the same curves can be redrawn from any run's history. matplotlib is imported when a
figure is drawn, with the headless Agg backend: training pods and CI have no display.
"""

from __future__ import annotations

from typing import Any

History = list[dict[str, float]]


def history_figure(history: History, series: dict[str, str], *, ylabel: str, title: str) -> Any:
    """One line per metric key of ``series`` (key -> legend label, no legend for a single line)
    against the optimizer step; a step that did not log a key is a gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    for key, label in series.items():
        ax.plot(steps, [h.get(key, float("nan")) for h in history], marker=".", label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    return fig


def loss_figure(history: History, stage: str) -> Any:
    """The stage's training loss (every stage logs it as ``plots/loss.png``)."""
    return history_figure(
        history, {"loss": "loss"}, ylabel="ELBO loss per masked token", title=f"{stage} loss"
    )


def reward_figure(history: History) -> Any:
    """Stage 4's mean total, code and format rewards (``plots/reward.png``)."""
    return history_figure(
        history,
        {
            "reward/total/mean": "total",
            "reward/code/mean": "code (pass rate)",
            "reward/format/mean": "format",
        },
        ylabel="mean reward",
        title="GRPO rewards",
    )
