"""``diffucoder evaluate``: score a model on HumanEval(+), MBPP(+) and the tiny held-out tasks, or
score completions produced elsewhere (an EvalPlus samples file).

    diffucoder evaluate --model runs/tiny/instruct/final --benchmarks humaneval,mbpp_plus \\
        --out runs/tiny/eval --config tiny evaluation.max_problems=20
    diffucoder evaluate --samples samples.jsonl --out runs/external/eval
"""

from __future__ import annotations

import argparse
import json

from diffucoder import logs
from diffucoder.config_cli import add_config_args
from diffucoder.evaluation.benchmarks import ALL_BENCHMARKS, benchmark_uri
from diffucoder.evaluation.config import EvaluationConfig
from diffucoder.inputs import MissingInputError, require_exists, require_model


def _benchmarks(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {unknown or text!r}; choose from {', '.join(ALL_BENCHMARKS)}"
        )
    return names


def _require_benchmark_files(cfg: EvaluationConfig, names: list[str]) -> None:
    """Every benchmark's file must exist before torch and the model are loaded."""
    for name in names:
        try:
            uri = benchmark_uri(name, cfg)
        except ValueError as exc:  # tiny_heldout without evaluation.tiny_heldout_uri
            raise MissingInputError(str(exc)) from None
        require_exists(uri, flag=f"benchmark {name}:", what="benchmark file")


def _evaluate(args: argparse.Namespace) -> int:
    from diffucoder.config import load_config

    # the inputs first: before the config is printed or torch and the model are loaded
    if args.samples:
        require_exists(args.samples, flag="--samples", what="samples file")
    else:
        require_model(args.model)
    cfg = load_config(args.config, args.overrides)
    if not args.samples:
        _require_benchmark_files(cfg.evaluation, args.benchmarks or cfg.evaluation.benchmarks)
    from diffucoder.evaluation.run import run_evaluation, score_samples

    logs.configure("%(asctime)s %(name)s %(message)s")
    print(cfg.to_yaml(), end="")  # resolve once, print at start
    if args.samples:
        result = score_samples(cfg, args.samples, args.out, args.benchmarks)
    else:
        result = run_evaluation(cfg, args.model, args.benchmarks, args.out)
    headline = {k: v for k, v in sorted(result.metrics.items()) if "_temp" not in k}
    print(json.dumps({"out": result.out_uri, "metrics": headline, "timings": result.timings}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="score a saved model on code benchmarks (pass@k, AR-ness, an HTML report)",
        description="Score a saved model on HumanEval(+), MBPP(+) or the tiny held-out tasks, or score "
        "completions produced elsewhere; writes per-problem results, metrics and report.html under --out.",
        epilog="examples:\n"
        "  diffucoder evaluate --model runs/tiny/instruct/final --out runs/tiny/eval-again\n"
        "  diffucoder evaluate --model runs/tiny/grpo/final --out runs/tiny/eval-he \\\n"
        "      --benchmarks humaneval,mbpp_plus evaluation.max_problems=20\n"
        "  diffucoder evaluate --samples samples.jsonl --out runs/external/eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model dir or s3:// URI (HF format via save_model)")
    source.add_argument(
        "--samples",
        help="EvalPlus samples JSONL (task_id + solution or completion per line, local or s3://): "
        "score these instead of decoding",
    )
    parser.add_argument(
        "--benchmarks",
        type=_benchmarks,
        default=None,
        help=f"comma-separated subset of {','.join(ALL_BENCHMARKS)} (default: evaluation.benchmarks)",
    )
    parser.add_argument("--out", required=True, help="output dir or s3:// prefix")
    add_config_args(parser)
    parser.set_defaults(func=_evaluate)
