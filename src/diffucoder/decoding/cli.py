"""``diffucoder generate``: decode one prompt with a saved model and print the completion.

    diffucoder generate --model runs/tiny/instruct/final --prompt "Write a function add(a, b)." \
        --chat --show-order decoding.temperature=0 decoding.steps=128

``--show-order`` adds a terminal replay of the unmasking order (which tokens the model fixed first).
"""

from __future__ import annotations

import argparse

import torch

from diffucoder.config_cli import add_config_args


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _generate(args: argparse.Namespace) -> int:
    from diffucoder.config import load_config
    from diffucoder.decoding.postprocess import completion_length, cut_completion, stop_token_ids
    from diffucoder.decoding.sampler import diffusion_generate
    from diffucoder.decoding.visualize import render_unmasking
    from diffucoder.inputs import require_model
    from diffucoder.model import load_model

    require_model(args.model)
    cfg = load_config(args.config, args.overrides)
    device = _device(cfg.device)
    model, tokenizer = load_model(args.model, device=device)
    prompt = args.prompt
    if args.chat:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    input_ids = torch.tensor([tokenizer(prompt)["input_ids"]], device=device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    out = diffusion_generate(
        model, input_ids, None, cfg.decoding, generator=generator, return_trace=args.show_order
    )
    completion_ids = out.sequences[0, input_ids.shape[1] :].tolist()
    text = tokenizer.decode(completion_ids, skip_special_tokens=False)
    print(cut_completion(text))
    if args.show_order:
        pieces = [tokenizer.decode([token], skip_special_tokens=False) for token in completion_ids]
        # replay only up to the stop token: the tail is padding
        shown = completion_length(completion_ids, stop_token_ids(tokenizer))
        print(f"\n=== unmasking order ({out.forward_passes} steps) ===")
        print(render_unmasking(pieces[:shown], out.trace[0, :shown].tolist(), frames=args.frames))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("generate", help="decode a prompt with a diffusion model")
    parser.add_argument("--model", required=True, help="model dir or s3:// URI (saved by save_model)")
    parser.add_argument("--prompt", required=True, help="prompt text")
    parser.add_argument(
        "--chat", action="store_true", help="wrap the prompt in the chat template (instruct models)"
    )
    parser.add_argument(
        "--show-order", action="store_true", help="also print a replay of the unmasking order"
    )
    parser.add_argument("--frames", type=int, default=8, help="snapshots shown by --show-order")
    add_config_args(parser)
    parser.set_defaults(func=_generate)
