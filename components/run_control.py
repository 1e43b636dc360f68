"""Run control: open the MLflow parent run, resolve the sandbox, close and clean up (exit handler)."""

from typing import NamedTuple

from kfp import dsl

from components.images import TOOLS_IMAGE


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
    stdlib_max_files: int,
    vocab_size: int,
) -> NamedTuple("RunInfo", config_yaml=str, run_root=str, data_root=str, parent_run_id=str):
    """Resolve the config once and check the run can go (every stage it trains has a data source, the
    models it starts from are imported); store the data plan; start the MLflow parent run."""
    from diffucoder import pipeline_steps as steps

    cfg = steps.resolve_config(
        preset,
        overrides,
        config_yaml,
        output_root,
        seed,
        tracking_uri,
        experiment,
        base_model_uri,
        benchmark_root,
    )
    plan = steps.plan_run(cfg, arguments)  # raises before anything is written or started
    steps.check_inputs(cfg, arguments, plan)
    root = steps.run_root(cfg, job_name)
    data = steps.data_root(cfg, plan, stdlib_max_files, vocab_size)
    steps.write_plan(data, plan)
    parent = steps.open_pipeline(cfg, root, data, arguments, kfp_run_id, job_name)
    from typing import NamedTuple

    RunInfo = NamedTuple("RunInfo", config_yaml=str, run_root=str, data_root=str, parent_run_id=str)  # noqa: UP014
    return RunInfo(cfg.to_yaml(), root, data, parent or "")


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def sandbox_endpoint(config_yaml: str, sandbox_mode: str, sandbox_url: str, kfp_run_id: str) -> str:
    """shared: the given Service URL; per-run: deploy this run's sandbox; local: "" (stages start one)."""
    from diffucoder import pipeline_steps as steps

    cfg = steps.config_from_yaml(config_yaml)
    return steps.sandbox_endpoint(cfg, sandbox_mode, sandbox_url, kfp_run_id)


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
) -> str:
    """Exit handler: delete launched TrainJobs / the per-run sandbox, close the parent run.

    It may not consume other tasks' outputs (KFP rule), so it re-resolves the config from the same
    pipeline arguments and finds the run through ``pipeline.json`` under the run root.
    """
    from diffucoder import pipeline_steps as steps

    cfg = steps.resolve_config(
        preset,
        overrides,
        config_yaml,
        output_root,
        seed,
        tracking_uri,
        experiment,
        base_model_uri,
        benchmark_root,
    )
    root = steps.run_root(cfg, job_name)
    return steps.close_pipeline(cfg, root, status.state, kfp_run_id, sandbox_mode, launcher)
