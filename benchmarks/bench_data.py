"""Data-stage throughput per core against libraries, same corpus, same run: the RefineCode
filters, and MinHash (ours, rensa, datatrove, datasketch) with duplicate recall.

Two corpora:

- real files: the interpreter's stdlib *including* site-packages (``--max-mb`` takes the first
  N MB in path order) for the filters, whose rules (syntax, comments, structure) need real
  modules; the same-run baseline is ``compile()`` alone, the cost of the syntax rule;
- generated small files (``code_corpus``: stdlib snippets, planted near copies) for MinHash, so
  that recall can be measured: ``--files`` documents.

MinHash, all with 5-gram shingles over the same code tokens, 25 bands x 10 rows (threshold 0.725):

1. ours: numpy shingling (``shingle_hashes``) + rensa's signature kernel, then our LSH tasks and
   join (``find_duplicates``);
2. rensa alone, as a user writes it: regex tokens and 5-gram strings in Python,
   ``RMinHash.digest_matrix_from_token_sets``, clustered by our LSH and join;
3. datatrove 0.10.1's three stages (signatures, buckets, clustering) with the same tokens and its
   prose normalisation off, run by ``datatrove_minhash.py`` under ``--datatrove-python`` (a
   separate venv; skipped without it);
4. datasketch ``MinHash.update_batch`` (speed only, as a reference).

Everything runs in one process per library, so CPU seconds (``time.process_time``) are
seconds of one core; MB/s/core = bytes / CPU seconds (``signatures_mb_per_s``: text to
signatures; ``whole_stage_mb_per_s``: text to clusters, LSH and join included). Recall: planted near-copy pairs whose
exact Jaccard is >= the threshold that end in one cluster; precision: removed documents whose
Jaccard with their cluster's smallest member is >= the threshold.

    .venv/bin/python benchmarks/bench_data.py --max-mb 40 --files 50000 --datatrove-python DT/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

from diffucoder.data import io
from diffucoder.data.config import DataConfig, DedupConfig
from diffucoder.data.dedup import find_duplicates, signature_table, write_signature_shard
from diffucoder.data.filters import CodeFilter, FilterStats
from diffucoder.data.minhash import MinHasher
from diffucoder.data.readers import SkipLog, read_source_dir

sys.path.insert(0, str(Path(__file__).parent))
from code_corpus import Labels, generate  # noqa: E402
from machine import cpu_info, git_sha  # noqa: E402

_TOKEN = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff]+")
SHARD_DOCS = 2000


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def real_files(max_mb: float | None) -> list[dict]:
    cfg = DataConfig().reader.model_copy(update={"exclude_dirs": ["__pycache__", ".git"]})
    docs, size = [], 0
    for doc in read_source_dir(sysconfig.get_paths()["stdlib"], "bench", None, cfg, SkipLog()):
        docs.append(doc)
        size += len(doc["text"].encode())
        if max_mb is not None and size >= max_mb * 1e6:
            break
    return docs


def _compile_all(texts: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in texts:
            with contextlib.suppress(SyntaxError, ValueError, RecursionError):
                compile(t, "<doc>", "exec", dont_inherit=True)


def bench_filters(max_mb: float | None) -> dict:
    docs = real_files(max_mb)
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    cfg = DataConfig()
    code_filter, stats = CodeFilter(cfg.general, cfg.python), FilterStats()
    filters = mb / cpu_time(lambda: list(code_filter.run(docs, stats)))
    baseline = mb / cpu_time(lambda: _compile_all([d["text"] for d in docs]))
    _log(
        f"filters: {filters:.2f} MB/s/core (compile() alone {baseline:.2f}), kept {stats.kept}/{stats.total}"
    )
    return {
        "files": len(docs),
        "mb": round(mb, 1),
        "filters": filters,
        "compile_only": baseline,
        "kept": stats.kept,
    }


def python_shingles(text: str, k: int) -> list[str]:
    tokens = _TOKEN.findall(text.lower())
    return [" ".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)]


def _signature_shards(docs: list[dict], sigs: np.ndarray, cfg: DedupConfig, out: Path) -> list[str]:
    """Signature shards as the filter step writes them, from the given signatures."""
    uris = []
    for s in range(0, len(docs), SHARD_DOCS):
        uris.append(str(out / f"shard-{s // SHARD_DOCS:05d}.parquet"))
        write_signature_shard(uris[-1], docs[s : s + SHARD_DOCS], cfg, sigs=sigs[s : s + SHARD_DOCS])
    return uris


def _labels_from_removed(removed: dict, n: int) -> np.ndarray:
    label = np.arange(n)
    for doc, info in removed.items():
        label[int(doc[4:])] = int(info["kept"][4:])
    return label


def quality(label: np.ndarray, docs: list[dict], labels: Labels, cfg: DedupConfig, sample: int) -> dict:
    """Recall on planted near copies at/above the threshold, precision on removed documents."""
    hasher = MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed)
    rng = np.random.default_rng(0)
    shingles: dict[int, np.ndarray] = {}

    def jaccard(a: int, b: int) -> float:
        sa = shingles.setdefault(a, hasher.shingles(docs[a]["text"]))
        sb = shingles.setdefault(b, hasher.shingles(docs[b]["text"]))
        union = len(np.union1d(sa, sb))
        return len(np.intersect1d(sa, sb)) / union if union else 1.0

    planted = sorted(labels.near_source.items())
    picked = [planted[i] for i in rng.choice(len(planted), min(sample, len(planted)), replace=False)]
    hits = [label[a] == label[b] for a, b in picked if jaccard(a, b) >= cfg.threshold]
    rep = {}
    for i, lab in enumerate(label):  # each cluster's smallest member
        rep.setdefault(int(lab), i)
    members = [i for i, lab in enumerate(label) if rep[int(lab)] != i]
    chosen = [members[i] for i in rng.choice(len(members), min(sample, len(members)), replace=False)]
    ok = [jaccard(m, rep[int(label[m])]) >= cfg.threshold for m in chosen]
    return {
        "recall": round(float(np.mean(hits)), 4),
        "planted_pairs_at_or_above_threshold": len(hits),
        "precision": round(float(np.mean(ok)), 4) if ok else None,
        "removed": len(members),
    }


def bench_minhash(n_files: int, sample: int, datatrove_python: str | None) -> dict:
    labels = Labels()
    docs = list(generate(n_files, labels=labels))
    texts = [d["text"] for d in docs]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    _log(f"generated corpus: {len(docs)} files, {mb:.1f} MB")
    cfg = DedupConfig(lsh_tasks=1)
    k, out = cfg.shingle_size, {"files": len(docs), "mb": round(mb, 1)}
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        work = Path(tmp)
        # 1. ours: signature shards as the filter step writes them, then LSH + join
        ours = MinHasher(cfg.num_perm, k, cfg.seed)
        blocks = []

        def signatures() -> None:
            for s in range(0, len(docs), SHARD_DOCS):
                part = docs[s : s + SHARD_DOCS]
                blocks.append(ours.signatures([d["text"] for d in part]))
                signature_table(part, blocks[-1], cfg)

        sig_s = cpu_time(signatures)
        uris = _signature_shards(docs, np.concatenate(blocks), cfg, work / "ours")
        result: dict = {}
        dedup_s = cpu_time(lambda: result.update(find_duplicates(uris, cfg)))
        out["ours"] = {
            "signatures_mb_per_s": mb / sig_s,
            "lsh_and_join_cpu_s": dedup_s,
            "whole_stage_mb_per_s": mb / (sig_s + dedup_s),
            **quality(_labels_from_removed(result["removed"], len(docs)), docs, labels, cfg, sample),
        }
        hasher = MinHasher(cfg.num_perm, k, cfg.seed)
        out["ours"]["signature_kernel_only_mb_per_s"] = _kernel_only(hasher, texts, mb)
        _log(f"ours: {out['ours']}")
        # 2. rensa alone: Python-side shingles
        from rensa import RMinHash

        rows: list = []

        def rensa_e2e() -> None:
            for s in range(0, len(texts), SHARD_DOCS):
                sets = [python_shingles(t, k) for t in texts[s : s + SHARD_DOCS]]
                rows.extend(RMinHash.digest_matrix_from_token_sets(sets, cfg.num_perm, cfg.seed).to_rows())

        rensa_s = cpu_time(rensa_e2e)
        sigs = np.array(rows, dtype=np.uint32)
        rensa_result = find_duplicates(_signature_shards(docs, sigs, cfg, work / "rensa"), cfg)
        out["rensa"] = {
            "signatures_mb_per_s": mb / rensa_s,
            **quality(_labels_from_removed(rensa_result["removed"], len(docs)), docs, labels, cfg, sample),
        }
        _log(f"rensa: {out['rensa']}")
        # 3. datatrove, in its own venv
        if datatrove_python:
            out["datatrove"] = _datatrove(datatrove_python, texts, mb, cfg, work, docs, labels, sample)
            _log(f"datatrove: {out['datatrove']}")
        # 4. datasketch, speed only
        from datasketch import MinHash

        def datasketch_e2e() -> None:
            for t in texts:
                MinHash(num_perm=cfg.num_perm).update_batch([s.encode() for s in set(python_shingles(t, k))])

        out["datasketch"] = {"signatures_mb_per_s": mb / cpu_time(datasketch_e2e)}
        _log(f"datasketch: {out['datasketch']}")
    return out


def _kernel_only(hasher: MinHasher, texts: list[str], mb: float) -> float:
    """Our signature step alone (rensa's kernel on precomputed shingle hashes), MB/s/core."""
    from rensa import RMinHash

    from diffucoder.data.minhash import shingle_hashes

    batches = [
        shingle_hashes(texts[s : s + SHARD_DOCS], hasher.shingle_size)
        for s in range(0, len(texts), SHARD_DOCS)
    ]

    def run() -> None:
        for hashes, offsets in batches:
            matrix = RMinHash.digest_matrix_from_flat_token_hashes(
                hashes, offsets.astype(np.uint64), hasher.num_perm, hasher.seed
            )
            np.fromiter(itertools.chain.from_iterable(matrix.to_rows()), dtype=np.uint32)

    return mb / cpu_time(run)


def _datatrove(python: str, texts, mb, cfg, work: Path, docs, labels, sample) -> dict:
    docs_uri, result_uri = work / "datatrove-docs.parquet", work / "datatrove.json"
    io.write_table(str(docs_uri), pa.table({"text": texts}))
    script = Path(__file__).with_name("datatrove_minhash.py")
    cmd = [python, str(script), "--docs", str(docs_uri), "--out", str(result_uri)]
    cmd += ["--bands", str(cfg.bands), "--rows", str(cfg.rows), "--ngram", str(cfg.shingle_size)]
    subprocess.run(cmd, check=True, capture_output=True)
    result = json.loads(result_uri.read_text())
    label = np.arange(len(texts))
    clusters: dict[int, int] = {}
    for doc, cluster in sorted(result["cluster_of"]):
        label[doc] = clusters.setdefault(cluster, doc)  # the cluster's smallest member
    cpu = result["cpu_s"]
    return {
        "signatures_mb_per_s": mb / cpu["signatures"],
        "buckets_and_cluster_cpu_s": cpu["buckets"] + cpu["cluster"],
        "whole_stage_mb_per_s": mb / sum(cpu.values()),
        **quality(label, docs, labels, cfg, sample),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mb", type=float, default=40, help="real-file corpus for the filters (MB)")
    parser.add_argument("--files", type=int, default=50_000, help="generated files for MinHash")
    parser.add_argument("--sample", type=int, default=2000, help="labelled pairs / documents")
    parser.add_argument("--datatrove-python", default=None, help="python of a venv with datatrove 0.10.1")
    args = parser.parse_args()
    started = time.perf_counter()
    filters = bench_filters(args.max_mb)
    minhash = bench_minhash(args.files, args.sample, args.datatrove_python)

    def rounded(obj):
        if isinstance(obj, dict):
            return {k: rounded(v) for k, v in obj.items()}
        return round(obj, 2) if isinstance(obj, float) else obj

    print(
        json.dumps(
            {
                "name": "bench_data",
                "machine": cpu_info(),
                "filters": rounded(filters),
                "minhash": rounded(minhash),
                "total_wall_s": round(time.perf_counter() - started, 1),
                "date": time.strftime("%Y-%m-%d"),
                "git_sha": git_sha(),
            }
        )
    )


if __name__ == "__main__":
    main()
