"""Evaluation and registration of a trained model."""

from diffucoder_kfp.components.images import TOOLS_IMAGE, TRAINER_IMAGE
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def evaluate(
    label: str,
    config_yaml: str,
    run_root: str,
    parent_run_id: str,
    kfp_run_id: str,
    pipeline_name: str,
    benchmarks: str,
    sandbox_url: str,
    model: Input[Model],
    tasks: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    results: Output[dsl.Artifact],
):
    """pass@k (and AR-ness) of ``model`` on ``benchmarks`` ("" = evaluation.benchmarks), sandbox-scored."""
    import json

    from diffucoder import steps, storage

    cfg = steps.config_from_yaml(config_yaml)
    steps.export_run_env(parent_run_id, kfp_run_id=kfp_run_id, pipeline_name=pipeline_name)
    with steps.timed_step(run_root, step=f"eval-{label}") as rec:
        out = steps.evaluate(
            cfg,
            root=run_root,
            label=label,
            model_uri=model.metadata["uri"],
            tasks_uri=tasks.metadata["uri"],
            benchmarks=benchmarks,
            sandbox_url=sandbox_url,
            parent_run_id=parent_run_id,
        )
        for name, value in sorted(out["metrics"].items()):
            metrics.log_metric(name, float(value))
        rec["metrics"], rec["uris"] = out["metrics"], out["files"]
    storage.get_file(out["files"]["report"], report.path)
    results.metadata.update(
        {
            "uri": out["files"]["metrics"],
            "files": out["files"],
            "model": model.metadata["uri"],
            "mlflow_run_id": out["mlflow_run_id"] or "",
            "metrics": out["metrics"],
            "config_fingerprint": cfg.fingerprint(),
        }
    )
    with open(results.path, "w") as f:
        json.dump(results.metadata, f)


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def register_model(
    config_yaml: str,
    run_root: str,
    parent_run_id: str,
    model: Input[Model],
    evaluation: Input[dsl.Artifact],
) -> str:
    """Register the final model in MLflow (tracking.registered_model_name) and move the alias to it."""
    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    with steps.timed_step(run_root, step="register") as rec:
        version = steps.register(
            cfg,
            root=run_root,
            model_uri=model.metadata["uri"],
            metrics=evaluation.metadata["metrics"],
            files=evaluation.metadata["files"],
            parent_run_id=parent_run_id,
        )
        name = cfg.tracking.registered_model_name
        rec["metrics"] = {"version": int(version)}
        rec["uris"] = {"registered": f"models:/{name}@{cfg.tracking.registered_model_alias}"}
    return version


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def promote_model(config_yaml: str, run_root: str, parent_run_id: str, version: str) -> str:
    """Candidate vs champion on the same held-out problems; moves ``champion`` when the candidate wins."""
    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    with steps.timed_step(run_root, step="promote") as rec:
        outcome = steps.promote(cfg, parent_run_id=parent_run_id, version=version)
        rec["metrics"] = {"candidate_version": int(version), "decision": outcome}
    return outcome
