"""``diffucoder config show``: print a resolved config (preset + overrides) as YAML."""

from __future__ import annotations

import argparse

from diffucoder.config import PRESETS, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The ``--config`` + ``key.sub=value`` arguments every command that reads a RunConfig takes."""
    parser.add_argument(
        "--config", default="tiny", help=f"a preset ({', '.join(PRESETS)}) or a YAML file (default: tiny)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def _show(args: argparse.Namespace) -> int:
    print(load_config(args.config, args.overrides).to_yaml(), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="inspect configs")
    inner = parser.add_subparsers(dest="config_command", required=True)
    show = inner.add_parser("show", help="print the resolved config")
    add_config_args(show)
    show.set_defaults(func=_show)
