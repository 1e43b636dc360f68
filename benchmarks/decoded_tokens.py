"""Fingerprints of what a model decodes, to check that a sampler change leaves the tokens alone.

Decodes the first ``--problems`` held-out prompts with each ``--variants`` entry (names as in
``bench_decoding.py --sections trained``) at a fixed seed, in batches as the evaluation does, and
prints one JSON object: per variant the sha256 of every decoded sequence (prompt + completion ids,
batch by batch) and the forward passes. Run it on two trees with the same arguments; equal
digests mean identical tokens:

    .venv/bin/python benchmarks/decoded_tokens.py --model RUN/instruct/final \\
        --tasks TASKS/heldout.jsonl --problems 40 --variants plain-L,t0.95-dual-b16,dual-b16-L

``--set`` takes tiny-preset overrides as ``bench_decoding.py`` does, e.g. a GRPO rollout's shape:
``--tasks TASKS/rl.jsonl --set evaluation.gen_length=80 --set 'evaluation.temperatures=[0.7]'``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

from diffucoder.config import load_config
from diffucoder.decoding import diffusion_generate
from diffucoder.evaluation.benchmarks import load_benchmark
from diffucoder.evaluation.prompts import build_prompt
from diffucoder.model import load_model

sys.path.insert(0, str(Path(__file__).parent))
from bench_decoding import trained_variant  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", required=True, help="held-out tasks (heldout.jsonl)")
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--variants", default="plain-L,t0.95-dual-b16,dual-b16-L,t0.9-prefix-b16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="tiny-preset override"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(
        "tiny",
        [f"evaluation.tiny_heldout_uri={args.tasks}", f"evaluation.max_problems={args.problems}", *args.set],
    )
    ev = cfg.evaluation
    problems = load_benchmark("tiny_heldout", ev)
    model, tokenizer = load_model(args.model)
    model.eval()
    prompts = [build_prompt(p, ev.prompt_style, ev.system_prompt, tokenizer) for p in problems]
    digests = {}
    for name in args.variants.split(","):
        decoding = cfg.decoding.model_validate(
            {**cfg.decoding.model_dump(), "max_new_tokens": ev.gen_length,
             "temperature": ev.temperatures[0], **trained_variant(name, ev.gen_length)}
        )  # fmt: skip
        generator = torch.Generator().manual_seed(cfg.seed + ev.seed_offset)
        digest, passes = hashlib.sha256(), 0
        for start in range(0, len(prompts), args.batch):
            enc = tokenizer(
                prompts[start : start + args.batch], return_tensors="pt", padding=True,
                padding_side="left", add_special_tokens=False,
            )  # fmt: skip
            out = diffusion_generate(model, enc["input_ids"], enc["attention_mask"], decoding, generator)
            digest.update(out.sequences.numpy().tobytes())
            passes += out.forward_passes
        digests[name] = {"sha256": digest.hexdigest(), "forward_passes": passes}
        print(f"{name}: {digests[name]}", file=sys.stderr, flush=True)
    print(json.dumps({"model": args.model, "problems": len(problems), "variants": digests}))


if __name__ == "__main__":
    main()
