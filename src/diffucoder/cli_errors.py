"""How the ``diffucoder`` command reports a failure: one line for the project's own errors.

A wrong config key, a missing model or an unreachable endpoint is the user's to fix, so the CLI
prints the error's message (which names what is wrong and what to do) and exits non-zero; a
traceback would only bury that line. Anything else is a bug and keeps its traceback. ``--debug``
shows the traceback for every error.

The error classes are looked up among the modules already imported: an exception can only be an
instance of a class whose module has been loaded, and importing them all here would pull torch and
boto3 into ``diffucoder sandbox serve``.
"""

from __future__ import annotations

import sys

# exit status for bad input that the user fixes on the command line or in the config (argparse's too)
EXIT_USAGE = 2
# exit status for a failure of the environment: a missing artifact, an unreachable service
EXIT_FAILURE = 1


class UsageError(ValueError):
    """A command-line argument (or an argument recorded by an earlier run) that the user must fix."""


# module -> (class name, exit status) of the errors the CLI reports as one line
USER_ERRORS: dict[str, tuple[tuple[str, int], ...]] = {
    "diffucoder.cli_errors": (("UsageError", EXIT_USAGE),),
    "diffucoder.config": (("ConfigError", EXIT_USAGE),),
    "diffucoder.inputs": (("MissingInputError", EXIT_USAGE),),
    "diffucoder.storage": (("StorageError", EXIT_FAILURE),),
    "diffucoder.tracking": (("RunNotFoundError", EXIT_USAGE),),
    "diffucoder.evaluation.benchmarks": (("BenchmarkFormatError", EXIT_FAILURE),),
    "diffucoder.evaluation.execution": (("ReferenceFailure", EXIT_FAILURE),),
    "diffucoder.evaluation.samples": (("SamplesError", EXIT_USAGE),),
    "diffucoder.model.checkpoint": (("CheckpointError", EXIT_USAGE),),
    "diffucoder.model.importer": (("CheckpointSourceError", EXIT_FAILURE),),
    "diffucoder.sandbox.client": (("SandboxUnavailable", EXIT_FAILURE),),
    "diffucoder.sandbox.server": (("InsecureHostError", EXIT_USAGE),),
    "diffucoder.sandbox.layout": (("SandboxLayoutError", EXIT_FAILURE),),
    "diffucoder.sandbox.isolation": (("IsolationError", EXIT_FAILURE),),
    "diffucoder.k8s.launcher": (("TrainJobFailed", EXIT_FAILURE), ("TrainJobTimeout", EXIT_FAILURE)),
    "diffucoder.ops.planner": (("PlanError", EXIT_USAGE),),
    "diffucoder.ops.cron": (("CronError", EXIT_USAGE),),
    "diffucoder.ops.promotion": (("PromotionError", EXIT_USAGE),),
    "diffucoder_kfp.kfp_client": (("KfpError", EXIT_FAILURE),),
    # a tracking server that refuses or does not answer (MLflow's own error, whatever the command)
    "mlflow.exceptions": (("MlflowException", EXIT_FAILURE),),
}


def exit_status(exc: BaseException) -> int | None:
    """The exit status for one of the project's user-facing errors, None for anything else."""
    for module_name, classes in USER_ERRORS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for class_name, status in classes:
            if isinstance(exc, getattr(module, class_name)):
                return status
    return None


def report(exc: BaseException, *, prog: str = "diffucoder") -> None:
    """Print ``prog: error: message`` to stderr (a config error lists each bad key on its own line)."""
    message = str(exc).strip() or type(exc).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
