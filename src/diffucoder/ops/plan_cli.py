"""``diffucoder plan --config PRESET [key.sub=value ...] [--json]``: cost and memory of a run before it runs.

    diffucoder plan --config paper-7b
    diffucoder plan --config paper-7b instruct.micro_batch_size=8 --json
    diffucoder plan --config tiny --start-from instruct --no-grpo

Prints, per stage: data, optimizer steps, training tokens, FLOPs, GPUs, hours at the MFU
assumption, GPU-hours, cost, and memory per GPU split into weights / gradients / optimizer /
buffers / reference / activations / logits with a fits / does-not-fit verdict. Exits 0 when every
stage fits, 3 when one does not (so scripts can gate on it), 2 on a config it cannot plan.
"""

from __future__ import annotations

import argparse
import json

from diffucoder.ops.planner import Plan, make_plan, misfit_message

EXIT_DOES_NOT_FIT = 3


def _si(value: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def format_plan(plan: Plan) -> str:
    """The human-readable plan: one row per stage, then memory per GPU, then totals."""
    head = (
        f"plan for preset {plan.preset!r}: {_si(plan.params)} parameters; {plan.gpu} "
        f"({plan.gpu_memory_gib:.1f} GiB, {plan.memory_reserve_gib:.1f} GiB reserved per GPU), "
        f"MFU {plan.mfu:.0%} ({plan.mfu_source}), {plan.gpu_hour_price:g} {plan.currency} per GPU-hour"
    )
    cols = f"{'stage':<9} {'data':>10} {'steps':>8} {'tokens':>8} {'FLOPs':>8} {'GPUs':>5} {'hours':>9} {'GPU-h':>9} {'cost':>10}"
    lines = [head, "", cols]
    for s in plan.stages:
        if not s.runs:
            lines.append(f"{s.stage:<9} {'(' + s.note + ')':>10}")
            continue
        data = f"{_si(s.data)} {s.data_unit[:3]}" if s.data else "max_steps"
        lines.append(
            f"{s.stage:<9} {data:>10} {s.steps:>8} {_si(s.tokens):>8} {s.flops:>8.2e} {s.gpus:>5} "
            f"{s.hours:>9.3g} {s.gpu_hours:>9.3g} {s.cost:>10.2f}"
        )
    t = plan.totals
    lines.append(
        f"{'total':<9} {'':>10} {'':>8} {'':>8} {t['flops']:>8.2e} {'':>5} {t['hours']:>9.3g} "
        f"{t['gpu_hours']:>9.3g} {t['cost']:>10.2f} {plan.currency}"
    )
    lines += ["", "memory per GPU (GiB) at the peak of a step:"]
    parts = ("weights", "gradients", "optimizer", "buffers", "reference", "activations", "logits")
    lines.append(
        f"{'stage':<9} {'ZeRO':>4} {'precision':>10} {'micro':>5} "
        + " ".join(f"{p:>11}" for p in parts)
        + f" {'total':>7}  verdict"
    )
    for s in plan.stages:
        if not s.runs:
            continue
        mem = s.memory.as_gib()
        verdict = "fits" if s.fits else "DOES NOT FIT"
        lines.append(
            f"{s.stage:<9} {s.zero_stage:>4} {s.precision:>10} {s.micro_batch:>5} "
            + " ".join(f"{mem[p]:>11.2f}" for p in parts)
            + f" {mem['total']:>7.2f}  {verdict}"
        )
    if plan.misfits():
        lines += ["", misfit_message(plan)]
    return "\n".join(lines)


def _plan(args: argparse.Namespace) -> int:
    from diffucoder.config import load_config

    plan = make_plan(
        load_config(args.config, args.overrides), start_from=args.start_from, run_grpo=not args.no_grpo
    )
    print(json.dumps(plan.as_dict(), indent=1) if args.json else format_plan(plan))
    return EXIT_DOES_NOT_FIT if plan.misfits() else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="FLOPs, hours, GPU-hours, cost and memory per GPU of a run, per stage")
    p.add_argument("--config", default="paper-7b", help="preset name or YAML path")
    p.add_argument(
        "--start-from", default="pretrain", help="first stage the run trains (pipeline start_from)"
    )
    p.add_argument("--no-grpo", action="store_true", help="the run skips stage 4 (pipeline run_grpo=false)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.set_defaults(func=_plan)
