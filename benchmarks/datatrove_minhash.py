"""datatrove's three MinHash stages on a Parquet file of documents, for bench_data.py.

Runs in its own virtual environment (datatrove 0.10.1 needs numpy >= 2 and huggingface-hub >=
1.6, which the project's pins exclude; its xxhash hashing needs xxhash < 4, as its own
``processing`` extra pins), so it imports nothing from diffucoder:

    python -m venv DT && DT/bin/pip install datatrove==0.10.1 "xxhash<4" regex tokenizers pyarrow
    DT/bin/python benchmarks/datatrove_minhash.py --docs docs.parquet --out result.json

Same shingling as ours: code tokens (identifier runs, lower-cased; datatrove's prose
normalisation off), 5-grams, ``--bands`` x ``--rows``. Stage 1 (signatures) and stage 2
(bucket matching, one run per bucket) and stage 3 (clustering) run in this process, one after
the other; the JSON holds each stage's CPU seconds and every clustered document's cluster.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupSignature,
)
from datatrove.utils.text import TextNormConfig
from datatrove.utils.word_tokenizers import WordTokenizer

_TOKEN = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff]+")


class CodeTokens(WordTokenizer):
    """Identifier runs (+ non-ASCII), lower-cased: the tokens diffucoder's MinHash shingles."""

    def word_tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _TOKEN.finditer(text)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", required=True, help="Parquet with a `text` column")
    parser.add_argument("--out", required=True)
    parser.add_argument("--bands", type=int, default=25)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--ngram", type=int, default=5)
    args = parser.parse_args()
    texts = pq.read_table(args.docs, columns=["text"]).column("text").to_pylist()
    config = MinhashConfig(
        n_grams=args.ngram,
        num_buckets=args.bands,
        hashes_per_bucket=args.rows,
        seed=1,
        norm_config=TextNormConfig(
            lowercase=False, remove_punctuation=False, norm_numbers=False, norm_unicode_diacritics=False
        ),
    )
    cpu = {}
    with tempfile.TemporaryDirectory(prefix="datatrove-minhash-") as tmp:
        sigs, buckets, clusters = (str(Path(tmp, d)) for d in ("sigs", "buckets", "clusters"))
        start = time.process_time()
        docs = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
        MinhashDedupSignature(output_folder=sigs, config=config, language=CodeTokens()).run(docs, 0, 1)
        cpu["signatures"] = time.process_time() - start
        start = time.process_time()
        for bucket in range(args.bands):
            MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config).run(
                None, bucket, args.bands
            )
        cpu["buckets"] = time.process_time() - start
        start = time.process_time()
        MinhashDedupCluster(
            input_folder=buckets, output_folder=clusters, config=config, save_cluster_id=True
        ).run()
        cpu["cluster"] = time.process_time() - start
        raw = (
            Path(clusters, "000000.clusters").read_bytes()
            if Path(clusters, "000000.clusters").exists()
            else b""
        )
        pairs = [struct.unpack_from("<II", raw, i) for i in range(0, len(raw), 8)]
    Path(args.out).write_text(json.dumps({"cpu_s": cpu, "cluster_of": pairs}))


if __name__ == "__main__":
    main()
