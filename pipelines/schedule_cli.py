"""``diffucoder pipeline schedule create|list|pause|resume|delete``: recurring runs on Kubeflow Pipelines.

    diffucoder pipeline schedule create --host URL --name nightly --cron "0 3 * * *" \\
        --experiment diffucoder --run-name-pattern "nightly-[[ScheduledTime]]" \\
        --param skip_if_data_unchanged=true --preset paper-7b [key.sub=value ...]
    diffucoder pipeline schedule list --host URL [--experiment E]
    diffucoder pipeline schedule pause|resume|delete --host URL SCHEDULE_ID

``create`` takes the same preset / override / ``--param`` syntax as ``pipeline submit`` and, like
it, refuses a run whose plan does not fit in GPU memory unless ``--force``. Cron expressions are
standard five-field crontab lines (or KFP's six-field form, seconds first); ``--interval`` takes
seconds. Times are RFC 3339 (``2026-12-01T03:00:00Z``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffucoder_kfp.cli import check_plan, parse_params, require_kfp


def _client(args: argparse.Namespace):
    from diffucoder_kfp.kfp_client import connect

    return connect(args.host, namespace=args.namespace, token=args.token)


def _create(args: argparse.Namespace) -> int:
    require_kfp()
    from diffucoder_kfp import schedules

    arguments = {"preset": args.preset, "overrides": list(args.overrides), **parse_params(args.param)}
    if args.run_name_pattern:
        arguments["run_name"] = args.run_name_pattern
    check_plan(arguments, force=args.force)
    schedule = schedules.Schedule(  # checks cron, interval, run-name pattern before any call to KFP
        name=args.name,
        experiment=args.experiment,
        trigger=schedules.Trigger(cron=args.cron, interval_s=args.interval, start=args.start, end=args.end),
        arguments=arguments,
        max_concurrency=args.max_concurrency,
        catchup=args.catchup,
        enabled=not args.paused,
        description=args.description,
    )
    run, version = schedules.create(_client(args), args.host, schedule, package=args.package)
    made = "uploaded" if version.created else "reused"
    print(f"pipeline version {version.name} ({made}, id {version.version_id})")
    print(f"recurring run {run.display_name!r}: id {run.recurring_run_id}, status {run.status}")
    return 0


def _list(args: argparse.Namespace) -> int:
    require_kfp()
    from diffucoder_kfp import schedules

    runs = schedules.list_all(_client(args), args.host, args.experiment)
    if not runs:
        print("no recurring runs")
        return 0
    print(f"{'id':<38} {'name':<24} {'status':<9} {'trigger':<28} {'max':>3}  pipeline version")
    for r in runs:
        t = r.trigger
        when = (
            f"cron {t.cron_schedule.cron}"
            if t and t.cron_schedule
            else f"every {t.periodic_schedule.interval_second}s"
            if t and t.periodic_schedule
            else "-"
        )
        ref = r.pipeline_version_reference
        print(
            f"{r.recurring_run_id:<38} {r.display_name:<24} {str(r.status):<9} {when:<28} "
            f"{str(r.max_concurrency):>3}  {ref.pipeline_version_id if ref else '(inline spec)'}"
        )
    return 0


def _by_id(action: str):
    def run(args: argparse.Namespace) -> int:
        require_kfp()
        from diffucoder_kfp import schedules

        getattr(schedules, action)(_client(args), args.host, args.schedule_id)
        print(f"{action}d recurring run {args.schedule_id}")
        return 0

    return run


def _endpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    p.add_argument("--namespace", default=None, help="profile namespace (multi-user KFP)")
    p.add_argument("--token", default=None, help="bearer token (default: $KF_PIPELINES_TOKEN or none)")


def register(inner: argparse._SubParsersAction) -> None:
    parser = inner.add_parser("schedule", help="recurring runs: create, list, pause, resume, delete")
    sub = parser.add_subparsers(dest="schedule_command", required=True)

    p = sub.add_parser("create", help="a recurring run of this checkout's pipeline (cron or interval)")
    _endpoint_args(p)
    p.add_argument("--name", required=True, help="recurring run name (KFP names its runs after it)")
    p.add_argument("--experiment", default="diffucoder")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='"0 3 * * *" (5 fields) or KFP\'s 6 fields (seconds first)')
    when.add_argument("--interval", type=int, help="seconds between runs")
    p.add_argument("--start", default=None, help="RFC 3339 time of the first possible run")
    p.add_argument("--end", default=None, help="RFC 3339 time after which no run starts")
    p.add_argument("--max-concurrency", type=int, default=1, help="runs of this schedule at once (1-10)")
    p.add_argument(
        "--catchup", action="store_true", help="backfill intervals missed while paused (default: no)"
    )
    p.add_argument("--paused", action="store_true", help="create it disabled")
    p.add_argument("--description", default=None)
    p.add_argument(
        "--package", type=Path, default=None, help="a compiled pipeline YAML (default: compile this checkout)"
    )
    p.add_argument(
        "--run-name-pattern",
        default="",
        help="run root / MLflow run name, e.g. nightly-[[ScheduledTime]] (KFP expands the macros)",
    )
    p.add_argument("--preset", default="paper-7b")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--force", action="store_true", help="create it even if the plan does not fit in GPU memory"
    )
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.set_defaults(func=_create)

    p = sub.add_parser("list", help="recurring runs (all, or of one experiment)")
    _endpoint_args(p)
    p.add_argument("--experiment", default=None)
    p.set_defaults(func=_list)

    for action, help_text in (
        ("pause", "stop triggering (KFP: disable)"),
        ("resume", "trigger again (KFP: enable)"),
        ("delete", "remove the recurring run (its past runs stay)"),
    ):
        p = sub.add_parser(action, help=help_text)
        _endpoint_args(p)
        p.add_argument("schedule_id", metavar="SCHEDULE_ID")
        p.set_defaults(func=_by_id(action))
