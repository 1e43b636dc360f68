"""Data steps: raw sources -> per-shard filter (ParallelFor) -> dedup plan -> LSH tasks (ParallelFor) ->
dedup join -> per-shard finalize -> report, plus the tiny task sets, the tokenizer, the mid-training text
and packing. Each follows the run's data plan (``diffucoder.steps.read_plan``): what the run does not need
becomes a small "unused" marker."""

from diffucoder_kfp.components.images import TOOLS_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Output


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def ingest(config_yaml: str, data_root: str, stdlib_max_files: int) -> list:
    """The fan-outs' items: ``[{"uri", "shard", "data_root"}]`` from ``data.sources.pretrain``."""
    import time

    from diffucoder import steps

    started = time.time()
    cfg = steps.config_from_yaml(config_yaml)
    inputs = steps.raw_sources(
        cfg, root=data_root, plan=steps.read_plan(data_root), stdlib_max_files=stdlib_max_files
    )
    return steps.ingest_units(cfg, root=data_root, inputs=inputs, started=started)


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def filter_shard(data_root: str, uri: str, shard: int) -> int:
    """One shard: filters + decontamination + MinHash signatures; returns the documents kept."""
    from diffucoder import steps

    result = steps.filter_unit(data_root, uri=uri, shard=int(shard))
    print(result)
    return int(result["kept"])


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def dedup_plan(config_yaml: str, data_root: str, kept_per_shard: list) -> list:
    """The dedup fan-out's items ``[{"lsh_task", "data_root"}]``: LSH (band, bucket range) cells split
    into ``data.dedup.lsh_tasks`` tasks over every shard's signatures."""
    from diffucoder import steps

    items = steps.dedup_plan(steps.config_from_yaml(config_yaml), root=data_root)
    print({"kept_after_filter": int(sum(kept_per_shard)), "lsh_tasks": len(items)})
    return items


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def dedup_band(data_root: str, lsh_task: int) -> int:
    """One LSH task: the near-duplicate pairs of its cells, confirmed on whole signatures.

    Returns the number of confirmed pairs.
    """
    from diffucoder import steps

    return steps.dedup_band(data_root, task=int(lsh_task))


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def dedup(data_root: str, pairs_per_task: list) -> int:
    """Clusters over ids, sha256s and every LSH task's confirmed pairs; returns the documents removed."""
    from diffucoder import steps

    result = steps.dedup(data_root)
    print({"pairs_per_task": [int(n) for n in pairs_per_task], **result})
    return int(result["exact_duplicate_docs"] + result["near_duplicate_docs"])


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def finalize_shard(data_root: str, shard: int) -> int:
    """One shard: drop the duplicates dedup chose and write the output shard."""
    from diffucoder import steps

    return steps.finalize_unit(data_root, shard=int(shard))


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def data_report(config_yaml: str, data_root: str, docs_per_shard: list, corpus: Output[Dataset]):
    """Merge the shard stats into stats.json + report.md/html and seal the corpus."""
    import json

    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    # the record times the whole corpus build (ingest .. report), not this task alone
    with steps.timed_step(data_root, step="data", started=steps.ingest_started(data_root)) as rec:
        output = steps.data_report(cfg, root=data_root)
        uri = steps.corpus_uri(data_root)
        corpus.metadata.update(steps.artifact_metadata(uri, cfg=cfg, documents=int(sum(docs_per_shard))))
        rec["metrics"] = {k: v for k, v in output.items() if isinstance(v, int | float)}
        rec["uris"] = {"corpus": uri, "report": f"{uri}/report.html"}
    with open(corpus.path, "w") as f:
        json.dump(corpus.metadata, f)


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def tiny_tasks(config_yaml: str, data_root: str, tasks: Output[Dataset]):
    """The tiny task family (train/held-out tasks, SFT and RL sets), when a stage or evaluation reads it."""
    import json

    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    with steps.timed_step(data_root, step="tiny-tasks") as rec:
        uri = steps.tiny_tasks(cfg, root=data_root)
        tasks.metadata.update(steps.artifact_metadata(uri, cfg=cfg))
        rec["uris"] = {"tasks": uri}
    with open(tasks.path, "w") as f:
        json.dump(tasks.metadata, f)


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def tokenizer(
    config_yaml: str, data_root: str, vocab_size: int, corpus: Input[Dataset], tokenizer: Output[dsl.Artifact]
):
    """The tokenizer packing uses: the base (or start) model's, or a BPE trained on the filtered corpus."""
    import json

    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    with steps.timed_step(data_root, step="tokenizer") as rec:
        uri = steps.tokenizer(cfg, root=data_root, corpus=corpus.metadata["uri"], vocab_size=vocab_size)
        tokenizer.metadata.update(steps.artifact_metadata(uri, cfg=cfg, vocab_size=vocab_size))
        rec["uris"] = {"tokenizer": uri}
    with open(tokenizer.path, "w") as f:
        json.dump(tokenizer.metadata, f)


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def midtrain_mix(
    config_yaml: str, data_root: str, corpus: Input[Dataset], tasks: Input[Dataset], mix: Output[Dataset]
):
    """Stage-2 text: ``data.sources.midtrain``, or (generated:tiny) the corpus with the train tasks as code."""
    import json

    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    with steps.timed_step(data_root, step="midtrain-mix") as rec:
        uri = steps.midtrain_mix(
            cfg, root=data_root, corpus=corpus.metadata["uri"], tasks=tasks.metadata["uri"]
        )
        mix.metadata.update(steps.artifact_metadata(uri, cfg=cfg))
        rec["uris"] = {"midtrain_mix": uri}
    with open(mix.path, "w") as f:
        json.dump(mix.metadata, f)


@dsl.component(base_image=TOOLS_IMAGE, install_kfp_package=False)
def pack(
    config_yaml: str,
    data_root: str,
    stage: str,
    text: Input[Dataset],
    tokenizer: Input[dsl.Artifact],
    packed: Output[Dataset],
):
    """Tokenise text shards into fixed-length rows for a packed stage (pretrain / midtrain)."""
    import json

    from diffucoder import steps

    cfg = steps.config_from_yaml(config_yaml)
    with steps.timed_step(data_root, step=f"pack-{stage}") as rec:
        meta = steps.pack(
            cfg,
            root=data_root,
            text=text.metadata["uri"],
            tokenizer_uri=tokenizer.metadata["uri"],
            stage=stage,
        )
        packed.metadata.update(steps.artifact_metadata(meta.pop("uri"), cfg=cfg, **meta))
        rec["metrics"], rec["uris"] = meta, {"packed": packed.metadata["uri"]}
    with open(packed.path, "w") as f:
        json.dump(packed.metadata, f)
