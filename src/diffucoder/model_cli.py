"""``diffucoder model ...``: operations on registered models, one module per family of subcommands.

Each module in :data:`SUBCOMMAND_MODULES` adds its subcommands to the ``model`` group through its
own ``register(subparsers)``, so families (promotion, checkpoint import/export, ...) live apart.
"""

from __future__ import annotations

import argparse
import importlib

SUBCOMMAND_MODULES = ("diffucoder.model.cli", "diffucoder.ops.promotion_cli")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "model",
        help="import/export released checkpoints, add a pad token; promote or roll back registered models",
    )
    inner = parser.add_subparsers(dest="model_command", required=True)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(inner)
