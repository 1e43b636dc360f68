"""Keep freed heap memory in the process between training steps (glibc ``mallopt``).

Why: a CPU step allocates and frees the same few hundred MB of activations and gradients every step.
With glibc's defaults the larger blocks are mmapped and the heap top is trimmed back to the OS, so
every step page-faults its memory in again: on 2 CPU cores the kernel took ~15 % of a tiny-preset
training benchmark's CPU time, and steps were 8-20 % slower than with the settings below
(stage 3: 0.20 s vs 0.18 s; BENCHMARKS.md ``## train``). Raising the mmap threshold to glibc's maximum (32 MiB) and the trim
threshold to 1 GiB keeps that memory mapped; the process's RSS then stays at its peak, which a
training or evaluation process reaches anyway.

Written here rather than taken from a library: jemalloc or tcmalloc would need a system package and
``LD_PRELOAD`` set before the process starts (the KFP components are started by the KFP runtime),
while ``mallopt`` is glibc's own API and can be called at any point. Setting the environment
variables (``MALLOC_TRIM_THRESHOLD_``) without the mmap threshold made it worse: a fixed trim
threshold turns off glibc's adaptive mmap threshold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
_SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 256 << 20))


@functools.cache
def retain_freed_memory() -> bool:
    """Apply the settings once per process; False where the C library has no ``mallopt`` (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in _SETTINGS)
