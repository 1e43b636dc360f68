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


def test_no_library_module_imports_the_kfp_side():
    """The library (every module under ``diffucoder``) runs without kfp: in the images' step bodies,
    the sandbox and the trainers. Only ``diffucoder_kfp`` (pipelines/, components/) imports it."""
    code = (
        "import importlib, pkgutil, sys, diffucoder\n"
        "names = [m.name for m in pkgutil.walk_packages(diffucoder.__path__, 'diffucoder.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "kfp_side = ('kfp', 'kfp_server_api', 'diffucoder_kfp')\n"
        "print(len(names), sorted(m for m in sys.modules if m.split('.')[0] in kfp_side))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    count, loaded = out.split(" ", 1)
    assert int(count) > 100, f"walked only {count} library modules"
    assert loaded.strip() == "[]", f"library modules import the KFP side: {loaded}"


def test_the_kfp_side_lists_its_public_names():
    import diffucoder_kfp

    missing = [name for name in diffucoder_kfp.__all__ if getattr(diffucoder_kfp, name, None) is None]
    assert diffucoder_kfp.__all__ and not missing, missing
