"""Tokens/s and MFU of a stage-3 step and a GRPO training step of a ~0.5B Qwen2-shaped diffusion LM.

One GPU, DeepSpeed ZeRO-3, bf16, random weights with Qwen2.5-0.5B's dimensions (hidden 896, 24
layers, 14 heads / 2 KV heads, SwiGLU 4864, vocab 151,936, tied embeddings). The steps are the
project's own pieces: stage 3 = ``forward_noise`` on the response half + ``DiffusionLM`` with the
head at the masked positions + ``elbo_loss``; GRPO = the coupled estimator (``estimate_logps``:
three copies per completion) forward + backward through ``grpo_loss``, after the reference model's
no-grad estimate (rollout decoding is not part of this step; ``bench_grpo.py`` times it).

MFU = model FLOPs / (time x peak): stage 3 counts ``flops_per_token`` (6N + 12LHT) for every token
of the batch; GRPO counts the three copies with backward and the reference's three without. The
planner's ``plan.mfu`` default cites this benchmark's result once it has run on the target GPU.

    python benchmarks/bench_gpu.py                      # on a GPU (peak 989 TFLOP/s: H100 SXM bf16)
    python benchmarks/bench_gpu.py --tiny --steps 2     # CPU smoke run (what the test runs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import time
from types import SimpleNamespace

import torch

QWEN_05B = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "vocab_size": 151_936,
    "tie_word_embeddings": True,
}
TINY = {
    **QWEN_05B,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "vocab_size": 512,
}


def build_engine(dims: dict, device: str, precision: str):
    """A random-init DiffusionLM under DeepSpeed ZeRO-3 on one rank."""
    import deepspeed
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from diffucoder.model.build import declare_diffusion_config
    from diffucoder.model.diffusion_lm import DiffusionLM

    vocab = dims["vocab_size"]
    hf = Qwen2ForCausalLM(Qwen2Config(**dims, max_position_embeddings=4096, attn_implementation="sdpa"))
    declare_diffusion_config(
        hf.config, SimpleNamespace(mask_token_id=vocab - 1, pad_token_id=vocab - 2, eos_token_id=vocab - 3)
    )
    model = DiffusionLM(hf).to(device)
    config = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": precision == "bf16"},
        "zero_optimization": {"stage": 3, "overlap_comm": False, "contiguous_gradients": True},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=config, dist_init_required=False
    )
    return engine, model


def matmul_params(dims: dict) -> int:
    """N of ``6N``: every weight but the input embedding (with tied embeddings the head counts once)."""
    h, i, layers = dims["hidden_size"], dims["intermediate_size"], dims["num_hidden_layers"]
    kv = h // dims["num_attention_heads"] * dims["num_key_value_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i
    return layers * per_layer + dims["vocab_size"] * h


def stage3_step(engine, model, batch: int, seq: int, generator) -> int:
    from diffucoder.train.objective import elbo_loss, forward_noise, scored_logit_positions

    device = next(model.parameters()).device
    ids = torch.randint(10, model.config.vocab_size - 3, (batch, seq), generator=generator).to(device)
    response = torch.zeros_like(ids, dtype=torch.bool)
    response[:, seq // 4 :] = True
    noised = forward_noise(ids, response, model.mask_token_id, generator=generator)
    logits = engine(noised.noisy_ids, logits_at=scored_logit_positions(noised.masked))
    loss = elbo_loss(logits, ids, noised.masked, noised.t)[0]
    engine.backward(loss)
    engine.step()
    return batch * seq


def grpo_step(engine, model, batch: int, prompt: int, completion: int, generator) -> int:
    from diffucoder.rl.estimators import estimate_logps
    from diffucoder.rl.loss import grpo_loss

    device = next(model.parameters()).device
    seqs = torch.randint(
        10, model.config.vocab_size - 3, (batch, prompt + completion), generator=generator
    ).to(device)
    valid = torch.ones(batch, prompt, dtype=torch.bool, device=device)
    mask = torch.ones(batch, completion, dtype=torch.bool, device=device)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))

    def estimate(grad: bool):
        g = torch.Generator(device=device).manual_seed(seed)
        with torch.set_grad_enabled(grad):
            return estimate_logps(
                engine,
                seqs,
                prompt,
                valid,
                mask_token_id=model.mask_token_id,
                estimator="coupled",
                generator=g,
            )

    ref = estimate(False)  # the reference's pass (same weights here: the cost is what is measured)
    logp = estimate(True)
    advantages = torch.randn(batch, generator=generator).to(device)
    loss, _ = grpo_loss(
        logp, logp.detach(), ref, advantages, mask, epsilon_low=0.5, epsilon_high=0.5, beta=0.01
    )
    engine.backward(loss)
    engine.step()
    return batch * (prompt + completion)


def timed(fn, steps: int, device: str) -> float:
    fn()  # warm-up: allocator, ZeRO-3 partition bookkeeping
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model (CPU smoke run)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="stage-3 sequences per step")
    parser.add_argument("--seq-len", type=int, default=2048, help="stage-3 sequence length (paper: 2048)")
    parser.add_argument(
        "--grpo-batch", type=int, default=5, help="completions per GRPO micro-batch (paper: 5)"
    )
    parser.add_argument("--prompt", type=int, default=200)
    parser.add_argument("--completion", type=int, default=256)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="per device (H100 SXM dense bf16)")
    args = parser.parse_args(argv)
    from diffucoder.train.flops import flops_per_token, mfu

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dims = TINY if args.tiny else QWEN_05B
    if args.tiny:
        args.batch, args.seq_len, args.grpo_batch, args.prompt, args.completion = 2, 64, 2, 16, 16
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1"
    )
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if device == "cuda" else "gloo")
    engine, model = build_engine(dims, device, args.precision)
    gen = torch.Generator().manual_seed(0)
    n, layers, hidden = matmul_params(dims), dims["num_hidden_layers"], dims["hidden_size"]
    peak = args.peak_tflops * 1e12

    s3 = timed(lambda: stage3_step(engine, model, args.batch, args.seq_len, gen), args.steps, device)
    s3_tokens = args.batch * args.seq_len / s3
    s3_mfu = mfu(s3_tokens, flops_per_token(n, layers, hidden, args.seq_len), 1, peak)

    seq = args.prompt + args.completion
    g = timed(
        lambda: grpo_step(engine, model, args.grpo_batch, args.prompt, args.completion, gen),
        args.steps,
        device,
    )
    copies = 3  # coupled estimator: full mask + the complementary pair
    tokens = args.grpo_batch * seq
    step_flops = copies * tokens * flops_per_token(n, layers, hidden, seq) * (1 + 1 / 3)  # train + reference
    result = {
        "name": "gpu_step_throughput",
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else f"cpu ({platform.processor() or 'x86_64'})",
        "model": {"params_matmul": n, **dims},
        "precision": args.precision,
        "zero_stage": 3,
        "stage3": {
            "batch": args.batch,
            "seq_len": args.seq_len,
            "step_s": s3,
            "tokens_per_s": s3_tokens,
            "mfu": s3_mfu,
        },
        "grpo": {
            "completions": args.grpo_batch,
            "seq_len": seq,
            "step_s": g,
            "tokens_per_s": tokens / g,
            "mfu": step_flops / g / peak,
        },
        "peak_tflops": args.peak_tflops,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
