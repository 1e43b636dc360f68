"""The planner's memory model against what the code really holds.

Activations: the bytes autograd saves in a forward pass of a real model (counted with
``torch.autograd.graph.saved_tensors_hooks``, each storage once) must match
``activation_bytes_per_token`` per precision mode. Weights and optimizer states: the ZeRO
accounting on one rank. The whole step's resident memory is checked by
``benchmarks/bench_memory.py`` (BENCHMARKS.md ``## operations``).
"""

import inspect
import json

import pytest
import torch

from diffucoder.config import load_config
from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.model import build_model
from diffucoder.ops.memory import (
    activation_bytes_per_token,
    n_params,
    param_tensors,
    state_bytes,
    training_memory,
)

SHAPES = {
    "tiny": [],
    "wider-ffn": ["model.hidden_size=96", "model.intermediate_size=512", "model.num_hidden_layers=3"],
}


def saved_bytes(model, ids: torch.Tensor, *, autocast: bool) -> int:
    """Bytes of the distinct non-parameter storages autograd saves for backward in one forward."""
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
        model(ids, logits_at=torch.zeros_like(ids, dtype=torch.bool))  # layers only: no head rows
    return sum(n for ptr, n in storages.items() if ptr not in params)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(
    ("precision", "dtype", "attn"),
    [
        ("fp32", torch.float32, "sdpa"),
        ("bf16", torch.bfloat16, "sdpa"),
        ("bf16-mixed", torch.float32, "sdpa_fp32"),
    ],
)
def test_activation_count_matches_autograd(shape, precision, dtype, attn):
    cfg = load_config("tiny", [*SHAPES[shape], f"model.attn_implementation={attn}"])
    tok = train_tokenizer([inspect.getsource(json)], 300)
    torch.manual_seed(0)
    model = build_model(cfg.model, tok).to(dtype).train()
    batch, seq = 2, 64
    ids = torch.randint(0, 290, (batch, seq))
    measured = saved_bytes(model, ids, autocast=precision == "bf16-mixed")
    if precision == "bf16-mixed":  # the weight casts autocast caches for the step count separately
        measured -= 2 * n_params(cfg.model, len(tok))
    predicted = batch * seq * cfg.model.num_hidden_layers * activation_bytes_per_token(cfg.model, precision)
    assert predicted == pytest.approx(measured, rel=0.12), (precision, shape, predicted, measured)


def test_zero_accounting():
    cfg = load_config("tiny")
    tensors = param_tensors(cfg.model, 4096)
    psi = sum(tensors)
    # fp32 Adam without ZeRO: 4 (weights) + 4 (grads) + 8 (moments) bytes per parameter
    w, g, o, b = state_bytes(tensors, zero_stage=0, precision="fp32", weight_bytes=4, ranks=1)
    assert (w, g, o, b) == (4 * psi, 4 * psi, 8 * psi, 0)
    # ZeRO-2 over 2 ranks keeps an fp32 copy of its half beside the weights and stages gradients in
    # DeepSpeed's 5e8-element bucket, allocated whole however small the model
    w, g, o, b = state_bytes(tensors, zero_stage=2, precision="fp32", weight_bytes=4, ranks=2)
    assert (w, g, o, b) == (4 * psi, 2 * psi, 6 * psi, 4 * 500_000_000)
    # bf16 under ZeRO-2: bf16 weights, fp32 gradient partition, fp32 master + moments of the partition
    w, g, o, b = state_bytes(tensors, zero_stage=2, precision="bf16", weight_bytes=2, ranks=8)
    assert (w, g, o, b) == (2 * psi, 4 * psi / 8, 12 * psi / 8, 2 * 500_000_000)
    # ZeRO-3 shards the large tensors only
    w3, *_ = state_bytes(tensors, zero_stage=3, precision="fp32", weight_bytes=4, ranks=2)
    assert 2 * psi < w3 < 4 * psi


def test_gradient_checkpointing_keeps_layer_inputs_only():
    full, ckpt = (
        training_memory(
            load_config("paper-7b", [f"model.gradient_checkpointing={on}"]).model,
            vocab_size=152_064,
            zero_stage=2,
            precision="bf16",
            ranks=8,
            rows=2,
            seq_len=4096,
            scored_positions=8192,
        )
        for on in ("false", "true")
    )
    assert ckpt.activations < full.activations / 10
    assert ckpt.weights == full.weights and ckpt.logits == full.logits
