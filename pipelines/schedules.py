"""Recurring runs of the pipeline on Kubeflow Pipelines, through ``kfp.Client``.

The compiled package is uploaded once per content: its pipeline version is named
``diffucoder-<sha256 of the package, 12 hex>``, so uploading the same package again finds the
existing version instead of creating one. A recurring run references that version (not an inline
spec), so the KFP UI shows which build each scheduled run used.

Run names: KFP names each run of a recurring run ``<recurring run name>-<index>-<hash>``. The
``run_name`` pipeline parameter (``--run-name-pattern``) sets the run root and the MLflow parent
run's name instead; KFP expands ``[[ScheduledTime]]``, ``[[Index]]``, ``[[RunUUID]]`` and
``[[CurrentTime]]`` in recurring runs' parameters, so a pattern must hold one of them to keep runs
apart.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffucoder_kfp.compile import compile_pipeline
from diffucoder_kfp.diffucoder import PIPELINE_NAME
from diffucoder_kfp.kfp_client import KfpNotFound, kfp_call

from diffucoder.cli_errors import UsageError
from diffucoder.ops.cron import kfp_cron

RUN_NAME_MACROS = ("[[ScheduledTime", "[[Index]]", "[[RunUUID]]", "[[CurrentTime")
MAX_CONCURRENCY = 10


@dataclass(frozen=True)
class PipelineVersion:
    pipeline_id: str
    version_id: str
    name: str
    created: bool


@dataclass(frozen=True)
class Trigger:
    """Exactly one of ``cron`` (any form :func:`kfp_cron` takes) and ``interval_s``; checked when made."""

    cron: str | None = None
    interval_s: int | None = None
    start: str | None = None  # RFC 3339
    end: str | None = None

    def __post_init__(self) -> None:
        self.kfp_args()

    def kfp_args(self) -> dict[str, Any]:
        if (self.cron is None) == (self.interval_s is None):
            raise UsageError("a schedule needs exactly one of --cron and --interval")
        if self.interval_s is not None and self.interval_s < 1:
            raise UsageError(f"--interval {self.interval_s}: must be at least 1 second")
        args: dict[str, Any] = {"start_time": self.start, "end_time": self.end}
        if self.cron is not None:
            args["cron_expression"] = kfp_cron(self.cron)
        else:
            args["interval_second"] = self.interval_s
        return args


@dataclass(frozen=True)
class Schedule:
    """A recurring run as asked for: checked when made, so bad input fails before any call to KFP."""

    name: str
    experiment: str
    trigger: Trigger
    arguments: dict[str, Any]
    max_concurrency: int = 1
    catchup: bool = False
    enabled: bool = True
    description: str | None = None

    def __post_init__(self) -> None:
        check_run_name_pattern(self.arguments.get("run_name", ""))
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:  # the KFP API server's limit
            raise UsageError(f"--max-concurrency {self.max_concurrency}: KFP allows 1 to {MAX_CONCURRENCY}")


def version_name(package: Path) -> str:
    return f"{PIPELINE_NAME}-{hashlib.sha256(package.read_bytes()).hexdigest()[:12]}"


def _equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def ensure_pipeline_version(client, host: str, package: Path) -> PipelineVersion:
    """The pipeline version holding exactly ``package``: found by its content-hash name, else uploaded."""
    name = version_name(package)
    with kfp_call(host, f"find pipeline {PIPELINE_NAME!r}"):
        pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
    if pipeline_id is None:
        with kfp_call(host, f"upload pipeline {PIPELINE_NAME!r}"):
            pipeline_id = client.upload_pipeline(str(package), pipeline_name=PIPELINE_NAME).pipeline_id
    with kfp_call(host, f"find pipeline version {name}"):
        found = client.list_pipeline_versions(pipeline_id, page_size=1, filter=_equals("display_name", name))
    if found.pipeline_versions:
        return PipelineVersion(
            pipeline_id, found.pipeline_versions[0].pipeline_version_id, name, created=False
        )
    with kfp_call(host, f"upload pipeline version {name}"):
        version = client.upload_pipeline_version(str(package), name, pipeline_id=pipeline_id)
    return PipelineVersion(pipeline_id, version.pipeline_version_id, name, created=True)


def check_run_name_pattern(pattern: str) -> None:
    if pattern and not any(m in pattern for m in RUN_NAME_MACROS):
        raise UsageError(
            f"--run-name-pattern {pattern!r} names every run the same; include [[ScheduledTime]], [[Index]], "
            "[[RunUUID]] or [[CurrentTime]] (KFP expands them per run)"
        )


def create(client, host: str, schedule: Schedule, *, package: Path | None = None):
    """Create ``schedule`` as a recurring run of the pipeline compiled from this checkout (or ``package``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = package or compile_pipeline(Path(tmp) / "diffucoder.yaml")
        version = ensure_pipeline_version(client, host, Path(path))
    with kfp_call(host, f"experiment {schedule.experiment!r}"):
        exp = client.create_experiment(schedule.experiment)
    with kfp_call(host, f"create recurring run {schedule.name!r}"):
        run = client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=schedule.name,
            description=schedule.description,
            max_concurrency=schedule.max_concurrency,
            no_catchup=not schedule.catchup,
            params=schedule.arguments,
            pipeline_id=version.pipeline_id,
            version_id=version.version_id,
            enabled=schedule.enabled,
            **schedule.trigger.kfp_args(),
        )
    return run, version


def list_all(client, host: str, experiment: str | None = None) -> list:
    experiment_id = None
    if experiment:
        with kfp_call(host, f"experiment {experiment!r}"):
            experiment_id = client.get_experiment(experiment_name=experiment).experiment_id
    runs, token = [], ""
    while True:
        with kfp_call(host, "list recurring runs"):
            page = client.list_recurring_runs(page_token=token, page_size=100, experiment_id=experiment_id)
        runs += page.recurring_runs or []
        token = page.next_page_token or ""
        if not token:
            return runs


def _by_id(action: str):
    def call(client, host: str, schedule_id: str) -> None:
        try:
            with kfp_call(host, f"{action} recurring run {schedule_id}"):
                getattr(client, f"{action}_recurring_run")(schedule_id)
        except KfpNotFound:
            raise KfpNotFound(
                f"no recurring run with id {schedule_id!r} at {host}; list them with `diffucoder pipeline schedule list`"
            ) from None

    return call


pause = _by_id("disable")
resume = _by_id("enable")
delete = _by_id("delete")
