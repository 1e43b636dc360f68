"""Packing for stages 1-2 (``diffucoder.data.pack``) on a run's own data: wall time per stage, and
its tokenisation against the transformers call it replaced (same texts, same run).

    python benchmarks/bench_pack.py --data-root runs/tiny/data/<fingerprint>

The data root is what a pipeline run left under ``<output_root>/data/``: its filtered ``corpus``,
``midtrain-mix`` and ``tokenizer``. Each stage is packed into a temporary folder, and where the run
packed it too, the shards are compared byte for byte with the run's. Tokenisation: every text of
the stage through ``tokenizer(texts, add_special_tokens=False)`` (the baseline) and through
``pack._encode``, in batches as packing reads them, with the ids checked equal. Prints one JSON
object to stdout.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import tempfile
import time
from pathlib import Path

from machine import cpu_info, git_sha

from diffucoder.data import pack
from diffucoder.data.tokenizer import load_tokenizer

STAGES = {"pretrain": "corpus", "midtrain": "midtrain-mix"}


def tokenisation(tok, shards: list[str]) -> dict[str, float]:
    seconds = {"transformers_call_s": 0.0, "encode_s": 0.0}
    for texts in pack._texts(shards):
        started = time.perf_counter()
        baseline = tok(texts, add_special_tokens=False)["input_ids"]
        seconds["transformers_call_s"] += time.perf_counter() - started
        started = time.perf_counter()
        ours = pack._encode(tok, texts)
        seconds["encode_s"] += time.perf_counter() - started
        if ours != baseline:
            raise AssertionError("pack._encode differs from the transformers call")
    return {k: round(v, 2) for k, v in seconds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rows-per-shard", type=int, default=2048)
    args = parser.parse_args()
    tokenizer = str(args.data_root / "tokenizer")
    tok = load_tokenizer(tokenizer)
    result = {"machine": cpu_info(), "commit": git_sha(), "stages": {}}
    for stage, text in STAGES.items():
        shards = sorted(str(p) for p in (args.data_root / text).glob("shard-*.parquet"))
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            meta = pack.pack_shards(shards, tokenizer, args.seq_len, tmp, args.rows_per_shard)
            row = {"pack_s": round(time.perf_counter() - started, 2), "tokens": meta["tokens"]}
            run_output = args.data_root / f"{stage}-packed"
            if run_output.is_dir():
                row["same_bytes_as_the_run"] = all(
                    filecmp.cmp(Path(tmp) / s, run_output / s, shallow=False) for s in meta["shards"]
                )
        row.update(tokenisation(tok, shards))
        result["stages"][stage] = row
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
