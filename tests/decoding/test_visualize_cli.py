"""Decode-order heatmap, terminal replay and the ``diffucoder generate`` CLI on a saved model."""

from __future__ import annotations

import pytest
import torch

from diffucoder.cli import main
from diffucoder.decoding.visualize import render_unmasking, save_decode_order_png
from diffucoder.model import save_model


def test_heatmap_png_is_written(tmp_path):
    trace = torch.stack([torch.arange(16), torch.arange(15, -1, -1)])
    path = tmp_path / "plots" / "order.png"
    save_decode_order_png(trace, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob("*.tmp*"))


def test_heatmap_rejects_a_flat_trace(tmp_path):
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        save_decode_order_png(torch.arange(4), str(tmp_path / "x.png"))


def test_replay_reveals_tokens_in_trace_order():
    text = render_unmasking(["def", " f", "():", " pass"], [2, 0, 1, 3], frames=4, hidden="#")
    frames = text.split("--- step ")[1:]
    assert [f.splitlines()[1] for f in frames] == [
        "### f### ####",
        "### f(): ####",
        "def f(): ####",
        "def f(): pass",
    ]
    assert frames[0].startswith("0 (1/4 tokens)")


def test_generate_cli_prints_completion_and_order(tmp_path, model, tokenizer, capsys):
    uri = str(tmp_path / "model")
    save_model(model, tokenizer, uri)
    code = main(
        [
            "generate",
            "--model",
            uri,
            "--prompt",
            "def add(a, b):",
            "--show-order",
            "--frames",
            "2",
            "decoding.max_new_tokens=8",
            "decoding.steps=4",
            "decoding.temperature=0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "=== unmasking order (4 steps) ===" in out
    assert out.count("--- step ") in (1, 2)


def test_generate_cli_names_a_missing_model(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["generate", "--model", str(missing), "--prompt", "x"]) == 2
    assert f"diffucoder: error: --model {missing}: no such model" in capsys.readouterr().err
