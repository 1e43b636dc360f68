"""Set-up byte-compiles what the pipeline's processes import.

Where PYTHONDONTWRITEBYTECODE is set, nothing writes bytecode at import, so a module that `make
setup` left uncompiled is compiled again in every task's process. The Makefile's ``bytecode``
target skips test suites and transformers' per-architecture model folders; this checks, in a fresh
interpreter, that no module a step loads is among the skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# a fresh interpreter: import what the steps preload and the KFP executor, list installed modules
# that have no bytecode file
PROBE = """
import importlib, importlib.util, json, os, sys, sysconfig
from diffucoder.steps import preloads
for name in dir(preloads):
    if name.endswith("_MODULES"):
        for module in getattr(preloads, name):
            importlib.import_module(module)
import kfp.dsl.executor_main
site = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
missing = []
for module in list(sys.modules.values()):
    source = getattr(module, "__file__", None) or ""
    if source.endswith(".py") and any(source.startswith(s) for s in site):
        cached = importlib.util.cache_from_source(source)
        if not os.path.exists(cached):
            missing.append(module.__name__)
print(json.dumps(sorted(missing)))
"""


def test_every_installed_module_a_step_imports_has_its_bytecode() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        # the probe must not write the bytecode it looks for, whatever the environment says
        env=os.environ | {"PYTHONDONTWRITEBYTECODE": "1"},
    )
    missing = json.loads(proc.stdout.splitlines()[-1])
    assert missing == [], (
        f"imported without bytecode (run `make bytecode`, check NO_BYTECODE): {missing[:20]}"
    )
