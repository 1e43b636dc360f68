"""A pipeline run's open and close: the MLflow parent run, the sandbox the run uses, and the
cleanup of what it launched on the cluster (the exit handler).
"""

from __future__ import annotations

import json
import time
from typing import Any

from diffucoder import storage
from diffucoder.config import RunConfig
from diffucoder.ops.cost import log_run_totals
from diffucoder.preload import preload
from diffucoder.steps.preloads import TRACKING_MODULES
from diffucoder.steps.records import PIPELINE_RECORD
from diffucoder.steps.run_config import export_run_env
from diffucoder.train.config import STAGES

SANDBOX_MODES = ("local", "shared", "per-run")


def open_pipeline(
    cfg: RunConfig, *, root: str, data: str, arguments: dict[str, Any], kfp_run_id: str, pipeline_name: str
) -> str:
    """Start the MLflow parent run and write ``pipeline.json`` + ``config.yaml`` under the run root.

    ``pipeline.json`` holds everything `diffucoder pipeline rerun` needs: the resolved config and
    the pipeline arguments. Returns the parent run id.
    """
    from diffucoder import tracking

    preload(*TRACKING_MODULES)
    export_run_env(kfp_run_id=kfp_run_id, pipeline_name=pipeline_name)
    uri = tracking.configure(cfg.tracking)
    tags = {"diffucoder.run_root": root, "diffucoder.data_root": data}
    parent = tracking.start_pipeline_run(
        cfg,
        run_name=root.rstrip("/").rsplit("/", 1)[-1],
        tags=tags,
        data_hash=data.rstrip("/").rsplit("/", 1)[-1],
    )
    record = {
        "parent_run_id": parent,
        "tracking_uri": uri,
        "experiment": cfg.tracking.experiment,
        "kfp_run_id": kfp_run_id,
        "pipeline": pipeline_name,
        "run_root": root,
        "data_root": data,
        "arguments": arguments,
        "config_yaml": cfg.to_yaml(),
        "started_at": time.time(),
    }
    storage.write_text(storage.join(root, "config.yaml"), cfg.to_yaml())
    storage.write_text(storage.join(root, PIPELINE_RECORD), json.dumps(record, indent=1))
    return parent


def close_pipeline(
    cfg: RunConfig, *, root: str, state: str, kfp_run_id: str, sandbox_mode: str, launcher: str
) -> str:
    """Exit-handler body: delete what the run launched, then close the parent run FINISHED/FAILED.

    Cleanup comes first and never masks the status: a failed delete is reported after the parent
    run is closed. Returns the MLflow status written (or "" when the run never opened).
    """
    from diffucoder import tracking

    preload(*TRACKING_MODULES)
    errors = []
    if sandbox_mode == "per-run" or launcher == "trainjob":
        try:
            cleanup_cluster(cfg, kfp_run_id, sandbox_mode, launcher)
        except Exception as exc:  # report after closing the run; a leak must not hide the status
            errors.append(f"cleanup of run {kfp_run_id}: {exc}")
    status = "FINISHED" if state.upper() == "SUCCEEDED" else "FAILED"
    record_uri = storage.join(root, PIPELINE_RECORD)
    if not storage.exists(record_uri):
        status = ""  # failed before the parent run existed: nothing to close
    else:
        record = json.loads(storage.read_text(record_uri))
        cfg.tracking.tracking_uri = record["tracking_uri"]
        if record["parent_run_id"]:
            try:  # the cost of what ran, failed runs included; never masks the status
                heldout = f"eval/{cfg.promotion.benchmark}/pass_at_1_{cfg.promotion.speed}"
                log_run_totals(cfg, record["parent_run_id"], heldout)
            except Exception as exc:
                errors.append(f"cost totals of run {record['parent_run_id']}: {exc}")
        tracking.end_pipeline_run(record["parent_run_id"], status=status, cfg=cfg.tracking)
        record.update({"status": status, "kfp_state": state, "finished_at": time.time()})
        storage.write_text(record_uri, json.dumps(record, indent=1))
    if errors:
        raise RuntimeError("; ".join(errors))
    return status


def cleanup_cluster(cfg: RunConfig, kfp_run_id: str, sandbox_mode: str, launcher: str) -> None:
    """Delete this run's per-run sandbox and any TrainJob it launched (names are deterministic)."""
    from diffucoder.k8s.launcher import TrainJobLauncher, load_api_client
    from diffucoder.k8s.sandbox_deploy import SandboxDeployer
    from diffucoder.k8s.trainjob import job_name

    api = load_api_client()
    if sandbox_mode == "per-run":
        SandboxDeployer(api, cfg.k8s).down(kfp_run_id)
    if launcher == "trainjob":
        jobs = TrainJobLauncher(api, cfg.k8s.namespace)
        for stage in STAGES:
            jobs.delete(job_name(kfp_run_id, stage))


def sandbox_endpoint(cfg: RunConfig, mode: str, url: str, kfp_run_id: str) -> str:
    """The sandbox URL the RL and evaluation steps use; "" = each starts a local subprocess server."""
    if mode not in SANDBOX_MODES:
        raise ValueError(f"sandbox_mode {mode!r}: expected one of {', '.join(SANDBOX_MODES)}")
    if mode == "local":
        return ""
    if mode == "shared":
        if not url:
            raise ValueError("sandbox_mode=shared needs sandbox_url (the shared sandbox Service URL)")
        return url
    from diffucoder.k8s.launcher import load_api_client
    from diffucoder.k8s.sandbox_deploy import SandboxDeployer

    return SandboxDeployer(load_api_client(), cfg.k8s).up(kfp_run_id)
