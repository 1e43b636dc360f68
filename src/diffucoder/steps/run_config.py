"""The run's config and identity: the config every step reads, the run's name and root, and the
environment that links a step's MLflow run to the pipeline run.
"""

from __future__ import annotations

import os
import re

import yaml

from diffucoder import storage
from diffucoder.config import RunConfig, load_config, validate_config


def resolve_config(
    preset: str,
    overrides: list[str],
    *,
    config_yaml: str = "",
    output_root: str = "",
    seed: int = -1,
    tracking_uri: str = "",
    experiment: str = "",
    base_model_uri: str = "",
    benchmark_root: str = "",
) -> RunConfig:
    """The run's config: ``config_yaml`` verbatim when given (reruns), else preset + overrides.

    The explicit pipeline parameters (output root, seed, tracking, base model, benchmark data) win
    over both; empty / -1 = keep the config's value.
    """
    cfg = config_from_yaml(config_yaml) if config_yaml.strip() else load_config(preset, list(overrides))
    if output_root:
        cfg.output_root = output_root
    if seed >= 0:
        cfg.seed = seed
    if tracking_uri:
        cfg.tracking.tracking_uri = tracking_uri
    if experiment:
        cfg.tracking.experiment = experiment
    if base_model_uri:
        cfg.model.base_model_uri = base_model_uri
    if benchmark_root:
        cfg.evaluation.data_root = benchmark_root
    return cfg


def config_from_yaml(text: str | dict) -> RunConfig:
    """Rebuild the RunConfig a previous step resolved (validated again, so a bad edit fails here).

    Accepts the mapping too: kfp.local hands a string parameter that passed through a ParallelFor
    to the task already parsed (YAML is a JSON superset to its loader).
    """
    data = yaml.safe_load(text) if isinstance(text, str) else text
    if not isinstance(data, dict):
        raise ValueError(f"config_yaml must be a YAML mapping, got {type(data).__name__}")
    return validate_config(data, source="pipeline config_yaml")


def run_name(job_name: str) -> str:
    """A path-safe name for one pipeline run (KFP job names carry the timestamp locally)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-.")
    if not slug:
        raise ValueError(f"pipeline job name {job_name!r} has no usable characters for a run directory")
    return slug


def run_root(cfg: RunConfig, job_name: str) -> str:
    return storage.join(cfg.output_root, run_name(job_name))


def export_run_env(parent_run_id: str = "", kfp_run_id: str = "", pipeline_name: str = "") -> None:
    """The variables tracking.py reads to link a stage's MLflow run to the pipeline run."""
    from diffucoder import tracking

    for var, value in (
        (tracking.PARENT_ENV, parent_run_id),
        (tracking.KFP_RUN_ID_ENV, kfp_run_id),
        (tracking.KFP_PIPELINE_ENV, pipeline_name),
    ):
        if value:
            os.environ[var] = value
