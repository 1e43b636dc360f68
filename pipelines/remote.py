"""Submit the pipeline to a Kubeflow Pipelines endpoint, and resubmit a past run's exact config."""

import tempfile
from pathlib import Path
from typing import Any

from diffucoder import pipeline_steps as steps
from pipelines.compile import compile_pipeline


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
    """Create a run from the IR compiled from this checkout; returns its URL.

    Raises:
        ConnectionError: the endpoint does not answer (names the URL).
    """
    import kfp
    from urllib3.exceptions import HTTPError

    try:
        client = kfp.Client(host=host, namespace=namespace) if namespace else kfp.Client(host=host)
    except (HTTPError, OSError) as exc:
        raise ConnectionError(f"KFP endpoint {host} does not answer ({type(exc).__name__}: {exc})") from None
    with tempfile.TemporaryDirectory() as tmp:
        ir = compile_pipeline(Path(tmp) / "diffucoder.yaml")
        run = client.create_run_from_pipeline_package(
            str(ir),
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
