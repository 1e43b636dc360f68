"""Byte-level BPE tokenizer with the diffusion special tokens and a Qwen-style chat template.

Why our own tokenizer at tiny scale: a ~4k-vocab BPE trained on the tiny corpus keeps the embedding
and output head a small share of a few-million-parameter model. At paper scale the Qwen2.5-Coder
tokenizer is loaded instead, and converting it (:func:`add_diffusion_tokens`, called when a base
causal LM becomes a diffusion model) appends the tokens diffusion needs (``<|mask|>`` and
``<|dlm_pad|>``, paper §B.1); the model side then sizes its embeddings. :func:`load_tokenizer`
itself changes nothing: a checkpoint's tokenizer keeps the special tokens it declares (Dream's pad
is ``<|endoftext|>``, DiffuCoder-Instruct's ``<|dlm_pad|>``).

Training uses the HF ``tokenizers`` library (byte-level BPE, so any UTF-8 text round-trips); the
result is wrapped as a transformers ``PreTrainedTokenizerFast`` so the rest of the code uses one
tokenizer API whatever its origin.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from diffucoder import storage

EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "<|mask|>"
PAD_TOKEN = "<|dlm_pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (EOS_TOKEN, MASK_TOKEN, PAD_TOKEN, IM_START, IM_END)

# Qwen-style template: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, and
# `<|im_start|>assistant\n` as the generation prompt (docs/interfaces.md, "Special tokens").
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Pre-split like GPT-2/Qwen: contractions, letter runs, single digits (so numbers do not merge into
# arbitrary chunks), punctuation runs and whitespace; byte-level mapping happens after the split.
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a raw ``tokenizers.Tokenizer`` with eos/pad/mask roles and the chat template."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        mask_token=MASK_TOKEN,
        extra_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, special_tokens: Iterable[str] = DEFAULT_SPECIAL_TOKENS
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``.

    Args:
        texts: any iterable of strings (consumed once).
        vocab_size: target size including the 256 byte symbols and the special tokens.
        special_tokens: added first, so they get ids 0..n-1 and are never split.

    Returns:
        A ``PreTrainedTokenizerFast`` with eos, pad (``<|dlm_pad|>``), mask and the chat template set.

    Raises:
        ValueError: if a required special token is missing or ``vocab_size`` cannot hold the bytes.
    """
    special = list(dict.fromkeys(special_tokens))
    missing = [t for t in DEFAULT_SPECIAL_TOKENS if t not in special]
    if missing:
        raise ValueError(f"special_tokens must include {missing} (the model and chat template use them)")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(special):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: need at least {len(alphabet) + len(special)} "
            f"for {len(alphabet)} byte symbols plus {len(special)} special tokens"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return _wrap(tok)


def add_diffusion_tokens(
    tokenizer: PreTrainedTokenizerFast,
    *,
    mask: str = MASK_TOKEN,
    pad: str = PAD_TOKEN,
    bos: str | None = None,
) -> list[int]:
    """Make a base (e.g. Qwen) tokenizer diffusion-ready, in place; returns the ids it appended.

    Appends ``bos`` (when given), ``mask`` and ``pad`` in that order when the vocabulary lacks them,
    and sets them as the bos, mask and pad token; sets eos to ``<|endoftext|>`` when the vocab has it
    and no eos is set. ``bos`` is declared, never prepended (DiffuCoder's tokenizer declares
    ``<|beginoftext|>`` with ``add_bos_token: false``); appending it first gives the released ids.
    Callers size the model's embeddings to ``len(tokenizer)`` afterwards (``build_model`` does).
    """
    before = len(tokenizer)
    roles = {"mask_token": mask, "pad_token": pad}
    if bos is not None:
        roles = {"bos_token": bos, **roles}
    tokenizer.add_special_tokens(roles)
    if tokenizer.eos_token is None and EOS_TOKEN in tokenizer.get_vocab():
        tokenizer.eos_token = EOS_TOKEN
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return list(range(before, len(tokenizer)))


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, uri: str) -> None:
    """Write the tokenizer (``tokenizer.json`` + config) to a dir or ``s3://`` URI, sealed with a manifest."""
    with tempfile.TemporaryDirectory(prefix="tokenizer-") as tmp:
        tokenizer.save_pretrained(tmp)
        storage.put_dir(tmp, uri)  # files first, MANIFEST.json last


def _load_local(path: Path, source: str) -> PreTrainedTokenizerFast:
    if not path.is_dir():
        raise FileNotFoundError(f"{source}: no such tokenizer directory")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"{source}: no tokenizer.json or tokenizer_config.json in {path}")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise ValueError(f"{source}: expected a fast (tokenizer.json) tokenizer, got {type(tok).__name__}")
    return tok


def load_tokenizer(uri: str) -> PreTrainedTokenizerFast:
    """Load a tokenizer from a local dir or a (sealed) ``s3://`` dir, with the special tokens it declares.

    Raises:
        FileNotFoundError: the dir has no tokenizer files (the message names the URI).
        diffucoder.storage.IncompleteArtifactError: a remote dir without its MANIFEST.json.
    """
    if not storage.is_s3(uri):
        return _load_local(Path(uri), uri)
    with tempfile.TemporaryDirectory(prefix="tokenizer-") as tmp:
        storage.get_dir(uri, tmp)
        return _load_local(Path(tmp), uri)


def _iter_shard_texts(shard_uris: Iterable[str]) -> Iterator[str]:
    """Yield the ``text`` column of each filtered Parquet shard, one record batch at a time."""
    for uri in shard_uris:
        data = storage.read_bytes(uri)
        try:
            pf = pq.ParquetFile(io.BytesIO(data))
        except pa.ArrowException as exc:
            raise ValueError(f"{uri}: not a readable Parquet shard: {exc}") from exc
        if "text" not in pf.schema_arrow.names:
            raise ValueError(f"{uri}: filtered shard has no 'text' column (columns: {pf.schema_arrow.names})")
        for batch in pf.iter_batches(columns=["text"], batch_size=1024):
            yield from (t for t in batch.column(0).to_pylist() if t)


def train_tokenizer_from_shards(
    shard_uris: Iterable[str], vocab_size: int, out_uri: str
) -> PreTrainedTokenizerFast:
    """Pipeline entry: train on the ``text`` column of filtered shards and save to ``out_uri``."""
    uris = list(shard_uris)
    if not uris:
        raise ValueError(f"no shards given to train the tokenizer for {out_uri}")
    tokenizer = train_tokenizer(_iter_shard_texts(uris), vocab_size)
    save_tokenizer(tokenizer, out_uri)
    return tokenizer
