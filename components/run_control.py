"""Run control: open the MLflow parent run, resolve the sandbox, close and clean up (exit handler)."""

from typing import NamedTuple

from diffucoder_kfp.components.images import TOOLS_IMAGE
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def open_run(
    preset: str,
    overrides: list,
    config_yaml: str,
    output_root: str,
    seed: int,
    tracking_uri: str,
    experiment: str,
    base_model_uri: str,
    benchmark_root: str,
    arguments: dict,
    kfp_run_id: str,
    job_name: str,
    run_name: str,
    stdlib_max_files: int,
    vocab_size: int,
) -> NamedTuple("RunInfo", config_yaml=str, run_root=str, data_root=str, parent_run_id=str):
    """Resolve the config once and check the run can go (every stage it trains has a data source, the
    models it starts from are imported); store the data plan; start the MLflow parent run."""
    from diffucoder import steps

    cfg = steps.resolve_config(
        preset,
        overrides,
        config_yaml=config_yaml,
        output_root=output_root,
        seed=seed,
        tracking_uri=tracking_uri,
        experiment=experiment,
        base_model_uri=base_model_uri,
        benchmark_root=benchmark_root,
    )
    plan = steps.plan_run(cfg, arguments=arguments)  # raises before anything is written or started
    steps.check_inputs(cfg, arguments=arguments, plan=plan)
    root = steps.run_root(cfg, job_name=run_name or job_name)
    data = steps.data_root(cfg, plan=plan, stdlib_max_files=stdlib_max_files, vocab_size=vocab_size)
    steps.write_plan(data, plan=plan)
    parent = steps.open_pipeline(
        cfg, root=root, data=data, arguments=arguments, kfp_run_id=kfp_run_id, pipeline_name=job_name
    )
    from typing import NamedTuple

    RunInfo = NamedTuple("RunInfo", config_yaml=str, run_root=str, data_root=str, parent_run_id=str)  # noqa: UP014
    return RunInfo(cfg.to_yaml(), root, data, parent or "")


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def sandbox_endpoint(config_yaml: str, sandbox_mode: str, sandbox_url: str, kfp_run_id: str) -> str:
    """shared: the given Service URL; per-run: deploy this run's sandbox; local: "" (stages start one)."""
    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    return steps.sandbox_endpoint(cfg, mode=sandbox_mode, url=sandbox_url, kfp_run_id=kfp_run_id)


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def close_run(
    status: dsl.PipelineTaskFinalStatus,
    preset: str,
    overrides: list,
    config_yaml: str,
    output_root: str,
    seed: int,
    tracking_uri: str,
    experiment: str,
    base_model_uri: str,
    benchmark_root: str,
    sandbox_mode: str,
    launcher: str,
    kfp_run_id: str,
    job_name: str,
    run_name: str,
) -> str:
    """Exit handler: delete launched TrainJobs / the per-run sandbox, close the parent run.

    It may not consume other tasks' outputs (KFP rule), so it re-resolves the config from the same
    pipeline arguments and finds the run through ``pipeline.json`` under the run root.
    """
    from diffucoder import steps

    cfg = steps.resolve_config(
        preset,
        overrides,
        config_yaml=config_yaml,
        output_root=output_root,
        seed=seed,
        tracking_uri=tracking_uri,
        experiment=experiment,
        base_model_uri=base_model_uri,
        benchmark_root=benchmark_root,
    )
    root = steps.run_root(cfg, job_name=run_name or job_name)
    return steps.close_pipeline(
        cfg,
        root=root,
        state=status.state,
        kfp_run_id=kfp_run_id,
        sandbox_mode=sandbox_mode,
        launcher=launcher,
    )


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def check_data(
    config_yaml: str,
    run_root: str,
    parent_run_id: str,
    skip_if_data_unchanged: bool,
    corpus: Input[Dataset],
    tasks: Input[Dataset],
    tokenizer: Input[Artifact],
    midtrain_mix: Input[Dataset],
    pretrain_packed: Input[Dataset],
    midtrain_packed: Input[Dataset],
) -> bool:
    """The data fingerprint of this run; False = the champion was trained on the same data, skip training."""
    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    artifacts = {
        "corpus": corpus,
        "tasks": tasks,
        "tokenizer": tokenizer,
        "midtrain_mix": midtrain_mix,
        "pretrain_packed": pretrain_packed,
        "midtrain_packed": midtrain_packed,
    }
    fingerprint = steps.data_fingerprint(
        {name: a.metadata["content_sha256"] for name, a in artifacts.items()},
        stage_data_uris=steps.stage_source_uris(cfg),
    )
    return steps.check_data(
        cfg,
        root=run_root,
        parent_run_id=parent_run_id,
        fingerprint=fingerprint,
        skip_if_unchanged=bool(skip_if_data_unchanged),
    )
