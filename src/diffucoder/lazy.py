"""Lazy package exports (PEP 562).

Why: ``diffucoder.config`` imports every package's ``config`` module, and the package
``__init__`` runs first. Eager re-exports there would pull torch/transformers into commands that
never touch a model (``diffucoder sandbox serve``, storage tools, KFP launchers) and cost seconds
per process. Packages declare their public names here and resolve them on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that imports ``exports[name]`` on first access."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__


def by_module(package: str, modules: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """``{submodule: names}`` -> ``{name: "package.submodule"}``, the form :func:`lazy_exports` takes."""
    return {name: f"{package}.{module}" for module, names in modules.items() for name in names}
