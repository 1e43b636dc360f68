"""DiffusionLM attention behaviour: bidirectional, padding, 4-D masks, annealing, kernels agree."""

from __future__ import annotations

import pytest
import torch

from diffucoder.model import anneal_ratio, annealed_attention_mask, build_model
from diffucoder.model.attention import SDPA_SHARED_KV
from diffucoder.model.build import enable_gradient_checkpointing


def _ids(tokenizer, batch=2, seq_len=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(len(tokenizer) // 4, len(tokenizer), (batch, seq_len), generator=g)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_later_token_changes_earlier_logits(tokenizer, small_cfg, attn):
    model = build_model(small_cfg.model_copy(update={"attn_implementation": attn}), tokenizer).eval()
    x = _ids(tokenizer)
    y = x.clone()
    y[:, 12] = tokenizer.mask_token_id
    with torch.no_grad():
        delta = (model(x) - model(y))[:, :12].abs().amax(dim=-1)  # (B, 12)
    # every earlier position sees the change, not just some
    assert (delta > 1e-4).all(), delta


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_anneal_ratio_zero_is_causal(tokenizer, small_cfg, attn):
    model = build_model(small_cfg.model_copy(update={"attn_implementation": attn}), tokenizer).eval()
    x = _ids(tokenizer)
    y = x.clone()
    y[:, 12] = tokenizer.mask_token_id
    causal = annealed_attention_mask(16, 0.0)
    with torch.no_grad():
        lx, ly = model(x, causal), model(y, causal)
    torch.testing.assert_close(lx[:, :12], ly[:, :12])
    assert (lx[:, 12:] - ly[:, 12:]).abs().amax() > 1e-4


def test_causal_mask_reproduces_the_plain_causal_lm(tokenizer, small_cfg):
    """With the causal mask, our forward equals the HF model's own causal forward (same weights)."""
    from transformers import Qwen2ForCausalLM

    model = build_model(small_cfg, tokenizer).eval()
    plain = Qwen2ForCausalLM(model.hf.config).eval()  # fresh module: its attention is still causal
    plain.load_state_dict(model.hf.state_dict())
    x = _ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(model(x, annealed_attention_mask(16, 0.0)), plain(x).logits)
        assert (model(x) - plain(x).logits).abs().amax() > 1e-4


@pytest.mark.parametrize("attn", ["sdpa", "sdpa_fp32", "eager"])
def test_causal_flag_equals_the_causal_mask(tokenizer, small_cfg, attn):
    """``causal=True`` (SDPA's is_causal, or the mask for eager) computes what the (T, T) causal mask
    does: the same logits bit for bit, gradients within float32 reassociation."""
    torch.manual_seed(0)
    model = build_model(small_cfg.model_copy(update={"attn_implementation": attn}), tokenizer)
    x = _ids(tokenizer)
    results = []
    for kwargs in ({"attention_mask": annealed_attention_mask(16, 0.0)}, {"causal": True}):
        model.zero_grad()
        logits = model(x, **kwargs)
        logits.square().mean().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (masked, masked_grads), (flagged, flagged_grads) = results
    assert torch.equal(masked, flagged)
    for a, b in zip(masked_grads, flagged_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="causal=True takes no attention_mask"):
        model(x, annealed_attention_mask(16, 0.0), causal=True)


def test_anneal_schedule_and_mask():
    assert anneal_ratio(0, 10_000) == pytest.approx(1e-4)
    assert anneal_ratio(4_999, 10_000) == pytest.approx(0.5)
    assert anneal_ratio(20_000, 10_000) == 1.0
    assert anneal_ratio(3, 0) == 1.0
    assert annealed_attention_mask(8, 1.0) is None
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    m1 = annealed_attention_mask(256, 0.3, generator=g1)
    m2 = annealed_attention_mask(256, 0.3, generator=g2)
    assert m1.shape == (1, 1, 256, 256) and m1.dtype == torch.bool
    assert torch.equal(m1, m2)  # reproducible from the generator
    lower = torch.ones(256, 256, dtype=torch.bool).tril()
    assert m1[0, 0][lower].all()  # causal part always allowed
    frac = m1[0, 0][~lower].float().mean().item()
    assert 0.27 < frac < 0.33  # Bernoulli(0.3) above the diagonal
    with pytest.raises(ValueError, match="ratio"):
        annealed_attention_mask(8, 1.5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_is_hidden(tokenizer, small_cfg, attn):
    """A padded sequence gives the same logits on its real tokens as the unpadded one."""
    model = build_model(small_cfg.model_copy(update={"attn_implementation": attn}), tokenizer).eval()
    real = _ids(tokenizer, batch=1, seq_len=10)
    pad = torch.full((1, 6), tokenizer.pad_token_id)
    with torch.no_grad():
        alone = model(real)
        right = model(torch.cat([real, pad], 1), torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], 1))
        left_pos = torch.cat([torch.zeros(1, 6, dtype=torch.long), torch.arange(10)[None]], 1)
        left = model(
            torch.cat([pad, real], 1), torch.cat([torch.zeros(1, 6), torch.ones(1, 10)], 1), left_pos
        )
    torch.testing.assert_close(right[:, :10], alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(left[:, 6:], alone, atol=1e-5, rtol=1e-4)


def _assert_kernel_matches_sdpa(tokenizer, small_cfg, attn: str, **tolerance):
    """Same weights, ``attn`` vs ``sdpa``: equal outputs with no mask, a padding mask and a 4-D mask."""
    sdpa = build_model(small_cfg, tokenizer).eval()
    other = build_model(small_cfg.model_copy(update={"attn_implementation": attn}), tokenizer).eval()
    other.load_state_dict(sdpa.state_dict())
    x = _ids(tokenizer)
    four_d = annealed_attention_mask(16, 0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for mask in (None, torch.ones(2, 16), four_d):
            torch.testing.assert_close(sdpa(x, mask), other(x, mask), **tolerance)
    return sdpa, other, x


def test_sdpa_and_eager_agree(tokenizer, small_cfg):
    _assert_kernel_matches_sdpa(tokenizer, small_cfg, "eager", atol=1e-5, rtol=1e-4)


def test_masked_inference_shares_kv_heads_with_identical_outputs(tokenizer, small_cfg, monkeypatch):
    """``sdpa`` runs as SDPA_SHARED_KV: masked no-grad calls skip transformers' per-head K/V copies
    (repeat_kv) and give bit-identical outputs; with gradients transformers' own path runs."""
    from transformers.integrations import sdpa_attention

    shared = build_model(small_cfg, tokenizer).eval()
    assert shared.hf.config._attn_implementation == SDPA_SHARED_KV
    plain = build_model(small_cfg, tokenizer).eval()
    plain.load_state_dict(shared.state_dict())
    plain.hf.set_attn_implementation("sdpa")  # transformers' function, repeat_kv included
    copies = []
    repeat_kv = sdpa_attention.repeat_kv
    monkeypatch.setattr(sdpa_attention, "repeat_kv", lambda x, n: copies.append(n) or repeat_kv(x, n))
    x = _ids(tokenizer)
    padding = torch.ones(2, 16)
    padding[1, :5] = 0
    four_d = annealed_attention_mask(16, 0.5, generator=torch.Generator().manual_seed(0))
    for mask in (padding, four_d):
        with torch.no_grad():
            expected = plain(x, mask)
            assert copies, "the reference did not take transformers' repeat_kv path"
            copies.clear()
            assert torch.equal(shared(x, mask), expected)
            assert not copies
        shared(x, mask).sum().backward()  # training: transformers' path
        assert copies
        copies.clear()


def test_bad_inputs_are_named(tokenizer, small_cfg):
    model = build_model(small_cfg, tokenizer)
    x = _ids(tokenizer)
    with pytest.raises(ValueError, match="input_ids must be"):
        model(x[0])
    with pytest.raises(ValueError, match="must be bool"):
        model(x, torch.ones(2, 1, 16, 16))
    with pytest.raises(ValueError, match="attention_mask must be"):
        model(x, torch.ones(2, 1, 16))


def test_token_ids_and_size(tokenizer, small_cfg):
    model = build_model(small_cfg, tokenizer)
    assert model.mask_token_id == tokenizer.mask_token_id
    assert model.pad_token_id == tokenizer.convert_tokens_to_ids("<|dlm_pad|>")
    assert model.eos_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert model.hf.get_input_embeddings().weight.shape[0] == len(tokenizer)


def test_gradient_checkpointing_gives_the_same_gradients(tokenizer, small_cfg):
    plain = build_model(small_cfg, tokenizer).train()
    ckpt = build_model(small_cfg, tokenizer).train()
    ckpt.load_state_dict(plain.state_dict())
    enable_gradient_checkpointing(ckpt)
    assert ckpt.hf.model.gradient_checkpointing
    x = _ids(tokenizer)
    for m in (plain, ckpt):
        m(x).float().logsumexp(-1).mean().backward()
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_logits_at_scored_positions_gives_the_full_loss_and_gradients(tokenizer, small_cfg):
    """The head run only at the masked targets' positions changes the cost, not the loss or gradients."""
    from diffucoder.train.objective import elbo_loss, forward_noise, scored_logit_positions

    full = build_model(small_cfg, tokenizer).train()
    selective = build_model(small_cfg, tokenizer).train()
    selective.load_state_dict(full.state_dict())
    x = _ids(tokenizer, batch=3, seq_len=20)
    noised = forward_noise(x, None, tokenizer.mask_token_id, generator=torch.Generator().manual_seed(3))
    positions = scored_logit_positions(noised.masked)
    assert positions.sum() == noised.masked.sum() and 0 < positions.sum() < positions.numel()
    loss_full, _ = elbo_loss(full(noised.noisy_ids), x, noised.masked, noised.t)
    gathered = selective(noised.noisy_ids, logits_at=positions)
    assert gathered.shape == (int(positions.sum()), len(tokenizer))
    loss_selective, _ = elbo_loss(gathered, x, noised.masked, noised.t)
    torch.testing.assert_close(loss_selective, loss_full)
    loss_full.backward()
    loss_selective.backward()
    for (name, p1), (_, p2) in zip(full.named_parameters(), selective.named_parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-6, rtol=1e-4, msg=name)
    with pytest.raises(ValueError, match="logits_at shape"):
        selective(x, logits_at=positions[:, :-1])
    with pytest.raises(ValueError, match="gathered logits have"):
        elbo_loss(gathered[:-1], x, noised.masked, noised.t)


def _attention_output_dtypes(model, x) -> set[torch.dtype]:
    """Dtypes reaching every layer's o_proj, i.e. what the attention kernel returned."""
    seen: set[torch.dtype] = set()
    hooks = [
        layer.self_attn.o_proj.register_forward_pre_hook(lambda _m, args: seen.add(args[0].dtype))
        for layer in model.hf.model.layers
    ]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_sdpa_fp32_equals_sdpa_and_keeps_attention_float32_under_autocast(tokenizer, small_cfg):
    sdpa, fp32, x = _assert_kernel_matches_sdpa(tokenizer, small_cfg, "sdpa_fp32", atol=0, rtol=0)
    # under a bf16 autocast the projections run in bf16 but the attention kernel does not
    assert _attention_output_dtypes(sdpa, x) == {torch.bfloat16}
    assert _attention_output_dtypes(fp32, x) == {torch.float32}
