"""The ``diffucoder`` console script: one parser, one subcommand group per package.

Each package exposes ``register(subparsers)`` in its own ``cli.py``; a subcommand sets
``func`` to a callable taking the parsed namespace. Packages are imported lazily so that
``diffucoder sandbox serve`` does not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from diffucoder import cli_errors

# subcommand -> module that registers it
COMMANDS = {
    "data": "diffucoder.data.cli",
    "train": "diffucoder.train.cli",
    "generate": "diffucoder.decoding.cli",
    "sandbox": "diffucoder.sandbox.cli",
    "evaluate": "diffucoder.evaluation.cli",
    "pipeline": "diffucoder_kfp.cli",  # the KFP side, a package of its own (the library never imports it)
    "runs": "diffucoder.runs_cli",
    "config": "diffucoder.config_cli",
    "k8s": "diffucoder.k8s.cli",
    "plan": "diffucoder.ops.plan_cli",
    "model": "diffucoder.model_cli",
}

# subcommands that live in a package of their own, installed with an extra's dependencies
EXTRAS = {"pipeline": "kfp"}


DESCRIPTION = """\
Train and evaluate DiffuCoder-style masked-diffusion code models (arXiv 2506.20639): filter code
data, run the four training stages, score models on HumanEval(+) and MBPP(+), and run the whole
flow as a Kubeflow pipeline, locally or on a cluster."""

EXAMPLES = """\
examples:
  diffucoder pipeline run-local --preset tiny        train and evaluate the tiny model here (minutes)
  diffucoder config show --config tiny grpo.beta=0.02
                                                     print the resolved config with one override
  diffucoder evaluate --model runs/tiny/instruct/final --out runs/tiny/eval-again
                                                     score a saved model
  diffucoder runs list                               recent pipeline runs, their stages and scores
  diffucoder runs compare 3f2a9c1e 9bc1d2e3          compare two runs `runs list` printed

Add --debug anywhere to see the full traceback of an error.
`diffucoder COMMAND --help` describes each command."""


def _version() -> str:
    try:
        return version("diffucoder")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffucoder",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"diffucoder {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            registrar = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if name not in EXTRAS or not module.startswith(f"{exc.name}."):
                raise
            _register_missing(sub, name, module)
            continue
        registrar.register(sub)
    return parser


def _register_missing(sub: argparse._SubParsersAction, name: str, module: str) -> None:
    """A subcommand whose package is not installed: it parses anything and exits naming the extra."""
    hint = f"pip install 'diffucoder[{EXTRAS[name]}]'"
    parser = sub.add_parser(name, help=f"(not installed: {hint})", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def missing(args: argparse.Namespace) -> int:
        raise cli_errors.UsageError(
            f"`diffucoder {name}` needs {module.split('.')[0]}, which is not installed: {hint}"
        )

    parser.set_defaults(func=missing)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, so it can be added to a command that just failed.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    # Import only the module of the requested subcommand (fast start, no torch for the sandbox).
    only = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(only).parse_args(argv)
    try:
        result = args.func(args)
    except Exception as exc:
        status = cli_errors.exit_status(exc)
        if status is None or debug:
            raise
        cli_errors.report(exc)
        return status
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
