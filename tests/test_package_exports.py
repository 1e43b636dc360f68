"""Each package's public surface is listed in its ``__init__``: every listed name resolves, and
importing a package (or the config) loads none of the heavy modules behind those names."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("data", "decoding", "evaluation", "model", "rl", "sandbox", "steps", "train")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_listed_name_resolves(package):
    module = importlib.import_module(f"diffucoder.{package}")
    assert module.__all__, f"diffucoder.{package} lists no public names"
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"diffucoder.{package}.__all__ names what it cannot resolve: {missing}"
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018 - the lookup itself is what is tested


def test_importing_the_packages_loads_no_torch():
    code = (
        "import sys, diffucoder.config\n"
        + "".join(f"import diffucoder.{p}\n" for p in PACKAGES)
        + "print(sorted(m for m in ('torch', 'transformers', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
