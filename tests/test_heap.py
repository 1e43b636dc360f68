"""diffucoder.heap: the glibc allocator settings apply, once, in a fresh process."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is a glibc API")
def test_settings_apply_on_glibc_and_repeat_calls_are_cached():
    code = (
        "from diffucoder.heap import retain_freed_memory as r\n"
        "first = r(); second = r()\n"
        "print(first, second, r.cache_info().hits)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "1"]
