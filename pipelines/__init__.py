"""The Kubeflow Pipelines side of diffucoder, installed as ``diffucoder_kfp`` (this folder, with
``components/`` as ``diffucoder_kfp.components``; setup.py maps them): the DAG and its build config,
compile, local runs through ``kfp.local``, submission, schedules and the ``diffucoder pipeline``
command. It needs the ``kfp`` extra (``pip install 'diffucoder[kfp]'``); the library
(``diffucoder``) never imports it.

    diffucoder DAG         diffucoder.py (build_pipeline, the pipeline function), build_config.py
    compile                compile.py (make compile)
    run on this machine    local.py (run_local, summary), containers.py (the docker runner)
    run on a cluster       remote.py (submit, rerun), schedules.py (recurring runs), kfp_client.py
    the CLI                cli.py, schedule_cli.py
    the components         components/ (one thin wrapper per step around diffucoder.steps)

Its public names, listed here, resolve on first use (``diffucoder.lazy``).
"""

from diffucoder.lazy import by_module, lazy_exports

_EXPORTS = by_module(
    __name__,
    {
        "build_config": ("PipelineBuildConfig",),
        "diffucoder": ("PIPELINE_NAME", "build_pipeline"),
        "compile": ("IR_PATH", "compile_pipeline"),
        "local": ("local_arguments", "run_local", "summary"),
        "remote": ("rerun_arguments", "submit"),
        "schedules": ("Schedule", "Trigger"),
        "kfp_client": ("KfpError", "KfpNotFound", "connect"),
    },
)
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
