"""Import a process's heavy modules up front with the garbage collector paused, then freeze them.

Why: every pipeline task is a fresh process (a KFP pod, or a ``kfp.local`` subprocess) that imports
torch, transformers, DeepSpeed and MLflow, about 500,000 objects the cyclic garbage collector
tracks, and they live until the process exits. Left to itself the collector costs such a process
twice (BENCHMARKS.md ``## pipeline``):

- while the modules import, it runs a full collection each time the tracked heap has grown by a
  quarter, walking everything imported so far again: pausing it cut the imports of a training task
  from ~4.5 s to ~3.4 s;
- at exit the interpreter collects while it tears the modules down: ~1.5 s for those objects.
  ``gc.freeze()`` moves them to the permanent generation, which no later collection walks, during
  the step or at exit (~0.2 s).

Freezing module-level objects frees nothing that would otherwise be freed before exit; only cycles
among them that become garbage later stay allocated. The collector stays on for everything the step
allocates afterwards (batches, rollouts, the model).
"""

from __future__ import annotations

import gc
import importlib


def preload(*modules: str) -> None:
    """Import ``modules`` with the cyclic collector paused, then freeze every object alive so far.

    Call it once at the start of a step, naming what the step will import lazily later (a later
    import of a preloaded module is a dictionary lookup).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
