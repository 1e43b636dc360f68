"""The data steps (docs/data.md "Scale-out: the per-shard steps"): raw sources -> per-shard filter ->
dedup -> per-shard finalize -> report, then the tiny tasks, the tokenizer, the stage-2 text and
packing. Each follows the run's :class:`~diffucoder.steps.data_plan.DataPlan`.
"""

from __future__ import annotations

from typing import Any

from diffucoder import storage
from diffucoder.config import RunConfig
from diffucoder.preload import preload
from diffucoder.steps.data_plan import DataPlan, read_plan, unused
from diffucoder.steps.preloads import TOKENIZER_MODULES
from diffucoder.steps.run_config import config_from_yaml

INGEST_STARTED = "ingest_started_at"


def raw_sources(cfg: RunConfig, root: str, plan: DataPlan, stdlib_max_files: int) -> list[str]:
    """The raw inputs of the stage-1 corpus: ``data.sources.pretrain`` (generated:tiny = the CPython
    stdlib cut into raw shards), or one empty raw shard when the run builds no corpus."""
    from diffucoder.data.corpus import build_stdlib_corpus, write_doc_shards

    out = storage.join(root, "raw")
    if not plan.corpus:
        from diffucoder.data import io

        with io.output_dir(out) as path:
            write_doc_shards(path, [], cfg.data.shard_docs)  # the fan-outs need one item
        return [out]
    if not cfg.data.sources.generated("pretrain"):
        return list(cfg.data.sources.pretrain)
    build_stdlib_corpus(out, cfg.data, max_files=stdlib_max_files or None)
    return [out]


def ingest_units(cfg: RunConfig, root: str, inputs: list[str], started: float) -> list[dict[str, Any]]:
    """``[{"uri", "shard", "data_root"}]``, one per task of the fan-outs.

    ``started`` (when the ingest task began) is stored for the report step, whose record then times
    the whole corpus build: ingest, filter fan-out, dedup, finalize fan-out and report.

    Each item carries all its task needs, and the config goes to ``<data_root>/config.yaml``:
    kfp.local (2.17.3) hands a ParallelFor body the loop item in place of any other task output,
    so the fan-out tasks take nothing but item fields.
    """
    from diffucoder.data.prepare import ingest

    storage.write_text(storage.join(root, "config.yaml"), cfg.to_yaml())
    units = ingest(inputs, storage.join(root, "work"), cfg.data)
    storage.write_text(storage.join(root, "work", INGEST_STARTED), repr(started))
    if not units:
        raise ValueError(f"no input documents found in {inputs}")
    return [{"uri": u, "shard": i, "data_root": root} for i, u in enumerate(units)]


def ingest_started(root: str) -> float:
    """When the ingest task of this data root began (see :func:`ingest_units`).

    Raises:
        FileNotFoundError: the ingest step has not run on this data root (or ran before it recorded
            its start); rerun the data steps from ingest.
    """
    uri = storage.join(root, "work", INGEST_STARTED)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri} is missing: rerun the data steps from ingest for data root {root}")
    return float(storage.read_text(uri))


def data_config(root: str) -> RunConfig:
    """The config the ingest step stored for the fan-out tasks."""
    return config_from_yaml(storage.read_text(storage.join(root, "config.yaml")))


def filter_unit(root: str, uri: str, shard: int) -> dict[str, Any]:
    from diffucoder.data.prepare import filter_shard

    stats = filter_shard(uri, shard, storage.join(root, "work"), data_config(root).data)
    return {"total": stats["filter"]["total"], "kept": stats["filter"]["kept"]}


def dedup_plan(cfg: RunConfig, root: str) -> list[dict[str, Any]]:
    """``[{"lsh_task", "data_root"}]``, one per LSH task (items of the dedup fan-out, see ingest_units)."""
    from diffucoder.data.prepare import dedup_plan as plan

    return [{"lsh_task": t, "data_root": root} for t in range(plan(storage.join(root, "work"), cfg.data))]


def dedup_band(root: str, task: int) -> int:
    from diffucoder.data.prepare import dedup_band_step

    return dedup_band_step(storage.join(root, "work"), task)


def dedup(root: str) -> dict[str, Any]:
    from diffucoder.data.prepare import dedup_join_step

    result = dedup_join_step(storage.join(root, "work"))
    return {k: v for k, v in result.items() if isinstance(v, int | float)}


def finalize_unit(root: str, shard: int) -> int:
    from diffucoder.data.prepare import finalize_shard, load_removed

    work = storage.join(root, "work")
    docs, _ = finalize_shard(work, shard, corpus_uri(root), load_removed(work))
    return docs


def corpus_uri(root: str) -> str:
    return storage.join(root, "corpus")


def data_report(cfg: RunConfig, root: str) -> dict[str, Any]:
    """stats.json + reports for the corpus, then seal it (the data package seals local dirs; an
    s3:// corpus was written file by file by the fan-out tasks and is sealed here)."""
    from diffucoder.data.prepare import report_step

    out = corpus_uri(root)
    stats = report_step(storage.join(root, "work"), out, cfg.data)
    if storage.is_s3(out):
        storage.seal_dir(out)
    return stats["output"]


def tiny_tasks(cfg: RunConfig, root: str) -> str:
    """The tiny task sets, or an unused marker when no stage or evaluation of the run reads them."""
    from diffucoder.data.formats import write_tiny_task_sets

    if not read_plan(root).tiny_tasks:
        return unused(
            cfg, root, "tiny-tasks", "no stage source is generated:tiny and tiny_heldout is not evaluated"
        )
    out = storage.join(root, "tasks")
    write_tiny_task_sets(out, cfg.data.tiny_tasks)
    return out


def tokenizer(cfg: RunConfig, root: str, corpus: str, vocab_size: int) -> str:
    """The tokenizer packing uses: the plan's model (base or start model), else a BPE trained on the corpus."""
    plan = read_plan(root)
    if not plan.packs:
        return unused(cfg, root, "tokenizer", "no stage of this run reads packed data")
    if plan.tokenizer_from:
        return plan.tokenizer_from
    preload(*TOKENIZER_MODULES)
    from diffucoder.data.prepare import shard_files
    from diffucoder.data.tokenizer import train_tokenizer_from_shards

    out = storage.join(root, "tokenizer")
    train_tokenizer_from_shards(shard_files(corpus), vocab_size, out)
    return out


def midtrain_mix(cfg: RunConfig, root: str, corpus: str, tasks: str) -> str:
    """Stage 2's text: ``data.sources.midtrain`` (sealed filtered shards), or for generated:tiny the
    corpus interleaved with the train tasks as code."""
    if "midtrain" not in read_plan(root).stages:
        return unused(cfg, root, "midtrain-mix", "this run does not train stage 2")
    if not cfg.data.sources.generated("midtrain"):
        return cfg.data.sources.midtrain  # checked sealed when the run opened (check_inputs)
    from diffucoder.data.corpus import build_midtrain_mix
    from diffucoder.data.prepare import shard_files

    out = storage.join(root, "midtrain-mix")
    build_midtrain_mix(shard_files(corpus), storage.join(tasks, "train.jsonl"), out, cfg.data, seed=cfg.seed)
    return out


def pack(cfg: RunConfig, root: str, *, text: str, tokenizer_uri: str, stage: str) -> dict[str, Any]:
    if stage not in read_plan(root).stages:
        return {"uri": unused(cfg, root, f"pack-{stage}", f"this run does not train {stage}")}
    preload(*TOKENIZER_MODULES)
    from diffucoder.data.pack import pack_shards
    from diffucoder.data.prepare import shard_files

    out = storage.join(root, f"{stage}-packed")
    seq_len = getattr(cfg, stage).seq_len
    meta = pack_shards(shard_files(text), tokenizer_uri, seq_len, out, cfg.data.pack.rows_per_shard)
    return {"uri": out, **{k: v for k, v in meta.items() if isinstance(v, int | float)}}
