"""``diffucoder model import SRC DST``: a released checkpoint becomes a sealed project model.

Two kinds of source, told apart by ``config.json``'s ``model_type``:

- **Dream** (``Dream``; apple/DiffuCoder-7B-Base/-Instruct, Dream-org/Dream-v0-*-7B): already a
  diffusion model. The result is a diffusion model ``load_model`` and every stage take: the weights
  byte for byte, ``config.json`` rewritten as Qwen2 plus the fields that declare diffusion, the
  tokenizer in fast form with the special tokens the checkpoint declares (its mask token and id, its
  pad, its eos), and its ``generation_config.json`` decoding defaults under ``diffusion_generation``.
- **qwen2** (Qwen2.5-Coder-7B and kin): the input of the adaptation stages, imported as it is (a
  plain causal LM; ``model.base_model_uri`` converts it when stage 1 starts).

SRC is a local directory, an ``s3://`` prefix holding a downloaded snapshot, or a Hugging Face hub
id (``huggingface_hub.snapshot_download``; offline it fails saying so). Everything is checked before
anything is written (:mod:`diffucoder.model.checkpoint`), the output is staged in a temp dir and
published with ``MANIFEST.json`` last, and DST must not hold an artifact yet: a failed import writes
nothing. ``import.json`` in DST records the source, its kind and its original ``config.json``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from diffucoder import storage
from diffucoder.model.checkpoint import (
    INDEX_FILE,
    CheckpointError,
    check_weights,
    embedding_rows,
    publish_with_weights,
    read_config,
    read_tensors,
    require_empty_destination,
)
from diffucoder.model.dream import GENERATION_DEFAULTS_KEY, generation_defaults, is_dream, qwen2_fields

IMPORT_RECORD = "import.json"
# What an import reads from a snapshot; Python files (remote code) are never fetched or run.
SOURCE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    INDEX_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
KINDS = ("dream", "qwen2")


class CheckpointSourceError(RuntimeError):
    """SRC could not be fetched (unreachable hub, offline, missing prefix); nothing was written."""


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote (also printed by the CLI)."""

    source: str
    destination: str
    kind: str
    files: int
    bytes: int
    vocab_size: int
    tokenizer_tokens: int
    mask_token_id: int | None
    pad_token_id: int | None
    eos_token_id: int | None


def _wanted(rel: str) -> bool:
    return "/" not in rel and any(fnmatch.fnmatch(rel, pattern) for pattern in SOURCE_PATTERNS)


def _download_prefix(uri: str, local: Path) -> None:
    prefix = uri.rstrip("/") + "/"
    found = [u for u in storage.list_files(uri) if _wanted(u[len(prefix) :])]
    if not found:
        raise CheckpointSourceError(
            f"{uri}: no checkpoint files under this prefix (config.json, *.safetensors)"
        )
    for file_uri in found:
        storage.get_file(file_uri, local / file_uri[len(prefix) :])


def _download_hub(repo_id: str, local: Path) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot_download(repo_id, local_dir=str(local), allow_patterns=list(SOURCE_PATTERNS))
    except LocalEntryNotFoundError as exc:
        raise CheckpointSourceError(
            f"{repo_id}: the Hugging Face hub cannot be reached from here (offline, or HF_HUB_OFFLINE is set: "
            f"{exc}). Download the checkpoint where the hub is reachable "
            f"(huggingface-cli download {repo_id} --local-dir DIR), copy DIR here or to s3://, and import that"
        ) from exc
    except HfHubHTTPError as exc:
        raise CheckpointSourceError(f"{repo_id}: the Hugging Face hub refused the download: {exc}") from exc


@contextlib.contextmanager
def fetched(src: str) -> Iterator[Path]:
    """A local directory holding the checkpoint at ``src`` (downloaded to a temp dir unless local)."""
    local = Path(src)
    if not storage.is_s3(src) and local.is_dir():
        yield local
        return
    if not storage.is_s3(src) and (local.exists() or not HUB_ID.match(src)):
        raise CheckpointSourceError(
            f"{src}: no such checkpoint directory (expected a local dir, an s3:// prefix or a Hugging Face "
            "hub id such as apple/DiffuCoder-7B-Instruct)"
        )
    with tempfile.TemporaryDirectory(prefix="checkpoint-src-") as tmp:
        if storage.is_s3(src):
            _download_prefix(src, Path(tmp))
        else:
            _download_hub(src, Path(tmp))
        yield Path(tmp)


def source_kind(config: dict, source: str) -> str:
    """``dream`` or ``qwen2`` from ``config.json``; anything else is refused, naming ``model_type``."""
    if config.get("diffusion_lm"):
        raise CheckpointError(
            f"{source} is already a diffucoder model; load it or start a stage from it directly"
        )
    if is_dream(config):
        return "dream"
    if config.get("model_type") == "qwen2":
        return "qwen2"
    raise CheckpointError(
        f"{source}/config.json: model_type {config.get('model_type')!r} is not supported; import takes "
        "Dream-architecture diffusion checkpoints (model_type Dream: DiffuCoder, Dream) and Qwen2 causal "
        "LMs (model_type qwen2: Qwen2.5-Coder)"
    )


def load_checkpoint_tokenizer(path: Path, source: str, kind: str):
    """The checkpoint's tokenizer as a fast tokenizer, without running any remote code.

    Dream declares ``tokenizer_class: DreamTokenizer`` (remote code): it is Qwen2's byte-level BPE,
    so its ``tokenizer.json``, or else its ``vocab.json`` + ``merges.txt``, load with transformers'
    Qwen2 tokenizer, which reads the special tokens from ``tokenizer_config.json``.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2TokenizerFast

    has_fast = (path / "tokenizer.json").is_file()
    if not has_fast and not ((path / "vocab.json").is_file() and (path / "merges.txt").is_file()):
        raise CheckpointError(f"{source}: no tokenizer (tokenizer.json, or vocab.json + merges.txt)")
    loader = Qwen2TokenizerFast if kind == "dream" else AutoTokenizer
    try:
        tokenizer = loader.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: the tokenizer does not load: {exc}") from exc
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise CheckpointError(
            f"{source}: expected a byte-level BPE tokenizer, got {type(tokenizer).__name__}"
        )
    tokenizer.init_kwargs.pop("auto_map", None)  # the saved copy must not point at remote code
    return tokenizer


def _token_at(tokenizer, token_id: int | None) -> str | None:
    if token_id is None or not 0 <= token_id < len(tokenizer):
        return None
    return tokenizer.convert_ids_to_tokens(token_id)


def honour_special_tokens(tokenizer, config: dict, source: str) -> None:
    """Give the tokenizer the roles the checkpoint declares, in place; refuse when they disagree.

    The mask token is the one ``config.json`` names by id (Dream's sampler reads that id); the
    tokenizer must hold it, and a mask token it declares must be that one. Pad and eos are the
    tokenizer's own (DiffuCoder-Instruct pads with its trained ``<|dlm_pad|>`` while its
    ``config.json`` keeps Dream's default pad id), else the ones ``config.json`` names.
    """
    mask_id = config.get("mask_token_id")
    mask = _token_at(tokenizer, mask_id)
    if mask is None:
        raise CheckpointError(
            f"{source}: config.json names mask_token_id {mask_id}, but the tokenizer ({len(tokenizer)} tokens) "
            "has no such token"
        )
    if tokenizer.mask_token is not None and tokenizer.mask_token_id != mask_id:
        raise CheckpointError(
            f"{source}: the tokenizer's mask token {tokenizer.mask_token!r} has id {tokenizer.mask_token_id}, "
            f"config.json's mask_token_id is {mask_id}"
        )
    tokenizer.mask_token = mask
    for role in ("pad", "eos"):
        if getattr(tokenizer, f"{role}_token") is None:
            token = _token_at(tokenizer, config.get(f"{role}_token_id"))
            if token is None:
                raise CheckpointError(
                    f"{source}: neither the tokenizer nor config.json declares a {role} token"
                )
            setattr(tokenizer, f"{role}_token", token)


def _dream_config(config: dict, path: Path, source: str, tokenizer):
    from transformers import Qwen2Config

    from diffucoder.model.build import declare_diffusion_config

    hf_config = Qwen2Config(**qwen2_fields(config, source), architectures=["Qwen2ForCausalLM"])
    declare_diffusion_config(hf_config, tokenizer)
    generation_file = path / "generation_config.json"
    if generation_file.is_file():
        defaults = generation_defaults(json.loads(generation_file.read_text()))
        if defaults:
            setattr(hf_config, GENERATION_DEFAULTS_KEY, defaults)
    return hf_config


def import_checkpoint(src: str, dst: str) -> ImportResult:
    """Check the checkpoint at ``src`` completely, then publish it as a sealed project model at ``dst``.

    Raises:
        CheckpointError: unknown ``model_type``, missing/truncated shard, index naming a missing file,
            weights that do not match the config, a tokenizer without the mask token the config
            names, an embedding smaller than the tokenizer. Nothing is written.
        CheckpointSourceError: ``src`` cannot be fetched.
        FileExistsError: ``dst`` already holds files.
    """
    from transformers import AutoConfig

    require_empty_destination(dst)
    with fetched(src) as path:
        config = read_config(path, src)
        kind = source_kind(config, src)
        tokenizer = load_checkpoint_tokenizer(path, src, kind)
        if kind == "dream":
            honour_special_tokens(tokenizer, config, src)
            hf_config = _dream_config(config, path, src, tokenizer)
        else:
            hf_config = AutoConfig.from_pretrained(str(path))
        rows = embedding_rows(read_tensors(path, src), src)
        if rows < len(tokenizer):
            raise CheckpointError(
                f"{src}: the embedding has {rows} rows but the tokenizer has {len(tokenizer)} tokens; "
                "the tokenizer does not belong to these weights"
            )
        check_weights(path, src, hf_config)

        def write_rest(out: Path) -> None:
            if kind == "dream":
                hf_config.save_pretrained(out)
            else:
                shutil.copyfile(path / "config.json", out / "config.json")  # a plain causal LM as it is
            tokenizer.save_pretrained(out)
            record = {"source": src, "kind": kind, "source_config": config}
            (out / IMPORT_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True))

        manifest = publish_with_weights(path, src, dst, write_rest)
    return ImportResult(
        source=src,
        destination=dst,
        kind=kind,
        files=len(manifest.files),
        bytes=sum(f.size for f in manifest.files),
        vocab_size=rows,
        tokenizer_tokens=len(tokenizer),
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
