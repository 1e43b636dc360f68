"""Submit the pipeline to a Kubeflow Pipelines endpoint, and resubmit a past run's exact config."""

import json
import tempfile
from pathlib import Path
from typing import Any

from diffucoder_kfp.compile import compile_pipeline
from diffucoder_kfp.kfp_client import connect, kfp_call

from diffucoder import steps
from diffucoder.cli_errors import UsageError


def run_url(host: str, run_id: str) -> str:
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def submit(
    host: str,
    arguments: dict[str, Any],
    experiment: str | None = None,
    run_name: str | None = None,
    enable_caching: bool | None = None,
    namespace: str | None = None,
    token: str | None = None,
    package: Path | None = None,
) -> str:
    """Create a run from the IR compiled from this checkout (or the compiled ``package``); returns its URL.

    Raises:
        diffucoder_kfp.kfp_client.KfpError: the endpoint does not answer, refuses or fails (names it).
    """
    client = connect(host, namespace=namespace, token=token)
    with tempfile.TemporaryDirectory() as tmp, kfp_call(host, "submit"):
        ir = package or compile_pipeline(Path(tmp) / "diffucoder.yaml")
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
    args = typed_arguments(record["arguments"])
    args.update(
        config_yaml=record["config_yaml"],
        output_root=cfg.output_root,
        tracking_uri=record["tracking_uri"],
        experiment=record["experiment"],
    )
    return args


def typed_arguments(recorded: dict[str, Any]) -> dict[str, Any]:
    """Recorded pipeline arguments with their parameter types back.

    The run records its arguments through a dict input, and KFP renders pipeline parameters inside a
    dict as strings ("40.0", "true", "[]"); resubmitted as they are, an integer parameter gets a
    string and KFP rejects the run. The pipeline's own input spec says what each parameter's type is.
    """
    from diffucoder_kfp.diffucoder import build_pipeline

    types = {name: spec.type for name, spec in build_pipeline().component_spec.inputs.items()}
    unknown = sorted(set(recorded) - set(types))
    if unknown:
        raise UsageError(f"recorded arguments {unknown} are not parameters of this pipeline")
    return {name: _as_type(name, value, types[name]) for name, value in recorded.items()}


def _as_type(name: str, value: Any, kfp_type: str) -> Any:
    if not isinstance(value, str) or kfp_type == "String":
        return value
    try:
        if kfp_type == "Integer":
            number = float(value)  # a struct carries every number as a double: "40.0"
            if not number.is_integer():
                raise UsageError(f"not an integer: {value!r}")
            return int(number)
        if kfp_type == "Float":
            return float(value)
        if kfp_type == "Boolean":
            if value.lower() not in ("true", "false"):
                raise UsageError(f"not a boolean: {value!r}")
            return value.lower() == "true"
        return json.loads(value)  # List / Dict
    except ValueError as exc:
        raise UsageError(f"recorded argument {name}={value!r} is not a valid {kfp_type}: {exc}") from None
