"""MLflow tracking: one parent run per pipeline run, one nested child run per stage, rank 0 only.

This is the only module that imports mlflow. It uses ``MlflowClient`` with
explicit run ids rather than mlflow's process-global "active run" stack, so a stage started in
another process (a KFP pod, a torchrun rank) attaches to exactly the run it was given.

Run layout (docs/storage-and-tracking.md)::

    experiment cfg.tracking.experiment
      parent run  "pipeline"     tags: diffucoder.kind=pipeline, mlflow.source.git.commit, preset,
                                       kfp.run_id, data_hash; headline metrics eval/<benchmark>/...
        child run "pretrain"     tags: mlflow.parentRunId=<parent>, diffucoder.stage=pretrain, ...
        child run "instruct" ...
        child run "evaluate-instruct"  tags: diffucoder.model_uri, diffucoder.scored_stage=instruct

Every run gets the resolved config as flattened params (``grpo.beta``) and as ``config.yaml``.
A restarted stage re-attaches to its run: pass ``resume_run_id`` (or set ``MLFLOW_RUN_ID``, as
KFP's MLflow integration does), or let :func:`stage_run` find the unfinished child run of the same
stage under the same parent. Ranks other than 0 get a :class:`NullTracker` with the same methods.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from diffucoder.config import RunConfig, TrackingConfig

log = logging.getLogger(__name__)

PARENT_ENV = "DIFFUCODER_PARENT_RUN_ID"
# KFP sets no run-id variable in user containers by itself; our components export the
# pipeline's run id (dsl.PIPELINE_JOB_ID_PLACEHOLDER) under these names.
KFP_RUN_ID_ENV = "KFP_RUN_ID"
KFP_PIPELINE_ENV = "KFP_PIPELINE_NAME"
# Set at image build time where the code is installed without its .git directory.
GIT_SHA_ENV = "DIFFUCODER_GIT_SHA"
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
CHANGED_PARAMS_TAG = "diffucoder.resume_changed_params"
# MLflow 3's UI opens an experiment in its GenAI (traces) view unless this tag says otherwise; the
# values are those of the UI's experiment kinds ("custom_model_development" is "Model training").
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"

# --------------------------------------------------------------------------------------------
# Names, params and ranks
# --------------------------------------------------------------------------------------------

_ILLEGAL_NAME_CHARS = re.compile(r"[^A-Za-z0-9_\-. :/]")


def metric_name(name: str) -> str:
    """A metric/param name MLflow accepts: ``pass@1`` -> ``pass_at_1``; other illegal chars -> ``_``."""
    return _ILLEGAL_NAME_CHARS.sub("_", name.replace("@", "_at_"))


def flatten_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dict -> ``{"grpo.beta": "0.01", ...}`` with string values (lists as JSON-ish str)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            out[metric_name(name)] = str(value)
    return out


def _env_rank() -> int | None:
    for var in ("RANK", "LOCAL_RANK"):
        if os.environ.get(var, "").strip():
            return int(os.environ[var])
    return None


def is_rank_zero() -> bool:
    """Global rank 0 (RANK, else LOCAL_RANK, else an initialised torch.distributed group) logs."""
    rank = _env_rank()
    if rank is not None:
        return rank == 0
    import sys

    torch = sys.modules.get("torch")  # never import torch just to learn we are not distributed
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return True


def git_sha() -> str | None:
    """The commit of the checkout this code runs from, or $DIFFUCODER_GIT_SHA in installed images."""
    if os.environ.get(GIT_SHA_ENV):
        return os.environ[GIT_SHA_ENV]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


# --------------------------------------------------------------------------------------------
# Client and experiment
# --------------------------------------------------------------------------------------------


def resolve_tracking_uri(cfg: TrackingConfig) -> str:
    """cfg.tracking_uri, else $MLFLOW_TRACKING_URI, else the SQLite file ``mlflow.db`` in the project
    home (diffucoder.home: $DIFFUCODER_HOME, else the checkout), never the current directory."""
    from diffucoder.home import project_home

    return (
        cfg.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{project_home() / 'mlflow.db'}"
    )


def configure(cfg: TrackingConfig) -> str:
    """Resolve the tracking store and export it as $MLFLOW_TRACKING_URI, so subprocesses agree.

    Every call here goes through an ``MlflowClient`` bound to this URI; mlflow's process-global
    fluent state is deliberately left alone. Returns the resolved tracking URI.
    """
    uri = resolve_tracking_uri(cfg)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def _client(cfg: TrackingConfig) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=configure(cfg))


def _experiment_id(client: MlflowClient, cfg: TrackingConfig) -> str:
    """Get or create the experiment; with an SQLite store its artifacts live beside the DB file."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(cfg.experiment)
    if found is not None:
        if EXPERIMENT_KIND_TAG not in found.tags:  # created before the tag existed, or by hand
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND)
        return found.experiment_id
    uri = client.tracking_uri
    artifact_location = None
    if uri.startswith("sqlite:///"):
        # mlflow's default would be ./mlruns in whatever directory the process started in.
        artifact_location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(
            cfg.experiment,
            artifact_location=artifact_location,
            tags={EXPERIMENT_KIND_TAG: TRAINING_EXPERIMENT_KIND},
        )
    except MlflowException:
        # Another stage process created it between our lookup and our create.
        found = client.get_experiment_by_name(cfg.experiment)
        if found is None:
            raise
        return found.experiment_id


def _run_tags(cfg: RunConfig, data_hash: str | None, extra: Mapping[str, str]) -> dict[str, str]:
    from mlflow.entities import SourceType
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

    # MLflow's own source tags, so its UI shows the source and the commit of every run.
    tags = {
        MLFLOW_SOURCE_NAME: "diffucoder",
        MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.JOB),
        "diffucoder.preset": cfg.preset,
        "diffucoder.config_fingerprint": cfg.fingerprint(),
    }
    if sha := git_sha():
        tags[MLFLOW_GIT_COMMIT] = sha
    if data_hash:
        tags["diffucoder.data_hash"] = data_hash
    if os.environ.get(KFP_RUN_ID_ENV):
        tags["kfp.run_id"] = os.environ[KFP_RUN_ID_ENV]
    if os.environ.get(KFP_PIPELINE_ENV):
        tags["kfp.pipeline"] = os.environ[KFP_PIPELINE_ENV]
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


# --------------------------------------------------------------------------------------------
# Trackers
# --------------------------------------------------------------------------------------------


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _clip_param(value: str) -> str:
    """Fit a param value into MLflow's length limit, marking the cut."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    marker = "...[truncated]"
    if len(value) <= MAX_PARAM_VAL_LENGTH:
        return value
    return value[: MAX_PARAM_VAL_LENGTH - len(marker)] + marker


def grouped_name(name: str, group: str | None) -> str:
    """``loss`` -> ``train/loss`` for group ``train``; a name with a group of its own (``cost/amount``,
    ``reward/total/mean``) keeps it, so MLflow's chart view shows one section per group."""
    return name if group is None or "/" in name else f"{group}/{name}"


class Tracker:
    """Logs to one MLflow run. Created by :func:`stage_run`; use its methods, not mlflow directly.

    ``group`` prefixes metric names that have no group of their own (:func:`grouped_name`).
    """

    def __init__(self, client: MlflowClient, run_id: str, group: str | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.group = group

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        """Log a flat dict of numbers; names are grouped and sanitised, ``None`` (no value) skipped."""
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        now = int(time.time() * 1000)
        entries = [
            Metric(metric_name(grouped_name(k, self.group)), float(v), now, int(step or 0))
            for k, v in metrics.items()
            if v is not None
        ]
        for chunk in _chunks(entries, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_curve(self, name: str, points: Mapping[int, float]) -> None:
        """One metric over an x axis other than time (AR-ness over k): MLflow draws it as a curve
        with ``step`` = x, where a scalar per x would be one chart per point."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        key = metric_name(grouped_name(name, self.group))
        entries = [Metric(key, float(v), now, int(x)) for x, v in sorted(points.items())]
        if entries:
            self.client.log_batch(self.run_id, metrics=entries)

    def log_dataset(self, uri: str, *, name: str, context: str, digest: str | None = None) -> None:
        """Record that the run read the data at ``uri`` (a file or directory, local or s3://).

        An MLflow dataset input without the rows (a ``MetaDataset``): the UI lists it under the
        run's inputs with its source, and ``context`` (``training``, ``evaluation``) says how it was used.
        The digest defaults to a sealed directory's content hash (else MLflow hashes the source).
        """
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        from diffucoder import storage

        if digest is None and storage.is_complete(uri):  # a sealed directory: its content hash
            digest = storage.read_manifest(uri).content_sha256()[:16]
        with warnings.catch_warnings():
            # mlflow registers its local-file source under two schemes and warns that a path matches both
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            source = resolve_dataset_source(str(uri))
        dataset = MetaDataset(source, name=name, digest=digest)
        # the client API takes the entity; mlflow.log_input converts the same way (fluent runs only)
        tag = InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), [tag])])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) params, flattened to dotted names, batched and clipped to MLflow's limits.

        Values longer than MLflow's limit are truncated with a marker; the untruncated config is
        always in the run's ``config.yaml``. MLflow params are immutable, which a resumed run
        would trip over, so keys already logged are skipped; those whose value changed (e.g. a
        raised ``max_steps`` to train longer) are listed in the tag ``diffucoder.resume_changed_params``.
        """
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

        flat = {key: _clip_param(value) for key, value in flatten_params(params).items()}
        run = self.client.get_run(self.run_id)
        existing = run.data.params
        changed = {k for k, v in flat.items() if k in existing and existing[k] != v}
        if changed:
            log.warning(
                "run %s: params changed since first logged: %s", self.run_id, ", ".join(sorted(changed))
            )
            earlier = set(filter(None, run.data.tags.get(CHANGED_PARAMS_TAG, "").split(",")))
            self.set_tags({CHANGED_PARAMS_TAG: ",".join(sorted(earlier | changed))})
        entries = [Param(k, v) for k, v in flat.items() if k not in existing]
        for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

        entries = [RunTag(k, str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in tags.items()]
        for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=chunk)

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a file or a whole directory under ``artifact_path`` in the run's artifacts."""
        path = Path(local_path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"log_artifact: {path} does not exist (run {self.run_id})")

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def describe(self) -> dict[str, str]:
        """Where the run is, for a report's header: its id, and its page in the MLflow UI when the
        store is a tracking server (a local store's UI is wherever ``mlflow ui`` serves it)."""
        uri = self.client.tracking_uri
        if not uri.startswith(("http://", "https://")):
            return {"MLflow run": self.run_id, "MLflow store": uri}
        experiment = self.client.get_run(self.run_id).info.experiment_id
        return {"MLflow run": f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{self.run_id}"}

    def log_config(self, cfg: RunConfig) -> None:
        """The resolved config as flattened params and as ``config.yaml`` (replaced on resume)."""
        self.log_params(cfg.model_dump(mode="json"))
        self.log_text(cfg.to_yaml(), "config.yaml")


class NullTracker:
    """What ranks other than 0 get: the same methods, doing nothing, so callers need no ``if``."""

    run_id: str | None = None

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        pass

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_config(self, cfg: RunConfig) -> None:
        pass

    def log_curve(self, name: str, points: Mapping[int, float]) -> None:
        pass

    def describe(self) -> dict[str, str]:
        return {}

    def log_dataset(self, uri: str, *, name: str, context: str, digest: str | None = None) -> None:
        pass


# --------------------------------------------------------------------------------------------
# Pipeline and stage runs
# --------------------------------------------------------------------------------------------


def start_pipeline_run(
    cfg: RunConfig,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    data_hash: str | None = None,
) -> str | None:
    """Create the parent run of one pipeline run and export its id as $DIFFUCODER_PARENT_RUN_ID.

    Returns the run id (None on ranks other than 0, which log nothing).
    """
    if not is_rank_zero():
        return None
    client = _client(cfg.tracking)
    run_tags = _run_tags(cfg, data_hash, {"diffucoder.kind": "pipeline", **(tags or {})})
    run = client.create_run(
        _experiment_id(client, cfg.tracking), run_name=run_name or "pipeline", tags=run_tags
    )
    Tracker(client, run.info.run_id).log_config(cfg)
    os.environ[PARENT_ENV] = run.info.run_id
    return run.info.run_id


def end_pipeline_run(
    parent_id: str | None, status: str = "FINISHED", cfg: TrackingConfig | None = None
) -> None:
    """Close the parent run with FINISHED, FAILED or KILLED (no-op for ``None`` / other ranks)."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"end_pipeline_run: status {status!r} is not one of {', '.join(TERMINAL_STATUSES)}")
    if parent_id is None or not is_rank_zero():
        return
    from diffucoder.config import TrackingConfig

    _client(cfg or TrackingConfig()).set_terminated(parent_id, status=status)


def _unfinished_stage_run(client: MlflowClient, experiment_id: str, stage: str, parent_id: str) -> str | None:
    """The newest not-FINISHED child run of ``stage`` under ``parent_id`` (a crashed attempt), if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.`diffucoder.stage` = '{stage}'",
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    for run in runs:
        if run.info.status != "FINISHED":
            return run.info.run_id
    return None


@contextmanager
def stage_run(
    stage: str,
    cfg: RunConfig,
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    data_hash: str | None = None,
    metric_group: str | None = None,
) -> Iterator[Tracker | NullTracker]:
    """Open (or re-attach to) the child run of one stage; closes it FINISHED, or FAILED on error.

    Args:
        stage: stage name (``pretrain``, ``midtrain``, ``instruct``, ``grpo``, ``evaluate``, ...).
        cfg: the resolved run config, logged as params and ``config.yaml``.
        parent_run_id: the pipeline run; defaults to $DIFFUCODER_PARENT_RUN_ID. None = top-level run.
        resume_run_id: re-attach to this run (e.g. saved in the checkpoint); defaults to $MLFLOW_RUN_ID.
            Without either, an unfinished run of the same stage under the same parent is re-used,
            so a restarted pod continues its curves instead of starting a second run.
        tags: extra run tags.
        data_hash: fingerprint of the input data, tagged ``diffucoder.data_hash``.
        metric_group: group of the run's metric names that have none (``train`` -> ``train/loss``).

    Yields:
        A :class:`Tracker` on rank 0, a :class:`NullTracker` elsewhere.
    """
    if not is_rank_zero():
        yield NullTracker()
        return
    from mlflow.exceptions import MlflowException

    client = _client(cfg.tracking)
    experiment_id = _experiment_id(client, cfg.tracking)
    parent_run_id = parent_run_id or os.environ.get(PARENT_ENV) or None
    resume_run_id = resume_run_id or os.environ.get("MLFLOW_RUN_ID") or None
    if resume_run_id is None and parent_run_id is not None:
        resume_run_id = _unfinished_stage_run(client, experiment_id, stage, parent_run_id)

    if resume_run_id is not None:
        try:
            client.get_run(resume_run_id)
        except MlflowException as exc:
            raise ValueError(
                f"stage {stage!r}: cannot resume MLflow run {resume_run_id!r} at {client.tracking_uri}: {exc}"
            ) from exc
        client.update_run(resume_run_id, status="RUNNING")
        tracker = Tracker(client, resume_run_id, metric_group)
        tracker.set_tags({"diffucoder.resumed": "true", **(tags or {})})
    else:
        extra = {"diffucoder.stage": stage, **(tags or {})}
        if parent_run_id is not None:
            extra["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(experiment_id, run_name=stage, tags=_run_tags(cfg, data_hash, extra))
        tracker = Tracker(client, run.info.run_id, metric_group)
    tracker.log_config(cfg)

    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(tracker.run_id, status=status)


def headline_metrics(metrics: Mapping[str, float], speed: str, label: str | None = None) -> dict[str, float]:
    """The pass@1 scores of an evaluation (of stage ``label``), named for the parent run.

    ``{bench}_pass_at_1_{speed}`` becomes ``eval/{bench}/pass_at_1_{label}`` (``eval/{bench}/pass_at_1``
    without a label), so MLflow's runs table has a column per benchmark and stage and its chart
    view groups them per benchmark.
    """
    suffix = f"_pass_at_1_{speed}"
    tail = f"_{label}" if label else ""
    return {
        f"eval/{name.removesuffix(suffix)}/pass_at_1{tail}": value
        for name, value in metrics.items()
        if name.endswith(suffix) and not name.startswith("evalplus")
    }


def log_headline_metrics(
    parent_run_id: str | None, label: str, metrics: Mapping[str, float], *, speed: str, cfg: TrackingConfig
) -> None:
    """Put an evaluation's pass@1 on the pipeline's parent run, and GRPO's change once both exist.

    The instruct and GRPO evaluations run in either order, so whichever finishes second logs
    ``eval/{bench}/grpo_change`` (GRPO minus instruct pass@1, the effect of stage 4).
    """
    if parent_run_id is None or not is_rank_zero():
        return
    client = _client(cfg)
    headline = headline_metrics(metrics, speed, label)
    logged = {**client.get_run(parent_run_id).data.metrics, **headline}
    for name in list(headline):
        bench = name.split("/")[1]
        grpo, instruct = (
            logged.get(f"eval/{bench}/pass_at_1_grpo"),
            logged.get(f"eval/{bench}/pass_at_1_instruct"),
        )
        if grpo is not None and instruct is not None:
            headline[f"eval/{bench}/grpo_change"] = grpo - instruct
    Tracker(client, parent_run_id).log_metrics(headline)


# --------------------------------------------------------------------------------------------
# Registry and comparison
# --------------------------------------------------------------------------------------------


# What the registered model takes and gives (``diffucoder.decoding.diffusion_generate``): token ids
# in, token ids out (the prompt followed by the decoded completion), batch x length each.
MODEL_TYPE = "masked-diffusion-lm"


def _model_signature():
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    ids = np.dtype("int64")
    return ModelSignature(
        inputs=Schema([TensorSpec(ids, (-1, -1), "input_ids")]),
        outputs=Schema([TensorSpec(ids, (-1, -1), "sequences")]),
    )


def _log_model(
    client: MlflowClient, model_uri: str, *, name: str, run_id: str, metrics: Mapping[str, float]
) -> str:
    """An MLflow logged model for the weights at ``model_uri``: made by run ``run_id``, with an
    ``MLmodel`` file (signature, ``source`` = ``model_uri``) and ``metrics`` (its scores) logged to
    the run and linked to the model, so the registry's version shows its source run, schema and
    scores. The weights stay where the pipeline sealed them; the logged model points at them.
    """
    import tempfile

    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
    from mlflow.models import Model

    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        tags={"diffucoder.model_uri": model_uri},
        model_type=MODEL_TYPE,
    )
    with tempfile.TemporaryDirectory() as tmp:
        description = Model(
            run_id=run_id,
            signature=_model_signature(),
            model_id=logged.model_id,
            metadata={"source": model_uri},
        )
        description.save(Path(tmp) / "MLmodel")
        client.log_model_artifacts(logged.model_id, tmp)
    now = int(time.time() * 1000)
    scores = [
        Metric(metric_name(k), float(v), now, 0, model_id=logged.model_id, run_id=run_id)
        for k, v in metrics.items()
    ]
    if scores:
        client.log_batch(run_id, metrics=scores)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return logged.model_id


def register_model(
    model_uri: str,
    name: str,
    alias: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
    cfg: TrackingConfig | None = None,
    metrics: Mapping[str, float] | None = None,
) -> str:
    """Register a model version whose source is ``model_uri`` (our sealed HF dir, local or s3://).

    With ``run_id`` (the pipeline run), the model is first logged to that run with a signature and
    ``metrics`` (:func:`_log_model`), and the version and the logged model are linked. Creates the
    registered model on first use, then points ``alias`` (e.g. ``candidate``) at the new version.
    Aliases replace MLflow's deprecated stages. Returns the version number.
    """
    from mlflow.exceptions import MlflowException

    from diffucoder.config import TrackingConfig

    client = _client(cfg or TrackingConfig())
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    model_id = (
        _log_model(client, model_uri, name=name, run_id=run_id, metrics=metrics or {}) if run_id else None
    )
    try:
        version = client.create_model_version(
            name,
            source=model_uri,
            run_id=run_id,
            tags={k: str(v) for k, v in (tags or {}).items()},
            model_id=model_id,
        )
    except MlflowException as exc:
        if exc.error_code == "INVALID_PARAMETER_VALUE" and "://" not in model_uri.removeprefix("file://"):
            # A tracking server refuses local paths (they would point into the server's own disk).
            raise ValueError(
                f"register_model: the tracking server {client.tracking_uri} does not accept the local "
                f"model path {model_uri!r}; upload it first (storage.put_dir to an s3:// URI) and "
                "register that URI"
            ) from exc
        raise
    if model_id is not None:
        # the logged model's side of the link, as mlflow.register_model writes it (the open-source
        # registry keeps no model id on the version; the version's run lists the model as an output)
        from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

        link = json.dumps([{"name": name, "version": str(version.version)}])
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: link})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


# run tags `runs compare` shows: promotion decisions, skipped runs, data fingerprints
OPERATIONS_TAGS = ("promotion/", "diffucoder.skipped", "diffucoder.data_hash")


@dataclass
class RunComparison:
    """Side-by-side view of runs: params that differ, every metric's latest value and its history."""

    run_ids: list[str]
    run_names: list[str]
    statuses: list[str]
    parents: list[str | None] = field(default_factory=list)  # name of each run's pipeline run
    param_diffs: dict[str, list[str | None]] = field(default_factory=dict)
    same_params: int = 0
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    # metric -> per run, its (step, value) points; empty for a run without the metric
    histories: dict[str, list[list[tuple[int, float]]]] = field(default_factory=dict)
    tags: dict[str, list[str | None]] = field(default_factory=dict)  # operations tags (OPERATIONS_TAGS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_ids": self.run_ids,
            "run_names": self.run_names,
            "statuses": self.statuses,
            "parents": self.parents,
            "param_diffs": self.param_diffs,
            "same_params": self.same_params,
            "tags": self.tags,
            "metrics": {
                k: [None if v is None or math.isnan(v) else v for v in vs] for k, vs in self.metrics.items()
            },
        }


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    points = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))
    return [(step, value) for step, _, value in points]


def compare_runs(run_ids: list[str], cfg: TrackingConfig | None = None) -> RunComparison:
    """Fetch runs: params whose values differ (missing = None), each metric's latest value and its
    history over steps, the operations tags, and the name of each run's pipeline run."""
    from diffucoder.config import TrackingConfig

    if not run_ids:
        raise ValueError("compare_runs: no run ids given")
    client = _client(cfg or TrackingConfig())
    runs = [client.get_run(rid) for rid in run_ids]
    param_keys = sorted({k for r in runs for k in r.data.params})
    diffs, same = {}, 0
    for key in param_keys:
        values = [r.data.params.get(key) for r in runs]
        if len(set(values)) > 1:
            diffs[key] = values
        else:
            same += 1
    metric_keys = sorted({k for r in runs for k in r.data.metrics})
    tag_keys = sorted({k for r in runs for k in r.data.tags if k.startswith(OPERATIONS_TAGS)})
    parent_ids = [r.data.tags.get("mlflow.parentRunId") for r in runs]
    parent_names = {pid: client.get_run(pid).info.run_name for pid in set(parent_ids) if pid}
    return RunComparison(
        run_ids=list(run_ids),
        run_names=[r.info.run_name for r in runs],
        statuses=[r.info.status for r in runs],
        parents=[parent_names.get(pid) if pid else None for pid in parent_ids],
        param_diffs=diffs,
        same_params=same,
        metrics={k: [r.data.metrics.get(k) for r in runs] for k in metric_keys},
        histories={
            k: [_history(client, r.info.run_id, k) if k in r.data.metrics else [] for r in runs]
            for k in metric_keys
        },
        tags={k: [r.data.tags.get(k) for r in runs] for k in tag_keys},
    )


# --------------------------------------------------------------------------------------------
# Finding runs: the newest pipeline runs, and a run from what `runs list` prints
# --------------------------------------------------------------------------------------------


class RunNotFoundError(LookupError):
    """A run reference (id, id prefix, name, PIPELINE/STAGE) matches no run, or several."""


@dataclass(frozen=True)
class RunSummary:
    """What `runs list` shows of a run."""

    run_id: str
    name: str
    status: str
    start_time: int | None
    end_time: int | None
    metrics: dict[str, float]
    tags: dict[str, str]


def _summary(run) -> RunSummary:
    return RunSummary(
        run.info.run_id,
        run.info.run_name or "",
        run.info.status,
        run.info.start_time,
        run.info.end_time,
        dict(run.data.metrics),
        dict(run.data.tags),
    )


def _experiment_ids(client: MlflowClient, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments()]
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise RunNotFoundError(
            f"no MLflow experiment {experiment!r} at {client.tracking_uri} (experiments: {', '.join(names)})"
        )
    return [found.experiment_id]


def _children(client: MlflowClient, parent) -> list:
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=1000,
    )


def recent_pipeline_runs(
    limit: int, *, experiment: str | None = None, cfg: TrackingConfig | None = None
) -> list[tuple[RunSummary, list[RunSummary]]]:
    """The newest ``limit`` pipeline (parent) runs, each with its stage runs in start order."""
    from diffucoder.config import TrackingConfig

    client = _client(cfg or TrackingConfig())
    ids = _experiment_ids(client, experiment)
    if not ids:
        return []
    parents = client.search_runs(
        ids,
        filter_string="tags.`diffucoder.kind` = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    return [(_summary(p), [_summary(c) for c in _children(client, p)]) for p in parents]


# how far back a name or an id prefix is looked up
RESOLVE_WINDOW = 1000


def resolve_run(ref: str, cfg: TrackingConfig | None = None) -> str:
    """The run id ``ref`` names: a run id, the start of one, a run name, or ``PIPELINE/STAGE``.

    Names and prefixes are matched among the newest runs of every experiment; a reference that
    matches several runs is refused with the candidates, so a comparison never picks one silently.

    Raises:
        RunNotFoundError: nothing matches, or several runs do.
    """
    from mlflow.exceptions import MlflowException

    from diffucoder.config import TrackingConfig

    client = _client(cfg or TrackingConfig())
    if re.fullmatch(r"[0-9a-f]{32}", ref):  # a whole run id, however old the run
        try:
            return client.get_run(ref).info.run_id
        except MlflowException:
            pass  # reported below with the other forms a reference can take
    ids = _experiment_ids(client, None)
    recent = (
        client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=RESOLVE_WINDOW)
        if ids
        else []
    )
    pipeline, _, stage = ref.rpartition("/")
    if pipeline:
        parents = [r for r in recent if r.info.run_id.startswith(pipeline) or r.info.run_name == pipeline]
        matches = [
            c
            for p in parents
            for c in _children(client, p)
            if c.info.run_name == stage or c.info.run_id.startswith(stage)
        ]
    else:
        matches = [r for r in recent if r.info.run_id.startswith(ref) or r.info.run_name == ref]
    where = client.tracking_uri
    if not matches:
        raise RunNotFoundError(
            f"no run {ref!r} at {where}; give a run id (or its first characters), a run name or "
            "PIPELINE/STAGE as `diffucoder runs list` prints them"
        )
    if len({m.info.run_id for m in matches}) > 1:
        found = ", ".join(f"{m.info.run_name} {m.info.run_id[:8]}" for m in matches[:6])
        raise RunNotFoundError(f"{ref!r} matches {len(matches)} runs at {where} ({found}); give one id")
    return matches[0].info.run_id


# --------------------------------------------------------------------------------------------
# Registry aliases, run tags and child runs (operations: promotion and cost)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version as the operations code needs it."""

    name: str
    version: str
    source: str
    run_id: str | None
    tags: dict[str, str]
    aliases: list[str]


def _version(v) -> ModelVersion:
    return ModelVersion(v.name, str(v.version), v.source, v.run_id, dict(v.tags or {}), list(v.aliases or []))


def model_version(
    name: str, *, alias: str | None = None, version: str | None = None, cfg=None
) -> ModelVersion | None:
    """The version behind ``alias`` (or number ``version``); None when the alias or model does not exist."""
    from mlflow.exceptions import MlflowException

    from diffucoder.config import TrackingConfig

    client = _client(cfg or TrackingConfig())
    try:
        v = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
    return _version(v)


def set_model_alias(name: str, alias: str, version: str, cfg=None) -> None:
    from diffucoder.config import TrackingConfig

    _client(cfg or TrackingConfig()).set_registered_model_alias(name, alias, version)


def set_model_version_tags(name: str, version: str, tags: Mapping[str, Any], cfg=None) -> None:
    from diffucoder.config import TrackingConfig

    client = _client(cfg or TrackingConfig())
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def registered_model_tags(name: str, cfg=None) -> dict[str, str]:
    from diffucoder.config import TrackingConfig

    return dict(_client(cfg or TrackingConfig()).get_registered_model(name).tags or {})


def set_registered_model_tag(name: str, key: str, value: str, cfg=None) -> None:
    from diffucoder.config import TrackingConfig

    _client(cfg or TrackingConfig()).set_registered_model_tag(name, key, value)


def set_run_tags(run_id: str, tags: Mapping[str, Any], cfg=None) -> None:
    """Tag an existing run (finished or not) by id."""
    from diffucoder.config import TrackingConfig

    Tracker(_client(cfg or TrackingConfig()), run_id).set_tags(tags)


def log_run_metrics(run_id: str, metrics: Mapping[str, float | None], cfg=None) -> None:
    """Log metrics to an existing run (finished or not) by id."""
    from diffucoder.config import TrackingConfig

    Tracker(_client(cfg or TrackingConfig()), run_id).log_metrics(metrics)


def child_runs(parent_id: str, cfg=None) -> list[tuple[str, dict[str, str], dict[str, float]]]:
    """(run id, tags, latest metrics) of every stage run under a pipeline run."""
    from diffucoder.config import TrackingConfig

    client = _client(cfg or TrackingConfig())
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=1000,
    )
    return [(r.info.run_id, dict(r.data.tags), dict(r.data.metrics)) for r in runs]
