"""How a corpus is prepared (``diffucoder data prepare``): per-shard steps with URIs in and out, plus
a local process-pool driver.

    ingest (source dirs -> raw shards)                      one task
    filter_shard  x N: filter + decontaminate + signatures  fan-out (KFP ParallelFor)
    dedup_plan: signature shards + LSH cells per task        one task, lists files
    dedup_band_step x T: confirmed pairs of some LSH cells   fan-out
    dedup_join_step: exact + near-duplicate clusters         one task, ids and pairs only
    finalize_shard x N: drop duplicates, write output       fan-out
    write_report: stats.json + report.md + report.html      one task

Work layout under ``work``: ``raw/``, ``filtered/``, ``signatures/`` (``shard-NNNNN.parquet``
band columns + ``shard-NNNNN.npy`` row-major signatures), ``stats/`` (one file per
shard; a shard's stats file is written last and marks it done, so a rerun skips it),
``dedup/plan.json``, ``dedup/pairs/task-NNNNN.parquet`` (one per LSH task, skipped on rerun) and
``dedup.json``. Output under ``out``: ``shard-NNNNN.parquet`` + ``stats.json`` + reports.
Every decision is per document (filters, decontamination) or keyed on document ids (dedup keeps
the smallest id per cluster), so the kept set is the same for 1 or N workers, any sharding and
any number of LSH tasks.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from diffucoder.data import io
from diffucoder.data.clusters import find_clusters
from diffucoder.data.config import DataConfig, DecontamConfig, DedupConfig
from diffucoder.data.corpus import write_doc_shards
from diffucoder.data.decontam import Decontaminator
from diffucoder.data.dedup import plan, write_signature_shard
from diffucoder.data.filters import CodeFilter, FilterStats
from diffucoder.data.lsh import confirmed_pairs, id_ranks
from diffucoder.data.readers import SkipLog, input_units, read_unit
from diffucoder.data.report import merge_shard_stats, write_report


def shard_files(prefix: str) -> list[str]:
    """`shard-*.parquet` directly under ``prefix`` (not in sub-directories), sorted."""
    base = prefix.rstrip("/") + "/"
    if io.is_s3(prefix):
        names = [u for u in io.list_files(prefix, ".parquet") if "/" not in u[len(base) :]]
    else:
        names = [str(p) for p in Path(prefix).glob("shard-*.parquet")]
    return sorted(u for u in names if u.rsplit("/", 1)[-1].startswith("shard-"))


def ingest(inputs: list[str], work: str, cfg: DataConfig) -> list[str]:
    """Turn every input into shard-sized units: tabular files are used as they are; source dirs
    and HF saved dirs are read once and cut into raw shards of ``shard_docs`` documents."""
    units: list[str] = []
    skips = SkipLog()
    to_cut = []
    for uri in inputs:
        for unit in input_units(uri):
            (units if unit.endswith((".jsonl", ".jsonl.gz", ".parquet")) else to_cut).append(unit)
    if to_cut:
        raw = Path(io.join(work, "raw")) if not io.is_s3(work) else None
        if raw is None:
            raise ValueError(f"ingest: source dirs need a local work dir, got {work}")
        raw.mkdir(parents=True, exist_ok=True)
        docs = (d for unit in to_cut for d in read_unit(unit, cfg.reader, skips))
        units += [str(raw / name) for name in write_doc_shards(raw, docs, cfg.shard_docs)]
        io.write_json(str(raw / "skipped.json"), skips.to_dict())
    return units


@functools.lru_cache(maxsize=2)
def _decontaminator(cfg_json: str) -> Decontaminator:
    """One index per process and config (building it reads and tokenises ~1,500 benchmark items)."""
    return Decontaminator.build(DecontamConfig.model_validate_json(cfg_json))


def decontaminate(docs: Iterable[dict], decon: Decontaminator, stats: FilterStats) -> Iterator[dict]:
    """The documents that share no benchmark n-gram, lazily; a drop moves the document's count in
    ``stats`` from kept to the decontamination reason."""
    for doc in docs:
        reason = decon.reason(doc["text"])
        if reason is None:
            yield doc
        else:
            stats.reclassify(doc, *reason.split(":", 1))


def filter_shard(input_uri: str, shard_id: int, work: str, cfg: DataConfig) -> dict:
    """Per-shard step: read, filter, decontaminate, MinHash; idempotent (skips a finished shard).

    Documents stream from the reader through the filters and decontamination; only the kept ones
    are held, since both the filtered-text shard and the signature table are written from them.
    """
    stats_uri = io.join(work, "stats", f"shard-{shard_id:05d}.json")
    if io.exists(stats_uri):
        return io.read_json(stats_uri)
    skips = SkipLog()
    stats = FilterStats(cfg.examples_per_rule)
    docs = CodeFilter(cfg.general, cfg.python).run(read_unit(input_uri, cfg.reader, skips), stats)
    if cfg.decontam.enabled:
        docs = decontaminate(docs, _decontaminator(cfg.decontam.model_dump_json()), stats)
    kept = list(docs)
    io.write_text_shard(io.join(work, "filtered", io.shard_name(shard_id)), kept)
    write_signature_shard(io.join(work, "signatures", io.shard_name(shard_id)), kept, cfg.dedup)
    result = {"shard": shard_id, "input": input_uri, "filter": stats.to_dict(), "skipped": skips.to_dict()}
    io.write_json(stats_uri, result)  # last: marks the shard done
    return result


def _plan_uri(work: str) -> str:
    return io.join(work, "dedup", "plan.json")


def _ranks_uri(work: str) -> str:
    return io.join(work, "dedup", "ranks.parquet")


def _pairs_uri(work: str, task: int) -> str:
    return io.join(work, "dedup", "pairs", f"task-{task:05d}.parquet")


def dedup_plan(work: str, cfg: DataConfig) -> int:
    """Fix the signature shards and split the LSH cells into tasks -> ``dedup/plan.json``, with
    every document's rank in id order -> ``dedup/ranks.parquet`` (read by every LSH task rather
    than recomputed by each); returns the number of LSH tasks. Deterministic, so a rerun writes
    the same plan."""
    p = plan(shard_files(io.join(work, "signatures")), cfg.dedup)
    io.write_table(_ranks_uri(work), pa.table({"rank": id_ranks(p["shards"])}))
    io.write_json(_plan_uri(work), p)  # last: the ranks exist wherever the plan does
    return len(p["tasks"])


def dedup_band_step(work: str, task: int) -> int:
    """One LSH task of the plan -> ``dedup/pairs/task-NNNNN.parquet`` (its confirmed pairs);
    returns their count.
    Idempotent: a task whose pair file exists is skipped."""
    uri = _pairs_uri(work, task)
    if io.exists(uri):
        return io.read_table(uri).num_rows
    p = io.read_json(_plan_uri(work))
    if not 0 <= task < len(p["tasks"]):
        raise ValueError(
            f"dedup: task {task} is not in the plan ({len(p['tasks'])} tasks in {_plan_uri(work)})"
        )
    if not io.exists(_ranks_uri(work)):
        raise FileNotFoundError(
            f"dedup: {_ranks_uri(work)} is missing: rerun `diffucoder data dedup-plan --work {work}`"
        )
    rank = io.read_table(_ranks_uri(work)).column("rank").to_numpy()
    cfg = DedupConfig.model_validate(p["dedup"])
    pairs = confirmed_pairs(p["shards"], p["tasks"][task], cfg, rank=rank)
    io.write_table(uri, pa.table({"a": pairs[:, 0], "b": pairs[:, 1]}))
    return len(pairs)


def dedup_join_step(work: str) -> dict:
    """Clusters from the ids, sha256s and every LSH task's confirmed pairs -> ``dedup.json``."""
    p = io.read_json(_plan_uri(work))
    blocks = []
    for task in range(len(p["tasks"])):
        uri = _pairs_uri(work, task)
        if not io.exists(uri):
            raise FileNotFoundError(
                f"dedup: {uri} is missing: run LSH task {task} (`diffucoder data dedup-band`)"
            )
        table = io.read_table(uri)
        blocks.append(np.stack([table.column("a").to_numpy(), table.column("b").to_numpy()], axis=1))
    result = find_clusters(p["shards"], blocks, DedupConfig.model_validate(p["dedup"]))
    io.write_json(io.join(work, "dedup.json"), result)
    return result


def dedup_step(work: str, cfg: DataConfig, run_tasks: Callable[[Iterable[int]], None] | None = None) -> dict:
    """The global stage on this machine: plan, every LSH task (through ``run_tasks``, e.g. a
    process pool's map; default: one after the other) and the join."""
    n_tasks = dedup_plan(work, cfg)
    tasks = range(n_tasks)
    if run_tasks is None:
        for task in tasks:
            dedup_band_step(work, task)
    else:
        run_tasks(tasks)
    return dedup_join_step(work)


def finalize_shard(work: str, shard_id: int, out: str, removed: dict[str, dict]) -> tuple[int, int]:
    """Per-shard step: write the shard's documents that survived dedup; returns (docs, bytes)."""
    docs = io.read_text_shard(io.join(work, "filtered", io.shard_name(shard_id)))
    kept = [d for d in docs if d["id"] not in removed]
    io.write_text_shard(io.join(out, io.shard_name(shard_id)), kept)
    return len(kept), sum(len(d["text"].encode("utf-8")) for d in kept)


def _filter_task(args: tuple[str, int, str, str]) -> dict:
    input_uri, shard_id, work, cfg_json = args
    return filter_shard(input_uri, shard_id, work, DataConfig.model_validate_json(cfg_json))


def _check_work_config(work: str, inputs: list[str], cfg: DataConfig) -> None:
    """Finished shards are reused on rerun, which is only sound for the same inputs and config."""
    uri = io.join(work, "run.json")
    run = {"inputs": inputs, "data": cfg.model_dump(mode="json", exclude={"workers"})}
    if io.exists(uri):
        if io.read_json(uri) != json.loads(json.dumps(run, sort_keys=True, default=str)):
            raise ValueError(
                f"work dir {work} holds results of other inputs or another data config; "
                "remove it or pass a fresh --work"
            )
        return
    io.write_json(uri, run)


def prepare(
    inputs: list[str], out: str, cfg: DataConfig, work: str | None = None, workers: int | None = None
) -> dict:
    """The whole local flow with a process pool; returns the merged stats (also in stats.json).

    A rerun with the same work dir skips finished shards. An s3:// ``out`` is staged locally and
    uploaded with its manifest last.
    """
    work = work or f"{out.rstrip('/')}-work"
    workers = workers or cfg.workers
    _check_work_config(work, inputs, cfg)
    units = ingest(inputs, work, cfg)
    tasks = [(unit, i, work, cfg.model_dump_json()) for i, unit in enumerate(units)]
    if workers > 1 and len(tasks) > 1:
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            list(pool.map(_filter_task, tasks))
            band_task = functools.partial(dedup_band_step, work)
            removed = dedup_step(work, cfg, run_tasks=lambda ts: list(pool.map(band_task, ts)))["removed"]
    else:
        for task in tasks:
            _filter_task(task)
        removed = dedup_step(work, cfg)["removed"]
    with io.output_dir(out) as out_dir:
        for stale in Path(out_dir).glob("shard-*.parquet"):
            stale.unlink()
        for i in range(len(units)):
            finalize_shard(work, i, str(out_dir), removed)
        return report_step(work, str(out_dir), cfg, seal=False)


def report_step(work: str, out: str, cfg: DataConfig, seal: bool = True) -> dict:
    """Final step: merge every shard's stats with the dedup result and the output sizes into
    stats.json + report.md + report.html under ``out``; ``seal`` marks a local ``out`` complete."""
    shard_stats = [io.read_json(u) for u in sorted(io.list_files(io.join(work, "stats"), ".json"))]
    dedup = io.read_json(io.join(work, "dedup.json"))
    final = []
    for uri in shard_files(out):
        texts = io.read_table(uri, columns=["text"]).column("text").to_pylist()
        final.append((len(texts), sum(len(t.encode("utf-8")) for t in texts)))
    raw_skips = io.join(work, "raw", "skipped.json")
    ingest_skips = io.read_json(raw_skips) if io.exists(raw_skips) else None
    stats = merge_shard_stats(shard_stats, dedup, final, ingest_skips, cfg)
    write_report(out, stats)
    if seal and not io.is_s3(out):
        from diffucoder import storage

        storage.seal_dir(out)
    return stats


def load_removed(work: str) -> dict[str, dict]:
    return json.loads(io.read_bytes(io.join(work, "dedup.json")))["removed"]
