"""Training stages 1-4: in the task's own pod (single-node GPU stages, local runs) or as a TrainJob.

One component serves the four stages (the stage is a parameter) because they share one library
entry point (diffucoder.train.run); pipelines/diffucoder.py names each task after its stage.
"""

from diffucoder_kfp.components.images import TRAINER_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def train_stage(
    stage: str,
    config_yaml: str,
    run_root: str,
    parent_run_id: str,
    kfp_run_id: str,
    pipeline_name: str,
    launcher: str,
    data: Input[Dataset],
    model: Output[Model],
    init: Input[Model] = None,
    init_uri: str = "",
    sandbox_url: str = "",
):
    """Train ``stage`` from ``init`` (or ``init_uri``, or from scratch) on ``data`` (stages 1-2) or
    ``data.sources.<stage>`` (stages 3-4; generated:tiny = the task set in ``data``).

    ``launcher``: ``in-process`` trains in this pod; ``trainjob`` creates a Kubeflow Trainer TrainJob
    (multi-node stages) and follows it to completion. Output: the sealed ``final/`` model.
    """
    import json

    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    steps.export_run_env(parent_run_id, kfp_run_id=kfp_run_id, pipeline_name=pipeline_name)
    start = init.metadata["uri"] if init is not None else init_uri
    with steps.timed_step(run_root, step=stage) as rec:
        src = steps.stage_data_uri(cfg, stage=stage, artifact_uri=data.metadata["uri"])
        result = steps.train(
            cfg,
            root=run_root,
            stage=stage,
            data_uri=src,
            init_uri=start,
            launcher=launcher,
            kfp_run_id=kfp_run_id,
            parent_run_id=parent_run_id,
            sandbox_url=sandbox_url,
        )
        final = result["final_model_uri"]
        model.metadata.update(
            steps.artifact_metadata(
                final,
                cfg=cfg,
                stage=stage,
                steps=result["steps"],
                tokens=result["tokens"],
                init=start or "",
                data=src,
                mlflow_run_id=result["run_id"] or "",
                checkpoint_uri=result["checkpoint_uri"] or "",
                metrics=result["metrics"],
            )
        )
        rec["metrics"] = {"steps": result["steps"], **result["metrics"]}
        rec["uris"] = {"model": final}
        rec["settings"] = {"precision": result["precision"], "precision_reason": result["precision_reason"]}
    with open(model.path, "w") as f:
        json.dump(model.metadata, f)
