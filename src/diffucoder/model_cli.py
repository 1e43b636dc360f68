"""``diffucoder model ...``: operations on registered models, one module per family of subcommands.

Each module in :data:`SUBCOMMAND_MODULES` adds its subcommands to the ``model`` group through its
own ``register(subparsers)``, so families (promotion, checkpoint import/export, ...) live apart.
"""

from __future__ import annotations

import argparse
import importlib

SUBCOMMAND_MODULES = ("diffucoder.ops.promotion_cli",)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="registered models: promote, roll back")
    inner = parser.add_subparsers(dest="model_command", required=True)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(inner)
