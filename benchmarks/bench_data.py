"""Data-stage throughput per core: the RefineCode filters and MinHash signatures (issue 4).

Corpus: the interpreter's stdlib *including* site-packages (~160 MB of .py files; ``--max-mb``
takes the first N MB in path order). Everything runs in this one process, so CPU seconds
(``time.process_time``) are seconds of one core; MB/s/core = bytes / CPU seconds.

1. filters: ``CodeFilter`` (general + Python rules) over every document.
2. MinHash, ours: code tokens -> 5-gram shingles -> 250-permutation signature (end to end), and
   the signature step alone on precomputed shingles.
3. MinHash, datasketch (baseline, same run): regex code tokens -> 5-gram shingle bytes ->
   ``MinHash(num_perm=250).update_batch`` with its default hash, end to end and on
   precomputed shingle bytes.

Prints one JSON object; progress goes to stderr.

    .venv/bin/python benchmarks/bench_data.py [--max-mb 40]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from diffucoder.data.config import DataConfig
from diffucoder.data.filters import CodeFilter, FilterStats
from diffucoder.data.minhash import MinHasher
from diffucoder.data.readers import SkipLog, read_source_dir

_TOKEN = re.compile(r"[A-Za-z0-9_]+")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_corpus(max_mb: float | None) -> list[dict]:
    cfg = DataConfig().reader.model_copy(update={"exclude_dirs": ["__pycache__", ".git"]})
    root = sysconfig.get_paths()["stdlib"]
    docs, size = [], 0
    for doc in read_source_dir(root, "bench", None, cfg, SkipLog()):
        docs.append(doc)
        size += len(doc["text"].encode())
        if max_mb is not None and size >= max_mb * 1e6:
            break
    return docs


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def datasketch_shingles(text: str, k: int) -> list[bytes]:
    tokens = _TOKEN.findall(text.lower())
    return list({" ".join(tokens[i : i + k]).encode() for i in range(len(tokens) - k + 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mb", type=float, default=None, help="use the first N MB of the corpus")
    args = parser.parse_args()
    from datasketch import MinHash

    cfg = DataConfig()
    docs = load_corpus(args.max_mb)
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    texts = [d["text"] for d in docs]
    _log(f"corpus: {len(docs)} files, {mb:.1f} MB")
    hasher = MinHasher(cfg.dedup.num_perm, cfg.dedup.shingle_size, cfg.dedup.seed)
    hasher.signature(texts[0])  # warm-up (power tables)

    results = {}
    code_filter = CodeFilter(cfg.general, cfg.python)
    stats = FilterStats()
    results["filters"] = mb / cpu_time(lambda: code_filter.run(docs, stats))
    _log(f"filters: {results['filters']:.2f} MB/s/core, kept {stats.kept}/{stats.total}")

    results["minhash_ours"] = mb / cpu_time(lambda: [hasher.signature(t) for t in texts])
    shingles = [hasher.shingles(t) for t in texts]
    results["minhash_ours_signature_only"] = mb / cpu_time(
        lambda: [hasher.signature_of_shingles(s) for s in shingles]
    )
    _log(f"ours: {results['minhash_ours']:.2f} MB/s/core end to end")

    def datasketch_e2e() -> None:
        for t in texts:
            MinHash(num_perm=cfg.dedup.num_perm).update_batch(datasketch_shingles(t, cfg.dedup.shingle_size))

    results["minhash_datasketch"] = mb / cpu_time(datasketch_e2e)
    byte_shingles = [datasketch_shingles(t, cfg.dedup.shingle_size) for t in texts]
    results["minhash_datasketch_signature_only"] = mb / cpu_time(
        lambda: [MinHash(num_perm=cfg.dedup.num_perm).update_batch(s) for s in byte_shingles]
    )
    _log(f"datasketch: {results['minhash_datasketch']:.2f} MB/s/core end to end")

    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    print(
        json.dumps(
            {
                "name": "bench_data",
                "device": "cpu (1 core of the 2-core machine, process CPU time)",
                "config": {
                    "files": len(docs),
                    "mb": round(mb, 1),
                    "num_perm": cfg.dedup.num_perm,
                    "shingle_size": cfg.dedup.shingle_size,
                },
                "metric": "minhash_speedup_vs_datasketch",
                "value": round(results["minhash_ours"] / results["minhash_datasketch"], 2),
                "unit": "x",
                "mb_per_s_per_core": {k: round(v, 2) for k, v in results.items()},
                "git_sha": sha,
            }
        )
    )


if __name__ == "__main__":
    main()
