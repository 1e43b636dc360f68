"""The global dedup stage fanned out: time and peak memory per task vs fan-out width, on a
generated corpus of small code files with known near-duplicates, and precision/recall against
exact Jaccard on a labelled sample.

1. corpus: ``--files`` documents from ``code_corpus.generate`` (stdlib snippets, 20 % near
   copies, 5 % exact copies), written as signature shards of 2,000 documents (plus the texts,
   for the labelled sample) under a temporary directory that is removed afterwards;
2. for each ``--widths`` entry (``TASKS`` or ``TASKSxRANGES``): the plan's LSH tasks one after
   the other, each in a fresh process (so its peak RSS is its own), then the join; the removed
   sets of all widths must be identical;
3. labelled sample: up to ``--sample`` planted near-copy pairs and as many confirmed pairs and
   removed documents; exact Jaccard of their shingle sets; recall = planted pairs with
   Jaccard >= threshold that ended in one cluster, precision = confirmed pairs (and
   removed/kept pairs) with Jaccard >= threshold.

Peak RSS (VmHWM) includes the interpreter with numpy/pyarrow/rensa loaded (``idle_worker_rss_mb``).
Prints one JSON object; progress goes to stderr.

``--corpus-dir DIR`` keeps the corpus (shards, labels, its statistics) in DIR and reuses it when
DIR already holds one of ``--files`` documents, so a million-file corpus is built once and the
timed sweep runs on its own:

    .venv/bin/python benchmarks/bench_dedup.py --files 1000000 --widths '' --corpus-dir C
    .venv/bin/python benchmarks/bench_dedup.py --files 1000000 --widths 1,25,50x2 --corpus-dir C
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa

from diffucoder.data import io
from diffucoder.data.clusters import find_clusters
from diffucoder.data.config import DedupConfig
from diffucoder.data.dedup import plan, write_signature_shard
from diffucoder.data.lsh import candidate_pairs, confirm, id_ranks
from diffucoder.data.minhash import MinHasher

sys.path.insert(0, str(Path(__file__).parent))
from code_corpus import Labels, generate, stdlib_snippets  # noqa: E402
from machine import cpu_info, git_sha  # noqa: E402

SHARD_DOCS = 2000


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM of its own address space. (``ru_maxrss`` would not do: a
    spawned child keeps the high-water mark of the parent it was forked from before exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measured(fn, *args) -> dict:
    """Run in a fresh worker process: wall and CPU seconds and the process's peak RSS."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
        "out": out,
    }


def _idle() -> None:
    return None


def _plan_task(shards: list[str], out: str) -> int:
    rank = id_ranks(shards)
    np.save(out, rank)
    return len(rank)


def _band_task(shards: list[str], cells: list[list[int]], cfg_json: str, ranks: str, out: str) -> dict:
    """``lsh.confirmed_pairs`` in its two phases: candidates, then their confirmation (timed)."""
    cfg = DedupConfig.model_validate_json(cfg_json)
    candidates = candidate_pairs(shards, cells, cfg, rank=np.load(ranks))
    found = time.process_time()
    pairs = confirm(shards, candidates, cfg)
    np.save(out, pairs)
    return {
        "candidates": len(candidates),
        "confirmed": len(pairs),
        "confirm_cpu_s": time.process_time() - found,
    }


def _join(shards: list[str], pair_files: list[str], cfg_json: str, out: str) -> int:
    blocks = [np.load(f) for f in pair_files]
    result = find_clusters(shards, blocks, DedupConfig.model_validate_json(cfg_json))
    Path(out).write_text(json.dumps(result))
    return len(result["removed"])


def _in_fresh_process(fn, *args) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_measured, fn, *args).result()


def stored_corpus(work: Path, n_files: int) -> tuple[list[str], dict, Labels] | None:
    """A corpus of ``n_files`` documents that ``build_corpus`` wrote to ``work`` earlier, if any."""
    meta = work / "corpus.json"
    if not meta.is_file():
        return None
    stored = json.loads(meta.read_text())
    if stored["stats"]["files"] != n_files:
        raise SystemExit(f"--corpus-dir {work} holds {stored['stats']['files']:,} files, not {n_files:,}")
    labels = Labels(
        near_source={int(k): v for k, v in stored["near_source"].items()},
        exact_source={int(k): v for k, v in stored["exact_source"].items()},
    )
    return stored["shards"], stored["stats"], labels


def build_corpus(work: Path, n_files: int, cfg: DedupConfig, labels: Labels) -> tuple[list[str], dict]:
    """Signature shards (and text shards) of the generated corpus; returns the signature URIs."""
    snippets = stdlib_snippets()
    shards, batch = [], []
    gen_s = sig_cpu = 0.0
    size = 0
    docs = generate(n_files, labels=labels, snippets=snippets)
    while True:
        start = time.perf_counter()
        batch = [d for _, d in zip(range(SHARD_DOCS), docs, strict=False)]
        gen_s += time.perf_counter() - start
        if not batch:
            break
        i = len(shards)
        size += sum(len(d["text"].encode()) for d in batch)
        shards.append(str(work / "signatures" / f"shard-{i:05d}.parquet"))
        start = time.process_time()
        write_signature_shard(shards[-1], batch, cfg)
        sig_cpu += time.process_time() - start
        io.write_table(
            str(work / "text" / f"shard-{i:05d}.parquet"), pa.table({"text": [d["text"] for d in batch]})
        )
        if i % 50 == 0:
            _log(f"corpus: {i * SHARD_DOCS + len(batch):,} files, {size / 1e6:,.0f} MB")
    stats = {
        "files": n_files,
        "mb": round(size / 1e6, 1),
        "near_copies": len(labels.near_source),
        "exact_copies": len(labels.exact_source),
        "generate_s": round(gen_s, 1),
        "signature_cpu_s": round(sig_cpu, 1),
        "signature_mb_per_s_per_core": round(size / 1e6 / sig_cpu, 1),
    }
    stored = {"shards": shards, "stats": stats, **vars(labels)}
    io.write_json(str(work / "corpus.json"), stored)
    return shards, stats


class Texts:
    """Texts by global index, read back from the text shards (a few shards cached)."""

    def __init__(self, work: Path) -> None:
        self.work, self.cache = work, {}

    def __getitem__(self, index: int) -> str:
        shard, row = divmod(index, SHARD_DOCS)
        if shard not in self.cache:
            if len(self.cache) > 64:
                self.cache.clear()
            uri = str(self.work / "text" / f"shard-{shard:05d}.parquet")
            self.cache[shard] = io.read_table(uri).column("text").to_pylist()
        return self.cache[shard][row]


def _share_at_least(jaccards: np.ndarray, limit: float) -> float | None:
    return round(float(np.mean(jaccards >= limit)), 4) if len(jaccards) else None


def labelled_sample(
    result: dict, pairs: np.ndarray, labels: Labels, texts: Texts, cfg: DedupConfig, n: int
) -> dict:
    rng = np.random.default_rng(0)
    hasher = MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed)
    removed = result["removed"]

    def jaccard(a: int, b: int) -> float:
        sa, sb = hasher.shingles(texts[a]), hasher.shingles(texts[b])
        union = len(np.union1d(sa, sb))
        return len(np.intersect1d(sa, sb)) / union if union else 1.0

    def kept(i: int) -> str:
        doc = f"gen:{i:08d}"
        return removed.get(doc, {"kept": doc})["kept"]

    planted = sorted(labels.near_source.items())
    planted = [planted[i] for i in sorted(rng.choice(len(planted), min(n, len(planted)), replace=False))]
    truth = [(jaccard(a, b), kept(a) == kept(b)) for a, b in planted]
    positives = [same for j, same in truth if j >= cfg.threshold]
    found = pairs[sorted(rng.choice(len(pairs), min(n, len(pairs)), replace=False))] if len(pairs) else pairs
    edge_j = np.array([jaccard(int(a), int(b)) for a, b in found])
    dropped = sorted(removed)
    dropped = [dropped[i] for i in sorted(rng.choice(len(dropped), min(n, len(dropped)), replace=False))]
    pair_j = np.array([jaccard(int(d[4:]), int(removed[d]["kept"][4:])) for d in dropped])
    miss = sorted(j for j, same in truth if j >= cfg.threshold and not same)
    return {
        "threshold": round(cfg.threshold, 4),
        "planted_pairs_sampled": len(planted),
        "planted_pairs_at_or_above_threshold": len(positives),
        "recall": round(float(np.mean(positives)), 4) if positives else None,
        "missed_jaccards": [round(j, 3) for j in miss[:20]],
        "false_merges_of_planted_pairs_below_threshold_minus_0.1": sum(
            same for j, same in truth if j < cfg.threshold - 0.1
        ),
        "confirmed_pairs_sampled": len(found),
        "precision_confirmed_pairs": _share_at_least(edge_j, cfg.threshold),
        "precision_confirmed_pairs_within_0.05": _share_at_least(edge_j, cfg.threshold - 0.05),
        "removed_docs_sampled": len(dropped),
        "precision_removed_vs_kept": _share_at_least(pair_j, cfg.threshold),
        "precision_removed_vs_kept_within_0.1": _share_at_least(pair_j, cfg.threshold - 0.1),
    }


def run_width(
    work: Path, shards: list[str], cfg: DedupConfig, idle_mb: float
) -> tuple[dict, dict, np.ndarray]:
    p = plan(shards, cfg)
    out = work / f"w{cfg.lsh_tasks}x{cfg.band_ranges}"
    out.mkdir()
    ranks = str(out / "ranks.npy")
    planned = _in_fresh_process(_plan_task, shards, ranks)
    tasks = []
    for t, cells in enumerate(p["tasks"]):
        m = _in_fresh_process(
            _band_task, shards, cells, cfg.model_dump_json(), ranks, str(out / f"task-{t:05d}.npy")
        )
        tasks.append(m)
        _log(
            f"  task {t}: {len(cells)} cells, {m['wall_s']:.1f} s, {m['peak_rss_mb']:.0f} MB, "
            f"{m['out']['confirmed']:,} of {m['out']['candidates']:,} candidates confirmed"
        )
    files = [str(out / f"task-{t:05d}.npy") for t in range(len(p["tasks"]))]
    join = _in_fresh_process(_join, shards, files, cfg.model_dump_json(), str(out / "result.json"))
    result = json.loads((out / "result.json").read_text())
    pairs = np.unique(np.concatenate([np.load(f) for f in files]), axis=0)  # the join's, for the sample

    def summary(ms: list[dict], key: str) -> dict:
        values = [m[key] for m in ms]
        return {"max": round(max(values), 1), "mean": round(float(np.mean(values)), 1)}

    row = {
        "lsh_tasks": len(p["tasks"]),
        "confirmed_pairs": len(pairs),
        "task_candidates_total": sum(m["out"]["candidates"] for m in tasks),
        "task_confirmed_total": sum(m["out"]["confirmed"] for m in tasks),
        "task_confirm_cpu_s": {
            "max": round(max(m["out"]["confirm_cpu_s"] for m in tasks), 2),
            "total": round(sum(m["out"]["confirm_cpu_s"] for m in tasks), 1),
        },
        "band_ranges": cfg.band_ranges,
        "task_wall_s": summary(tasks, "wall_s"),
        "task_cpu_s": summary(tasks, "cpu_s"),
        "task_peak_rss_mb": summary(tasks, "peak_rss_mb"),
        "task_peak_rss_above_idle_mb": {
            k: round(v - idle_mb, 1) for k, v in summary(tasks, "peak_rss_mb").items()
        },
        "tasks_cpu_s_total": round(sum(m["cpu_s"] for m in tasks), 1),
        "join_wall_s": round(join["wall_s"], 1),
        "join_cpu_s": round(join["cpu_s"], 1),
        "plan_cpu_s": round(planned["cpu_s"], 1),
        "stage_cpu_s": round(planned["cpu_s"] + sum(m["cpu_s"] for m in tasks) + join["cpu_s"], 1),
        "join_peak_rss_mb": round(join["peak_rss_mb"]),
        "join_peak_rss_above_idle_mb": round(join["peak_rss_mb"] - idle_mb),
        "critical_path_s": round(planned["wall_s"] + max(m["wall_s"] for m in tasks) + join["wall_s"], 1),
    }
    return row, result, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--widths", default="1,4,16", help="comma list of TASKS or TASKSxRANGES")
    parser.add_argument("--sample", type=int, default=2000, help="pairs per labelled sample")
    parser.add_argument("--corpus-dir", type=Path, help="keep the corpus here and reuse it (see above)")
    args = parser.parse_args()
    started = time.perf_counter()
    cfg = DedupConfig()
    with contextlib.ExitStack() as stack:
        if args.corpus_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dedup-")))
        else:
            work = args.corpus_dir
            work.mkdir(parents=True, exist_ok=True)
        stored = stored_corpus(work, args.files)
        if stored is None:
            labels = Labels()
            shards, corpus = build_corpus(work, args.files, cfg, labels)
        else:
            shards, corpus, labels = stored
            corpus = {**corpus, "reused": True}
        _log(f"corpus: {corpus}")
        for old_run in work.glob("w*x*"):
            shutil.rmtree(old_run)
        idle = _in_fresh_process(_idle)["peak_rss_mb"]
        rows, reference, ref_pairs = [], None, None
        for spec in filter(None, args.widths.split(",")):
            tasks, _, ranges = spec.partition("x")
            wcfg = cfg.model_copy(update={"lsh_tasks": int(tasks), "band_ranges": int(ranges or 1)})
            _log(f"width {spec}:")
            row, result, pairs = run_width(work, shards, wcfg, idle)
            rows.append(row)
            if reference is None:
                reference, ref_pairs = result, pairs
            row["same_result_as_first"] = result == reference and np.array_equal(pairs, ref_pairs)
            _log(f"  {row}")
        quality = (
            labelled_sample(reference, ref_pairs, labels, Texts(work), cfg, args.sample) if rows else None
        )
    print(
        json.dumps(
            {
                "name": "bench_dedup",
                "machine": cpu_info(),
                "corpus": corpus,
                "dedup": {k: v for k, v in (reference or {}).items() if k != "removed"},
                "idle_worker_rss_mb": round(idle),
                "widths": rows,
                "quality": quality,
                "total_wall_s": round(time.perf_counter() - started, 1),
                "date": time.strftime("%Y-%m-%d"),
                "git_sha": git_sha(),
            }
        )
    )


if __name__ == "__main__":
    main()
