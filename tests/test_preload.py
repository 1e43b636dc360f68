"""diffucoder.preload: modules load with the collector paused, and end up frozen; run in fresh processes
because the collector's state is global to the process."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> list[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()


def test_imports_with_the_collector_paused_then_freezes_and_restores_it():
    code = (
        "import gc, sys\n"
        "seen = []\n"
        "class Probe:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'fractions': seen.append(gc.isenabled())\n"
        "sys.meta_path.insert(0, Probe())\n"
        "from diffucoder.preload import preload\n"
        "before = gc.get_freeze_count()\n"
        "preload('fractions')\n"
        "print('fractions' in sys.modules, seen, gc.isenabled(), gc.get_freeze_count() > before)\n"
    )
    assert _run(code) == ["True", "[False]", "True", "True"]


def test_a_collector_turned_off_by_the_caller_stays_off():
    code = "import gc\nfrom diffucoder.preload import preload\ngc.disable()\npreload('json')\nprint(gc.isenabled())"
    assert _run(code) == ["False"]


def test_a_failed_import_raises_and_turns_the_collector_back_on():
    code = (
        "import gc\nfrom diffucoder.preload import preload\n"
        "try:\n    preload('no_such_module_anywhere')\n"
        "except ModuleNotFoundError as e:\n    print(e.name, gc.isenabled())\n"
    )
    assert _run(code) == ["no_such_module_anywhere", "True"]
