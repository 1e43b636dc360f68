"""MinHash and the staged dedup on the real stdlib: known exact duplicates, injected near-copies,
and the same result for any fan-out of the global stage."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from diffucoder.data import io
from diffucoder.data.clusters import find_clusters, min_labels
from diffucoder.data.config import DedupConfig
from diffucoder.data.corpus import stdlib_root
from diffucoder.data.dedup import (
    band_column,
    band_values,
    find_duplicates,
    plan,
    rows_uri,
    write_signature_shard,
)
from diffucoder.data.lsh import candidate_pairs, confirm, confirmed_pairs, id_ranks
from diffucoder.data.minhash import EMPTY, MinHasher, shingle_hashes, token_hashes
from diffucoder.data.readers import make_doc


def _stdlib_doc(rel: str, doc_id: str | None = None, text: str | None = None) -> dict:
    raw = (stdlib_root() / rel).read_bytes()
    text = raw.decode() if text is None else text
    return make_doc(text, "stdlib", rel, "PSF-2.0", "python", doc_id=doc_id or f"stdlib:{rel}")


def _run(docs_per_shard: list[list[dict]], tmp_path, cfg: DedupConfig) -> dict:
    uris = []
    for i, docs in enumerate(docs_per_shard):
        uri = str(tmp_path / f"shard-{i:05d}.parquet")
        write_signature_shard(uri, docs, cfg)
        uris.append(uri)
    return find_duplicates(uris, cfg)


def test_tokens_are_case_insensitive_identifier_runs():
    hashes, trivial = token_hashes("Foo = bar_1(42) + FOO - x")
    assert len(hashes) == 5 and hashes[0] == hashes[3]
    assert trivial.tolist() == [False, False, True, False, True]


def test_signature_agreement_estimates_jaccard():
    hasher = MinHasher(num_perm=512, shingle_size=5, seed=3)
    text = (stdlib_root() / "textwrap.py").read_text()
    edited = re.sub(r"\bself\b", "this", text)
    a, b = hasher.shingles(text), hasher.shingles(edited)
    true = len(np.intersect1d(a, b)) / len(np.union1d(a, b))
    estimate = float(np.mean(hasher.signature(text) == hasher.signature(edited)))
    assert abs(true - estimate) < 0.05, (true, estimate)
    assert np.array_equal(hasher.signature(text), MinHasher(512, 5, 3).signature(text))


def test_exact_dedup_finds_known_stdlib_duplicates(tmp_path):
    # identical files shipped in CPython 3.11's stdlib
    rels = [
        "concurrent/__init__.py",
        "xmlrpc/__init__.py",
        "__phello__/__init__.py",
        "__phello__/spam.py",
        "test/test_asyncio/__main__.py",
        "test/test_importlib/__main__.py",
        "textwrap.py",
        "shlex.py",
    ]
    docs = [_stdlib_doc(r) for r in rels]
    result = _run([docs[:3], docs[3:]], tmp_path, DedupConfig())
    assert result["removed"] == {
        "stdlib:xmlrpc/__init__.py": {"reason": "exact_duplicate", "kept": "stdlib:concurrent/__init__.py"},
        "stdlib:__phello__/spam.py": {"reason": "exact_duplicate", "kept": "stdlib:__phello__/__init__.py"},
        "stdlib:test/test_importlib/__main__.py": {
            "reason": "exact_duplicate",
            "kept": "stdlib:test/test_asyncio/__main__.py",
        },
    }


def _rename_variables(text: str) -> str:
    """A near-copy: a few identifiers renamed and the code re-indented."""
    names = sorted(set(re.findall(r"^\s*([a-z_][a-z0-9_]{3,})\s*=", text, re.M)))[:4]
    for i, name in enumerate(names):
        text = re.sub(rf"\b{name}\b", f"renamed_{i}", text)
    return text.replace("    ", "  ")


def test_near_copies_removed_distinct_files_kept(tmp_path):
    modules = sorted(
        p.name for p in stdlib_root().glob("*.py") if 400 < len(p.read_text().splitlines()) < 3000
    )
    originals = [_stdlib_doc(m) for m in modules[:30]]
    copies = [
        make_doc(
            _rename_variables(d["text"]), "copies", d["path"], None, "python", doc_id=f"zcopy:{d['path']}"
        )
        for d in originals[:6]
    ]
    cfg = DedupConfig()
    result = _run([originals[:15] + copies[:3], originals[15:] + copies[3:]], tmp_path, cfg)
    removed = result["removed"]
    assert set(removed) == {c["id"] for c in copies}, sorted(removed)
    for copy, original in zip(copies, originals, strict=False):
        assert removed[copy["id"]] == {"reason": "near_duplicate", "kept": original["id"]}
    assert result["threshold"] == round((1 / cfg.bands) ** (1 / cfg.rows), 4)


def test_result_does_not_depend_on_sharding(tmp_path):
    rels = sorted(p.relative_to(stdlib_root()).as_posix() for p in stdlib_root().glob("encodings/cp*.py"))[
        :24
    ]
    docs = [_stdlib_doc(r) for r in rels] + [_stdlib_doc(rels[0], doc_id="dup:0")]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = _run([docs], tmp_path / "a", DedupConfig())
    shuffled = docs[::-1]
    many = _run([shuffled[i::5] for i in range(5)], tmp_path / "b", DedupConfig())
    assert one["removed"] == many["removed"]
    assert one["near_duplicate_docs"] > 0 and one["exact_duplicate_docs"] == 1


def test_signature_shard_layout(tmp_path):
    """Band columns in the Parquet file, the same values row-major in the ``.npy`` beside it."""
    short = make_doc("x = 1", "t", "short.py", None, "python", doc_id="short")
    cfg = DedupConfig(bands=4, rows=2)
    uri = str(tmp_path / "shard-00000.parquet")
    write_signature_shard(uri, [_stdlib_doc("textwrap.py"), short], cfg)
    table = io.read_table(uri)
    assert table.column_names == ["id", "sha256", "band_000", "band_001", "band_002", "band_003"]
    assert table.schema.field("band_002").type == pa.binary(4 * 2)
    full = MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed).signature(_stdlib_doc("textwrap.py")["text"])
    values, valid = band_values(table.column("band_002"), cfg.rows)
    assert valid.tolist() == [True, False]  # no 5-token shingle in "x = 1": no band, exact dedup only
    assert values[0].tolist() == full[4:6].tolist()
    rows = io.read_array(rows_uri(uri))
    assert rows.shape == (2, cfg.num_perm) and rows.dtype == np.uint32
    assert rows[0].tolist() == full.tolist() and (rows[1] == EMPTY).all()


def test_a_missing_row_file_names_the_step_to_rerun(tmp_path):
    docs = _near_duplicate_corpus()
    cfg = DedupConfig(lsh_tasks=1)
    uri = str(tmp_path / "shard-00000.parquet")
    write_signature_shard(uri, docs, cfg)
    Path(rows_uri(uri)).unlink()
    with pytest.raises(FileNotFoundError, match=r"shard-00000\.npy is missing.*rerun the filter step"):
        confirmed_pairs([uri], plan([uri], cfg)["tasks"][0], cfg, rank=id_ranks([uri]))


def test_batched_shingles_equal_per_document_shingles():
    texts = [_stdlib_doc(r)["text"] for r in ("textwrap.py", "shlex.py")] + [
        "",
        "a b",
        "Foo bar baz qux quux corge",
    ]
    hashes, offsets = shingle_hashes(texts, 5)
    for i, text in enumerate(texts):
        alone, _ = shingle_hashes([text], 5)
        assert np.array_equal(hashes[offsets[i] : offsets[i + 1]], alone)
    sigs = MinHasher(64, 5, 1).signatures(texts)
    assert (sigs[2] == EMPTY).all() and (sigs[3] == EMPTY).all() and (sigs[4] != EMPTY).any()


def test_long_tokens_hash_all_their_bytes():
    a = "x_" * 40 + "tail"
    b = "x_" * 20 + "y_" + "x_" * 19 + "tail"  # same length, same first and last 8 bytes
    ha, _ = token_hashes(a)
    hb, _ = token_hashes(b)
    assert ha[0] != hb[0]
    assert token_hashes("ABCdef_123")[0][0] == token_hashes("abcDEF_123")[0][0]


def _near_duplicate_corpus() -> list[dict]:
    modules = sorted(
        p.name for p in stdlib_root().glob("*.py") if 200 < len(p.read_text().splitlines()) < 1500
    )[:40]
    originals = [_stdlib_doc(m) for m in modules]
    copies = [
        make_doc(
            _rename_variables(d["text"]), "copies", d["path"], None, "python", doc_id=f"copy:{d['path']}"
        )
        for d in originals[:8]
    ]
    encodings = sorted(
        p.relative_to(stdlib_root()).as_posix() for p in stdlib_root().glob("encodings/cp*.py")
    )
    similar = [_stdlib_doc(r) for r in encodings[:16]]  # generated codecs: large near-duplicate clusters
    exact = [dict(originals[3], id="dup:a"), dict(similar[0], id="dup:b")]
    return originals + copies + similar + exact


@pytest.mark.parametrize(
    ("lsh_tasks", "band_ranges", "n_shards"),
    [(2, 1, 3), (3, 1, 1), (7, 2, 4), (25, 1, 2), (60, 3, 5), (4, 16, 3)],
)
def test_result_is_the_same_for_any_fan_out(tmp_path, lsh_tasks, band_ranges, n_shards):
    """Widths that divide the bands or not, more tasks than cells, bucket ranges within a band:
    the same removed set, pairs and clusters as one task over one shard."""
    docs = _near_duplicate_corpus()
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    one = _run([docs], tmp_path / "one", DedupConfig(lsh_tasks=1))
    shuffled = docs[::-1]
    cfg = DedupConfig(lsh_tasks=lsh_tasks, band_ranges=band_ranges)
    many = _run([shuffled[i::n_shards] for i in range(n_shards)], tmp_path / "many", cfg)
    assert many == one
    assert (
        one["near_duplicate_docs"] >= 8 and one["exact_duplicate_docs"] >= 1 and one["largest_cluster"] >= 4
    )


@pytest.mark.parametrize("lsh_tasks", [1, 5, 25])
def test_fan_out_reads_each_signature_column_once(tmp_path, monkeypatch, lsh_tasks):
    """Fanning out adds no column reads: the ids are ranked once, an LSH task reads its own bands'
    columns and, to confirm its candidates, each shard's row file at most once (the rows of its
    paired documents), and the join reads ids and sha256s only. Confirming in every task and
    taking the union gives the pairs that confirming the union of all candidates once gives."""
    docs = _near_duplicate_corpus()
    cfg = DedupConfig(lsh_tasks=lsh_tasks)
    uris = []
    for i in range(3):
        uris.append(str(tmp_path / f"shard-{i:05d}.parquet"))
        write_signature_shard(uris[-1], docs[i::3], cfg)
    reads: list[tuple[str, str]] = []
    read_table, read_array = io.read_table, io.read_array

    def recording_table(uri: str, columns: list[str] | None = None):
        reads.extend((uri, column) for column in columns or ["<all>"])
        return read_table(uri, columns)

    def recording_array(uri: str):
        reads.append((uri, "<rows>"))
        return read_array(uri)

    monkeypatch.setattr(io, "read_table", recording_table)
    monkeypatch.setattr(io, "read_array", recording_array)
    p = plan(uris, cfg)
    rank = id_ranks(uris)
    assert Counter(reads) == Counter((uri, "id") for uri in uris)
    blocks, candidates = [], []
    for cells in p["tasks"]:
        reads.clear()
        blocks.append(confirmed_pairs(uris, cells, cfg, rank=rank))
        task_reads = list(reads)
        candidates.append(candidate_pairs(uris, cells, cfg, rank=rank))
        own = {band_column(band) for band, _ in cells}
        rows = Counter((rows_uri(uri), "<rows>") for uri in uris) if len(candidates[-1]) else Counter()
        assert Counter(task_reads[: len(uris) * len(own)]) == Counter((uri, c) for uri in uris for c in own)
        assert Counter(task_reads[len(uris) * len(own) :]) == rows
        assert len(blocks[-1]) <= len(candidates[-1])
    reads.clear()
    result = find_clusters(uris, blocks, cfg)
    assert Counter(reads) == Counter((uri, column) for uri in uris for column in ("id", "sha256"))
    union = np.unique(np.concatenate(candidates), axis=0)
    assert result["near_pairs"] == len(confirm(uris, union, cfg)) > 0
    assert sum(len(c) for c in candidates) >= len(union)


def _union_find_labels(n: int, edges: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_min_labels_match_a_plain_union_find(seed):
    rng = np.random.default_rng(seed)
    n = 300
    edges = rng.integers(0, n, size=(int(rng.integers(0, 400)), 2))
    chain = np.stack([np.arange(200, 299), np.arange(201, 300)], axis=1)[::-1]  # a long path, worst order
    edges = np.concatenate([edges, chain])
    labels = min_labels(n, edges[:, 0], edges[:, 1])
    assert labels.tolist() == _union_find_labels(n, [tuple(e) for e in edges.tolist()])


@pytest.mark.slow
def test_exact_dedup_on_the_whole_stdlib(tmp_path):
    """Every group of byte-identical stdlib files collapses to its smallest id."""
    import hashlib
    from collections import defaultdict

    root = stdlib_root()
    paths = [
        p
        for p in sorted(root.rglob("*.py"))
        if "site-packages" not in p.parts and "__pycache__" not in p.parts
    ]
    groups = defaultdict(list)
    docs = []
    for p in paths:
        raw = p.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        rel = p.relative_to(root).as_posix()
        groups[hashlib.sha256(raw).hexdigest()].append(f"stdlib:{rel}")
        docs.append(make_doc(text, "stdlib", rel, "PSF-2.0", "python", doc_id=f"stdlib:{rel}"))
    result = _run([docs[i::4] for i in range(4)], tmp_path, DedupConfig(near=False))
    expected = {m: min(g) for g in groups.values() if len(g) > 1 for m in g if m != min(g)}
    assert {k: v["kept"] for k, v in result["removed"].items()} == expected
    assert len(expected) >= 40
