"""Reading a Hugging Face checkpoint directory without trusting it: config, weight files, tensors.

A released checkpoint is a directory of ``config.json``, safetensors weights (one file, or shards
listed by ``model.safetensors.index.json``) and tokenizer files. Before anything is written from
it, :func:`check_weights` reads only the safetensors headers (a few KB per file, never the
tensors) and proves that every file is whole and that the tensors are exactly those the
architecture expects, with the expected shapes. transformers' ``from_pretrained`` would otherwise
initialise a missing tensor at random and only log a warning, which turns a damaged download into
a silently broken model.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diffucoder import storage

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
EMBEDDING = "model.embed_tokens.weight"
# Buffers some older checkpoints carry that no current model registers as parameters.
IGNORED_TENSOR_SUFFIXES = (".rotary_emb.inv_freq",)


class CheckpointError(ValueError):
    """A checkpoint directory is unusable; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TensorInfo:
    file: str
    dtype: str
    shape: tuple[int, ...]


def read_config(path: Path, source: str) -> dict:
    """``config.json`` of a checkpoint dir as a dict (``source`` names the checkpoint in errors)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{source}: no config.json (not a Hugging Face model directory)")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}/config.json: invalid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}/config.json: expected a JSON object")
    return config


def _index(path: Path, source: str) -> dict[str, str] | None:
    """The index's tensor -> file map, or None for a single-file checkpoint."""
    index = path / INDEX_FILE
    if not index.is_file():
        return None
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{source}/{INDEX_FILE}: not a safetensors index ({exc})") from exc
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{source}/{INDEX_FILE}: weight_map is not a mapping")
    return weight_map


def weight_files(path: Path, source: str) -> list[str]:
    """The safetensors files of a checkpoint, relative to ``path``: the index's files, else the single file.

    Raises:
        CheckpointError: no safetensors weights, an unreadable index, or an index naming a file
            that is not there.
    """
    weight_map = _index(path, source)
    if weight_map is not None:
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            raise CheckpointError(
                f"{source}/{INDEX_FILE} names {', '.join(missing)}, which the directory does not hold "
                "(incomplete download?)"
            )
        return files
    if (path / SINGLE_FILE).is_file():
        return [SINGLE_FILE]
    others = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
    hint = f"; found {', '.join(others)}: convert them to safetensors first" if others else ""
    raise CheckpointError(f"{source}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")


def read_header(file: Path, source: str) -> dict[str, TensorInfo]:
    """Tensor names, dtypes and shapes from one safetensors file's header; checks the file is whole.

    The safetensors layout is an 8-byte little-endian header length, a JSON header giving every
    tensor's byte range, then the data; a file shorter than the largest range end was cut off.
    """
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{source}/{file.name}: {size} bytes, too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise CheckpointError(
                f"{source}/{file.name}: truncated ({size} bytes, header alone claims {header_len + 8})"
            )
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{source}/{file.name}: not a safetensors file ({exc})") from exc
    header.pop("__metadata__", None)
    tensors, data_end = {}, 0
    for name, entry in header.items():
        try:
            begin, end = entry["data_offsets"]
            tensors[name] = TensorInfo(file.name, entry["dtype"], tuple(entry["shape"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}/{file.name}: malformed header entry {name!r}") from exc
        data_end = max(data_end, end)
    expected = 8 + header_len + data_end
    if size < expected:
        raise CheckpointError(
            f"{source}/{file.name}: truncated shard ({size} bytes, its header needs {expected}); "
            "download it again"
        )
    return tensors


def read_tensors(path: Path, source: str) -> dict[str, TensorInfo]:
    """Every tensor of the checkpoint (all shards); an index must agree with the shards it names."""
    files = weight_files(path, source)
    tensors: dict[str, TensorInfo] = {}
    for name in files:
        for tensor, info in read_header(path / name, source).items():
            if tensor in tensors:
                raise CheckpointError(
                    f"{source}: tensor {tensor} is in both {tensors[tensor].file} and {name}"
                )
            tensors[tensor] = info
    weight_map = _index(path, source)
    if weight_map is not None:
        wrong = sorted(t for t, f in weight_map.items() if t not in tensors or tensors[t].file != f)
        if wrong:
            raise CheckpointError(
                f"{source}/{INDEX_FILE}: {len(wrong)} tensor(s) are not where the index says, e.g. {wrong[0]}"
            )
    return tensors


def check_weights(path: Path, source: str, hf_config) -> dict[str, TensorInfo]:
    """Prove the weights match the architecture ``hf_config`` describes, reading headers only.

    The expected tensors come from the model class built on the meta device (no memory, no init).

    Raises:
        CheckpointError: missing, unexpected or wrongly shaped tensors, naming the first few.
    """
    import torch
    from transformers import AutoModelForCausalLM

    tensors = read_tensors(path, source)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if getattr(hf_config, "tie_word_embeddings", False):
        expected.pop("lm_head.weight", None)  # tied: the head reuses the input embedding
    present = {n for n in tensors if not n.endswith(IGNORED_TENSOR_SUFFIXES)}
    problems = []
    missing = sorted(set(expected) - present)
    if missing:
        problems.append(f"missing {len(missing)} tensor(s), e.g. {', '.join(missing[:3])}")
    unexpected = sorted(present - set(expected))
    if unexpected:
        problems.append(
            f"{len(unexpected)} tensor(s) the architecture does not have, e.g. {', '.join(unexpected[:3])}"
        )
    shapes = [
        f"{n} {tensors[n].shape} (config implies {expected[n]})"
        for n in sorted(present & set(expected))
        if tensors[n].shape != expected[n]
    ]
    if shapes:
        problems.append(f"{len(shapes)} tensor(s) with the wrong shape, e.g. {shapes[0]}")
    if problems:
        raise CheckpointError(f"{source}: the weights do not match config.json: " + "; ".join(problems))
    return tensors


def embedding_rows(tensors: dict[str, TensorInfo], source: str) -> int:
    """Rows of the input embedding (the model's vocabulary size as stored)."""
    if EMBEDDING not in tensors:
        raise CheckpointError(f"{source}: no {EMBEDDING} tensor (not a Qwen2/Dream checkpoint?)")
    return tensors[EMBEDDING].shape[0]


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (no copy of multi-GB shards on the same filesystem), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def require_empty_destination(dst: str) -> None:
    if storage.list_files(dst):
        raise FileExistsError(f"{dst} already holds files; write to a new URI (or remove it first)")


def publish_with_weights(
    path: Path, source: str, dst: str, write_rest: Callable[[Path], None]
) -> storage.Manifest:
    """Publish a checkpoint dir at ``dst``: the weight files of ``path`` unchanged, plus what
    ``write_rest(out_dir)`` writes; staged in a temp dir, ``MANIFEST.json`` last."""
    files = weight_files(path, source) + ([INDEX_FILE] if (path / INDEX_FILE).is_file() else [])
    with tempfile.TemporaryDirectory(prefix="checkpoint-") as tmp:
        out = Path(tmp)
        for name in files:
            _link_or_copy(path / name, out / name)
        write_rest(out)
        return storage.put_dir(out, dst)
