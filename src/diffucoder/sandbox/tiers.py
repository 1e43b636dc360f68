"""Registered io tiers: inputs and expected outputs sent once, referenced by every job that uses them.

An evaluation runs every sample of a problem on the same inputs (pass@k, grid points, EvalPlus sample
files); sent with each job, a HumanEval+ plus tier's 1,000 inputs were encoded, parsed, validated and
decoded again per sample at every layer, and HumanEval/15's 147 MB of expected outputs crossed HTTP
per sample. A client registers a tier once (``POST /v1/tiers``); the server keeps it decoded under
the SHA-256 of its JSON (least recently used first out, bounded by ``tier_cache_mb`` of JSON) and
jobs name it by that ref. Expected outputs stay here, on the trusted side; each slot receives a
tier's inputs once and keeps them for the next jobs (``pool.SlotInputs``). A ref the store no longer
holds is answered 409 with the missing refs, and the client registers them again.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from diffucoder.sandbox.codec import decode
from diffucoder.sandbox.protocol import TierData


@dataclass(frozen=True)
class StoredTier:
    ref: str
    inputs: list[Any]  # decoded: the arguments the oracles see
    expected: list[Any] | None  # decoded; None = the jobs collect outputs
    encoded_inputs: list[Any]  # as the slots receive them
    inputs_bytes: int  # JSON size of the inputs (the slots' cache budget)
    nbytes: int  # JSON size of inputs and expected outputs (this store's budget)

    def __len__(self) -> int:
        return len(self.inputs)


class TierStore:
    """Content-addressed, least-recently-used store of decoded tiers, bounded by their JSON size."""

    def __init__(self, capacity_bytes: int):
        self.capacity = capacity_bytes
        self.tiers: OrderedDict[str, StoredTier] = OrderedDict()
        self.nbytes = 0

    def put(self, data: TierData) -> StoredTier:
        """Store a tier (decoding it: a malformed one raises CodecError); returns it with its ref."""
        inputs_json = json.dumps(data.inputs, separators=(",", ":"))
        expected_json = json.dumps(data.expected, separators=(",", ":"))
        ref = hashlib.sha256(f"{inputs_json}\n{expected_json}".encode()).hexdigest()
        if ref in self.tiers:
            self.tiers.move_to_end(ref)
            return self.tiers[ref]
        tier = StoredTier(
            ref=ref,
            inputs=[decode(x) for x in data.inputs],
            expected=None if data.expected is None else [decode(x) for x in data.expected],
            encoded_inputs=data.inputs,
            inputs_bytes=len(inputs_json),
            nbytes=len(inputs_json) + len(expected_json),
        )
        self.tiers[ref] = tier
        self.nbytes += tier.nbytes
        while self.nbytes > self.capacity and len(self.tiers) > 1:  # the newest always stays
            _, old = self.tiers.popitem(last=False)
            self.nbytes -= old.nbytes
        return tier

    def get(self, ref: str) -> StoredTier | None:
        tier = self.tiers.get(ref)
        if tier is not None:
            self.tiers.move_to_end(ref)
        return tier
