"""``diffucoder data ...``: every data step as a subcommand with URIs in and out.

Each subcommand parses its arguments, resolves the RunConfig (``--config`` + ``key.sub=value``) and
calls one library function; the KFP components call the same functions.
"""

from __future__ import annotations

import argparse
import json

from diffucoder.config_cli import add_config_args


def _cfg(args: argparse.Namespace):
    from diffucoder.config import load_config

    return load_config(args.config, args.overrides)


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _tiny_tasks(args: argparse.Namespace) -> int:
    from diffucoder.data.formats import write_tiny_task_sets

    t = _cfg(args).data.tiny_tasks
    flags = dict(
        seed=args.seed,
        n_train=args.n_train,
        n_heldout=args.n_heldout,
        difficulty=args.difficulty,
        n_rl=args.n_rl,
    )
    t = type(t).model_validate(t.model_dump() | {k: v for k, v in flags.items() if v is not None})
    meta = write_tiny_task_sets(args.out, t)
    _print(meta)
    return 0


def _stdlib_corpus(args: argparse.Namespace) -> int:
    from diffucoder.data.corpus import build_stdlib_corpus

    stats = build_stdlib_corpus(
        args.out, _cfg(args).data, max_files=args.max_files, include_tests=not args.no_tests
    )
    _print({k: v for k, v in stats.items() if k != "shards"} | {"shards": len(stats["shards"])})
    return 0


def _midtrain_mix(args: argparse.Namespace) -> int:
    from diffucoder.data.corpus import build_midtrain_mix
    from diffucoder.data.prepare import shard_files

    cfg = _cfg(args)
    shards = shard_files(args.corpus)
    _print(build_midtrain_mix(shards, args.tasks, args.out, cfg.data, seed=cfg.seed))
    return 0


def _pack(args: argparse.Namespace) -> int:
    from diffucoder.data.pack import pack_shards
    from diffucoder.data.prepare import shard_files

    cfg = _cfg(args).data.pack
    shards = [u for src in args.input for u in shard_files(src)]
    meta = pack_shards(shards, args.tokenizer, args.seq_len or cfg.seq_len, args.out, cfg.rows_per_shard)
    _print({k: v for k, v in meta.items() if k not in ("shards", "inputs")})
    return 0


def _to_sft(args: argparse.Namespace) -> int:
    from diffucoder.data import io
    from diffucoder.data.formats import opencoder_to_sft

    lines = io.read_bytes(args.input).decode().splitlines()
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{args.input}:{lineno}: invalid JSON: {exc.msg}") from exc
    out = opencoder_to_sft(rows, args.input)
    io.write_jsonl(args.out, out)
    _print({"rows": len(out)})
    return 0


def _rl_hard(args: argparse.Namespace) -> int:
    from diffucoder.data import io
    from diffucoder.data.formats import augment_with_signature, hard_sample_filter

    rows = [json.loads(line) for line in io.read_bytes(args.input).decode().splitlines() if line.strip()]
    kept = hard_sample_filter(rows, args.mean_percentile, args.std_percentile)
    if args.augment:
        solutions = {r["id"]: r.get("best_solution", "") for r in kept}
        kept = augment_with_signature(kept, solutions)
    io.write_jsonl(args.out, [{k: v for k, v in r.items() if k != "best_solution"} for r in kept])
    _print({"input": len(rows), "kept": len(kept)})
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import prepare

    cfg = _cfg(args).data
    _print_lsh(cfg)
    stats = prepare(args.input, args.out, cfg, work=args.work, workers=args.workers)
    _print(
        {
            "input": stats["input"]["documents"],
            "kept_after_filter": stats["filter"]["kept"],
            "output": stats["output"]["documents"],
            "report": f"{args.out}/report.md",
        }
    )
    return 0


def _filter(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import filter_shard

    result = filter_shard(args.input, args.shard, args.work, _cfg(args).data)
    _print({"shard": args.shard, "total": result["filter"]["total"], "kept": result["filter"]["kept"]})
    return 0


def _print_lsh(cfg) -> None:
    d = cfg.dedup
    print(
        f"near-dedup: {d.bands} bands x {d.rows} rows, Jaccard threshold ~{d.threshold:.3f}, "
        f"{d.lsh_tasks} LSH tasks over {d.band_ranges} bucket range(s) per band"
    )


def _dedup(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import dedup_step

    cfg = _cfg(args).data
    _print_lsh(cfg)
    result = dedup_step(args.work, cfg)
    _print({k: v for k, v in result.items() if k != "removed"})
    return 0


def _dedup_plan(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import dedup_plan

    cfg = _cfg(args).data
    _print_lsh(cfg)
    _print({"tasks": dedup_plan(args.work, cfg)})
    return 0


def _dedup_band(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import dedup_band_step

    _print({"task": args.task, "pairs": dedup_band_step(args.work, args.task)})
    return 0


def _dedup_join(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import dedup_join_step

    result = dedup_join_step(args.work)
    _print({k: v for k, v in result.items() if k != "removed"})
    return 0


def _finalize(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import finalize_shard, load_removed

    docs, size = finalize_shard(args.work, args.shard, args.out, load_removed(args.work))
    _print({"shard": args.shard, "documents": docs, "bytes": size})
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import ingest

    units = ingest(args.input, args.work, _cfg(args).data)
    _print({"shards": len(units), "units": units})
    return 0


def _report(args: argparse.Namespace) -> int:
    from diffucoder.data.prepare import report_step

    stats = report_step(args.work, args.out, _cfg(args).data)
    _print({"output": stats["output"]})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="data stage: corpora, filters, dedup, decontamination, packing")
    inner = parser.add_subparsers(dest="data_command", required=True)

    p = inner.add_parser("tiny-tasks", help="generate the tiny Python tasks (train/held-out + SFT/RL sets)")
    p.add_argument("--out", required=True, help="output dir or s3:// prefix")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-heldout", type=int, default=None)
    p.add_argument("--n-rl", type=int, default=None, help="RL problems (default: data.tiny_tasks.n_rl)")
    p.add_argument("--difficulty", type=int, choices=(1, 2, 3), default=None, help="max operations per task")
    add_config_args(p)
    p.set_defaults(func=_tiny_tasks)

    p = inner.add_parser("stdlib-corpus", help="the CPython stdlib on this machine as raw text shards")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--max-files", type=int, default=None, help="first N files in path order (subsets for tests)"
    )
    p.add_argument("--no-tests", action="store_true", help="leave out test/ directories")
    add_config_args(p)
    p.set_defaults(func=_stdlib_corpus)

    p = inner.add_parser("midtrain-mix", help="tiny stage-2 set: corpus shards + train tasks as code")
    p.add_argument("--corpus", required=True, help="dir of filtered text shards")
    p.add_argument("--tasks", required=True, help="train.jsonl from `data tiny-tasks`")
    p.add_argument("--out", required=True)
    add_config_args(p)
    p.set_defaults(func=_midtrain_mix)

    p = inner.add_parser("pack", help="tokenise text shards into fixed-length input_ids rows")
    p.add_argument("--input", required=True, action="append", help="dir of text shards (repeatable)")
    p.add_argument("--tokenizer", required=True, help="tokenizer dir or s3:// URI")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--out", required=True)
    add_config_args(p)
    p.set_defaults(func=_pack)

    p = inner.add_parser("prepare", help="the whole local flow: ingest, filter, decontaminate, dedup, report")
    p.add_argument(
        "--input", required=True, action="append", help="source dir, JSONL/Parquet file or dir (repeatable)"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--work", default=None, help="intermediate files (default: <out>-work)")
    p.add_argument("--workers", type=int, default=None, help="process-pool size (default data.workers)")
    add_config_args(p)
    p.set_defaults(func=_prepare)

    p = inner.add_parser("ingest", help="per-run step: list input units, cutting source dirs into raw shards")
    p.add_argument("--input", required=True, action="append")
    p.add_argument("--work", required=True)
    add_config_args(p)
    p.set_defaults(func=_ingest)

    p = inner.add_parser("filter", help="per-shard step: filters + decontamination + MinHash signatures")
    p.add_argument("--input", required=True, help="one input unit (JSONL/Parquet file or source dir)")
    p.add_argument("--shard", type=int, required=True, help="shard index (names the outputs)")
    p.add_argument("--work", required=True)
    add_config_args(p)
    p.set_defaults(func=_filter)

    p = inner.add_parser(
        "dedup", help="global stage in this process: dedup-plan, every dedup-band task, dedup-join"
    )
    p.add_argument("--work", required=True)
    add_config_args(p)
    p.set_defaults(func=_dedup)

    p = inner.add_parser(
        "dedup-plan", help="global step: fix the signature shards, rank the ids, split LSH cells into tasks"
    )
    p.add_argument("--work", required=True)
    add_config_args(p)
    p.set_defaults(func=_dedup_plan)

    p = inner.add_parser("dedup-band", help="per-task step: confirmed near-duplicate pairs of some LSH cells")
    p.add_argument("--work", required=True)
    p.add_argument("--task", type=int, required=True, help="task index in dedup/plan.json")
    p.set_defaults(func=_dedup_band)

    p = inner.add_parser("dedup-join", help="global step: cluster ids over every task's confirmed pairs")
    p.add_argument("--work", required=True)
    p.set_defaults(func=_dedup_join)

    p = inner.add_parser("finalize", help="per-shard step: drop duplicates and write the output shard")
    p.add_argument("--work", required=True)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--out", required=True)
    add_config_args(p)
    p.set_defaults(func=_finalize)

    p = inner.add_parser(
        "report", help="merge shard stats into stats.json + report.md/html and seal the output"
    )
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    add_config_args(p)
    p.set_defaults(func=_report)

    p = inner.add_parser("to-sft", help="OpenCoder-SFT-like JSONL (instruction, output) -> stage-3 chat rows")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_to_sft)

    p = inner.add_parser(
        "rl-hard-filter", help="AceCode-like rows -> paper's hard split (+ signature copies)"
    )
    p.add_argument("--input", required=True, help="JSONL rows with question, test_cases, pass_rates")
    p.add_argument("--out", required=True)
    p.add_argument("--mean-percentile", type=float, default=20.0)
    p.add_argument("--std-percentile", type=float, default=40.0)
    p.add_argument("--augment", action="store_true", help="add signature copies (needs best_solution)")
    p.set_defaults(func=_rl_hard)
