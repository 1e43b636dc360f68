"""Merged statistics of a data run and its Markdown/HTML report.

Shard stats are summed, and dropped examples are merged by taking the smallest document ids, so
the merged stats do not depend on how the corpus was sharded or on the worker count.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict

from diffucoder.data import io
from diffucoder.data.config import DataConfig

_MAX_CLUSTERS_SHOWN = 50


def _merge_examples(parts: list[dict[str, list]], limit: int, key) -> dict[str, list]:
    merged: dict[str, list] = defaultdict(list)
    for part in parts:
        for reason, items in part.items():
            merged[reason].extend(items)
    return {r: sorted(items, key=key)[:limit] for r, items in sorted(merged.items())}


def merge_shard_stats(
    shard_stats: list[dict],
    dedup: dict,
    final: list[tuple[int, int]],
    ingest_skips: dict | None,
    cfg: DataConfig,
) -> dict:
    """One stats dict for the run (the content of stats.json)."""
    filt = [s["filter"] for s in shard_stats]
    dropped: Counter[str] = Counter()
    for f in filt:
        dropped.update(f["dropped"])
    skip_parts = [s["skipped"] for s in shard_stats] + ([ingest_skips] if ingest_skips else [])
    skipped: Counter[str] = Counter()
    for part in skip_parts:
        skipped.update(part["counts"])
    clusters: dict[str, list[str]] = defaultdict(list)
    for doc_id, info in dedup["removed"].items():
        clusters[info["kept"]].append(doc_id)
    contamination = sorted(
        (e["id"], e.get("detail", ""))
        for f in filt
        for reason, items in f["examples"].items()
        if reason.startswith("decontam")
        for e in items
    )
    return {
        "shards": len(shard_stats),
        "input": {
            "documents": sum(f["total"] for f in filt),
            "bytes": sum(f["bytes_in"] for f in filt),
            "skipped": dict(sorted(skipped.items())),
            "skipped_examples": _merge_examples([p["examples"] for p in skip_parts], 5, key=str),
        },
        "filter": {
            "kept": sum(f["kept"] for f in filt),
            "bytes_kept": sum(f["bytes_out"] for f in filt),
            "dropped": dict(sorted(dropped.items())),
            "examples": _merge_examples(
                [f["examples"] for f in filt], cfg.examples_per_rule, key=lambda e: e["id"]
            ),
        },
        "decontamination": {
            "dropped": sum(n for r, n in dropped.items() if r.startswith("decontam")),
            "examples": contamination,
        },
        "dedup": {k: v for k, v in dedup.items() if k != "removed"}
        | {"clusters_shown": {k: sorted(v) for k, v in sorted(clusters.items())[:_MAX_CLUSTERS_SHOWN]}},
        "output": {"documents": sum(n for n, _ in final), "bytes": sum(b for _, b in final)},
    }


def _rows(title: str, items: dict) -> list[str]:
    lines = [f"### {title}", "", "| reason | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in items.items()] or ["| (none) | 0 |"]
    return lines + [""]


def render_markdown(stats: dict) -> str:
    inp, filt, dedup, out = stats["input"], stats["filter"], stats["dedup"], stats["output"]
    lines = [
        "# Data stage report",
        "",
        "| | documents | bytes |",
        "|---|---|---|",
        f"| input | {inp['documents']} | {inp['bytes']} |",
        f"| after filters + decontamination | {filt['kept']} | {filt['bytes_kept']} |",
        f"| output (after dedup) | {out['documents']} | {out['bytes']} |",
        "",
    ]
    lines += _rows("Skipped inputs", inp["skipped"])
    lines += _rows("Dropped by rule", filt["dropped"])
    lines += ["### Dropped examples", ""]
    for reason, items in filt["examples"].items():
        lines.append(f"- **{reason}**: " + ", ".join(f"`{e['path'] or e['id']}`" for e in items))
    lines += [
        "",
        "### Deduplication",
        "",
        f"MinHash LSH: {dedup['bands']} bands x {dedup['rows']} rows = {dedup['num_perm']} permutations, "
        f"implied Jaccard threshold {dedup['threshold']}.",
        "",
        f"- exact duplicates removed: {dedup['exact_duplicate_docs']}",
        f"- near duplicates removed: {dedup['near_duplicate_docs']} ({dedup['near_pairs']} confirmed pairs)",
        f"- clusters: {dedup['clusters']} (largest {dedup['largest_cluster']})",
        "",
    ]
    for kept, members in dedup["clusters_shown"].items():
        lines.append(f"- kept `{kept}`, removed " + ", ".join(f"`{m}`" for m in members))
    lines += ["", "### Contamination hits", ""]
    lines += [f"- `{doc}`: {item}" for doc, item in stats["decontamination"]["examples"]] or ["- none"]
    return "\n".join(lines) + "\n"


def render_html(markdown: str) -> str:
    """A self-contained HTML page of the Markdown report (tables and lists, nothing else needed)."""
    body = []
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = "body{font-family:sans-serif;max-width:60em;margin:auto}td{border:1px solid #ccc;padding:2px 6px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Data report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_report(out: str, stats: dict) -> None:
    md = render_markdown(stats)
    io.write_json(io.join(out, "stats.json"), stats)
    io.write_bytes(io.join(out, "report.md"), md.encode())
    io.write_bytes(io.join(out, "report.html"), render_html(md).encode())
