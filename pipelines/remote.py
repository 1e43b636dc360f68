"""Submit the pipeline to a Kubeflow Pipelines endpoint, and resubmit a past run's exact config."""

from typing import Any

from diffucoder import pipeline_steps as steps
from pipelines.compile import IR_PATH, compile_pipeline


def run_url(host: str, run_id: str) -> str:
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def submit(
    host: str,
    arguments: dict[str, Any],
    experiment: str | None = None,
    run_name: str | None = None,
    enable_caching: bool | None = None,
    namespace: str | None = None,
) -> str:
    """Create a run from the compiled IR (recompiled first so it matches this checkout); returns its URL."""
    import kfp

    compile_pipeline(IR_PATH)
    client = kfp.Client(host=host, namespace=namespace) if namespace else kfp.Client(host=host)
    run = client.create_run_from_pipeline_package(
        str(IR_PATH),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        enable_caching=enable_caching,
    )
    return run_url(host, run.run_id)


def rerun_arguments(run_root: str) -> dict[str, Any]:
    """The pipeline arguments that reproduce a past run: its resolved config verbatim + its parameters.

    The output root and tracking store stay the same, so the new run lands beside the old one and
    the two can be compared with ``diffucoder runs compare``.
    """
    record = steps.read_pipeline_record(run_root)
    cfg = steps.config_from_yaml(record["config_yaml"])
    args = dict(record["arguments"])
    args.update(
        config_yaml=record["config_yaml"],
        output_root=cfg.output_root,
        tracking_uri=record["tracking_uri"],
        experiment=record["experiment"],
    )
    return args
