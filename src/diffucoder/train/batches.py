"""Deterministic, resumable, rank-sharded micro-batches over an indexed sample source.

Both data formats (packed token shards, SFT rows) plug in as a :class:`SampleSource`: a length, a
per-epoch sample order derived from the seed, and ``get(index)``. :class:`BatchStream` then walks
that order in global micro-batches of ``micro_batch_size * world_size`` samples; rank ``r`` takes
slice ``[r * M, (r + 1) * M)`` of each. The position is the epoch plus the number of samples of
that epoch consumed, the same on every rank, so a checkpoint stores one small dict and resume
continues with exactly the batch that would have come next. An epoch's tail smaller than one
global micro-batch is skipped (every rank must run the same number of forward passes).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch


class SampleSource(Protocol):
    """What :class:`BatchStream` needs from a data format."""

    def __len__(self) -> int: ...

    def order(self, epoch: int, seed: int) -> np.ndarray:
        """A permutation of ``range(len(self))`` for ``epoch``; a pure function of (epoch, seed)."""
        ...

    def get(self, index: int) -> dict[str, np.ndarray]:
        """One sample: a dict of equal-length 1-D arrays (at least ``input_ids``)."""
        ...


def epoch_rng(seed: int, epoch: int, *salt: int) -> np.random.Generator:
    """A NumPy generator keyed by (seed, epoch, salt...) so orders never depend on global RNG state."""
    return np.random.default_rng([seed, epoch, *salt])


class BatchStream:
    """Endless micro-batches for one rank; ``state_dict`` / ``load_state_dict`` hold the position.

    Args:
        source: the samples.
        micro_batch_size: samples per rank per micro-batch.
        rank, world_size: data-parallel position.
        seed: base seed of the per-epoch orders (same on every rank).
    """

    def __init__(self, source: SampleSource, micro_batch_size: int, rank: int, world_size: int, seed: int):
        self.source = source
        self.micro_batch_size = micro_batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.global_batch = micro_batch_size * world_size
        if len(source) < self.global_batch:
            raise ValueError(
                f"data has {len(source)} samples, fewer than one global micro-batch "
                f"(micro_batch_size {micro_batch_size} x {world_size} ranks = {self.global_batch})"
            )
        self.epoch = 0
        self.consumed = 0
        self._order: np.ndarray | None = None
        self.batch_progress = 0.0

    @property
    def usable_per_epoch(self) -> int:
        """Samples of one epoch that are used (the tail below a global micro-batch is skipped)."""
        return len(self.source) // self.global_batch * self.global_batch

    @property
    def progress(self) -> float:
        """Epochs completed, fractional (0.5 = half-way through the first epoch)."""
        return self.epoch + self.consumed / self.usable_per_epoch

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "consumed": self.consumed,
            "seed": self.seed,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"data position was saved with seed {state['seed']}, this run uses {self.seed}")
        self.epoch = int(state["epoch"])
        self.consumed = int(state["consumed"])
        self._order = None

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            self._order = self.source.order(self.epoch, self.seed)
        return self._order

    def next_batch(self) -> dict[str, torch.Tensor]:
        """This rank's next micro-batch: each field stacked to (M, T)."""
        if self.consumed + self.global_batch > self.usable_per_epoch:
            self.epoch += 1
            self.consumed = 0
            self._order = None
        order = self._epoch_order()
        self.batch_progress = self.progress  # where this batch starts (the progressive SFT mask reads it)
        start = self.consumed + self.rank * self.micro_batch_size
        indices = order[start : start + self.micro_batch_size]
        samples = [self.source.get(int(i)) for i in indices]
        self.consumed += self.global_batch
        return {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}
