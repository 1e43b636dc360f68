"""``diffucoder pipeline run-local|compile|submit|rerun|summary|schedule``: the KFP pipeline's entry points.

    diffucoder pipeline run-local --preset tiny [key.sub=value ...]     (= make run)
    diffucoder pipeline run-local --runner docker [--image-registry R]  (each step in its image)
    diffucoder pipeline compile [--out diffucoder.yaml]                 (the IR, into the working directory)
    diffucoder pipeline submit --host URL [--experiment E] [--param k=v ...] [--preset P] [key=value ...]
    diffucoder pipeline rerun RUN_ROOT [--host URL]
    diffucoder pipeline schedule create|list|pause|resume|delete ...    (see diffucoder_kfp.schedule_cli)

The ``diffucoder`` console script registers this group from here. It imports nothing of kfp until a
command runs, so ``diffucoder --help`` works without it; a command that needs kfp and does not find
it says which extra to install (:func:`require_kfp`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from diffucoder.cli_errors import UsageError
from diffucoder.images import DEFAULT_REGISTRY, REGISTRY_ENV

KFP_EXTRA = "pip install 'diffucoder[kfp]'"


def require_kfp() -> None:
    """Refuse, naming the extra to install, where the Kubeflow Pipelines SDK is missing.

    Raises:
        UsageError: kfp or kfp-kubernetes is not installed.
    """
    for module in ("kfp", "kfp.kubernetes"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise UsageError(
                f"`diffucoder pipeline` needs the Kubeflow Pipelines SDK, and {exc.name} is not installed: "
                f"{KFP_EXTRA}"
            ) from None


def parse_params(items: list[str]) -> dict[str, Any]:
    """``--param k=v`` pairs; values parsed as YAML (numbers, bools, lists)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected name=value")
        out[key] = yaml.safe_load(raw) if raw else ""
    return out


def check_plan(arguments: dict[str, Any], *, force: bool) -> None:
    """Refuse (UsageError) a run whose plan does not fit in GPU memory, naming the stage, unless forced."""
    from diffucoder import steps
    from diffucoder.ops.planner import PlanError, make_plan, misfit_message

    cfg = steps.resolve_config(
        arguments.get("preset", "paper-7b"),
        list(arguments.get("overrides", [])),
        config_yaml=arguments.get("config_yaml", ""),
    )
    try:
        plan = make_plan(
            cfg,
            start_from=arguments.get("start_from", "pretrain"),
            run_grpo=bool(arguments.get("run_grpo", True)),
        )
    except PlanError as exc:
        print(f"warning: no memory plan for this run ({exc})", file=sys.stderr)
        return
    if plan.misfits() and not force:
        raise UsageError(
            "the run does not fit in GPU memory (diffucoder plan shows the whole plan; --force submits anyway):\n"
            + misfit_message(plan)
        )


def _run_local(args: argparse.Namespace) -> int:
    require_kfp()
    from diffucoder_kfp import local

    from diffucoder import steps

    cfg = steps.resolve_config(args.preset, args.overrides)
    if args.output_root:  # typed on the command line: relative to the shell's directory
        cfg.output_root = (
            args.output_root if "://" in args.output_root else str(Path(args.output_root).resolve())
        )
    elif args.runner == "docker":  # a tree of its own: the steps write as the images' user
        cfg.output_root = f"{cfg.output_root.rstrip('/')}-docker"
    if args.tracking_uri:
        cfg.tracking.tracking_uri = args.tracking_uri
    arguments = local.local_arguments(cfg, args.preset, args.overrides, **parse_params(args.param))
    print(
        f"running the diffucoder pipeline locally (kfp.local, {args.runner} runner, {args.preset}); "
        "task logs follow",
        flush=True,
    )
    started = time.time()
    root = local.run_local(
        arguments,
        args.kfp_root or local.default_kfp_root(arguments["output_root"]),
        runner=args.runner,
        registry=args.image_registry,
    )
    print(local.summary(root))
    print(f"total wall time {time.time() - started:.0f}s")
    return 0


def _compile(args: argparse.Namespace) -> int:
    require_kfp()
    from diffucoder_kfp.compile import compile_pipeline

    print(compile_pipeline(args.out.resolve()))
    return 0


def _submit(args: argparse.Namespace) -> int:
    require_kfp()
    from diffucoder_kfp.remote import submit

    arguments = {"preset": args.preset, "overrides": list(args.overrides), **parse_params(args.param)}
    check_plan(arguments, force=args.force)
    url = submit(
        args.host,
        arguments,
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
        token=args.token,
        package=args.package,
    )
    print(url)
    return 0


def _rerun(args: argparse.Namespace) -> int:
    require_kfp()
    from diffucoder_kfp import local, remote

    arguments = remote.rerun_arguments(args.run)
    arguments.update(parse_params(args.param))
    if args.host:
        print(remote.submit(args.host, arguments, experiment=args.experiment, namespace=args.namespace))
        return 0
    print(f"re-running {args.run} locally with its resolved config", flush=True)
    root = local.run_local(arguments, args.kfp_root or local.default_kfp_root(arguments["output_root"]))
    print(local.summary(root))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from diffucoder_kfp import local

    print(local.summary(args.run))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from diffucoder.config import PRESETS

    presets = ", ".join(PRESETS)
    parser = sub.add_parser("pipeline", help="the KFP pipeline: run locally, compile, submit, rerun")
    inner = parser.add_subparsers(dest="pipeline_command", required=True)

    p = inner.add_parser(
        "run-local",
        help="run the whole DAG here through kfp.local (make run)",
        description="Run every step of the pipeline on this machine (kfp.local): data, the four "
        "training stages, evaluation and the reports; prints a summary table at the end.",
        epilog="examples:\n"
        "  diffucoder pipeline run-local --preset tiny\n"
        "  diffucoder pipeline run-local --preset smoke --output-root /tmp/smoke\n"
        "  diffucoder pipeline run-local --preset tiny --param run_grpo=false grpo.beta=0.02",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="tiny", help=f"a preset ({presets}) or a YAML file (default: tiny)")
    p.add_argument("--output-root", default=None, help="local dir or s3:// prefix (default: the preset's)")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow URI (default: $MLFLOW_TRACKING_URI, else <output root>/mlflow.db)",
    )
    p.add_argument(
        "--kfp-root", default=None, help="kfp.local's own task outputs (default: beside the output root)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter, e.g. run_grpo=false or stdlib_max_files=200",
    )
    p.add_argument(
        "--runner",
        choices=["subprocess", "docker"],
        default="subprocess",
        help="subprocess: every step in this environment; docker: each step in its image through "
        "Docker or podman (build them first: make images)",
    )
    p.add_argument(
        "--image-registry",
        default=None,
        help=f"with --runner docker: where the images are tagged (default: ${REGISTRY_ENV} or "
        f"{DEFAULT_REGISTRY})",
    )
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.set_defaults(func=_run_local)

    # the working directory, never the installed package's folder (`make compile` refreshes the
    # checked-in pipelines/diffucoder.yaml through python -m diffucoder_kfp.compile)
    p = inner.add_parser("compile", help="write the pipeline's IR YAML (default ./diffucoder.yaml)")
    p.add_argument("--out", default=Path("diffucoder.yaml"), type=Path, help="where (default: %(default)s)")
    p.set_defaults(func=_compile)

    p = inner.add_parser("submit", help="start a run on a Kubeflow Pipelines endpoint; prints its URL")
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    p.add_argument("--experiment", default=None)
    p.add_argument("--run-name", default=None)
    p.add_argument("--namespace", default=None)
    p.add_argument("--token", default=None, help="bearer token (default: $KF_PIPELINES_TOKEN or none)")
    p.add_argument(
        "--package", type=Path, default=None, help="a compiled pipeline YAML (default: compile this checkout)"
    )
    p.add_argument("--preset", default="paper-7b", help=f"a preset ({presets}) or a YAML file")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--force", action="store_true", help="submit even if the plan does not fit in GPU memory")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.set_defaults(func=_submit)

    p = inner.add_parser("rerun", help="run a past pipeline run again with its exact resolved config")
    p.add_argument("run", help="the past run's root (printed in its summary; holds pipeline.json)")
    p.add_argument("--host", default=None, help="submit to this KFP endpoint instead of running locally")
    p.add_argument("--experiment", default=None)
    p.add_argument("--namespace", default=None)
    p.add_argument("--kfp-root", default=None)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.set_defaults(func=_rerun)

    p = inner.add_parser("summary", help="print a finished run's summary table again")
    p.add_argument("run", help="run root")
    p.set_defaults(func=_summary)

    from diffucoder_kfp import schedule_cli

    schedule_cli.register(inner)
