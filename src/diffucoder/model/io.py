"""Save and load diffusion LMs as HF model dirs (safetensors + config + tokenizer), locally or on S3.

A saved model is a directory artifact: written to a temp dir, sealed with ``MANIFEST.json`` and
published through :mod:`diffucoder.storage`, so a reader never sees a half-written model.
``load_model`` refuses a checkpoint whose ``config.json`` does not declare ``diffusion_lm: true``:
running a plain causal LM bidirectionally would silently produce garbage. Converting a causal LM is
an explicit step (``build_model`` with ``model.base_model_uri``).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from diffucoder import storage
from diffucoder.model.diffusion_lm import DiffusionLM


@contextlib.contextmanager
def local_dir(uri: str, require_manifest: bool = True) -> Iterator[Path]:
    """Yield a local directory holding the artifact at ``uri`` (downloaded to a temp dir if remote).

    Raises:
        diffucoder.storage.IncompleteArtifactError: ``require_manifest`` and the dir is not sealed.
        FileNotFoundError: a local path that does not exist.
    """
    if storage.is_s3(uri):
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            yield storage.get_dir(uri, tmp)  # raises IncompleteArtifactError without a manifest
        return
    path = Path(uri)
    if not path.is_dir():
        raise FileNotFoundError(f"{uri}: no such model directory")
    if require_manifest and not storage.is_complete(uri):
        raise storage.IncompleteArtifactError(
            f"{uri}: model dir has no MANIFEST.json, so it is incomplete (interrupted save?)"
        )
    yield path


def save_model(model: DiffusionLM, tokenizer: PreTrainedTokenizerBase, uri: str) -> None:
    """Write the model (safetensors), its config and the tokenizer to ``uri``; MANIFEST.json last."""
    if not getattr(model.hf.config, "diffusion_lm", False):
        raise ValueError("model config does not declare diffusion_lm; build it with build_model()")
    if tokenizer.mask_token_id != model.mask_token_id:
        raise ValueError(
            f"tokenizer mask id {tokenizer.mask_token_id} != model mask id {model.mask_token_id}; "
            "saving them together would corrupt the artifact"
        )
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        model.hf.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        storage.put_dir(tmp, uri)  # files first, MANIFEST.json last


def _check_declared(config: dict, uri: str) -> None:
    if not config.get("diffusion_lm"):
        raise ValueError(
            f"{uri}/config.json does not declare diffusion_lm: true; it is a plain causal LM. "
            "Convert it explicitly with build_model(ModelConfig(base_model_uri=...), tokenizer)."
        )
    if config.get("diffusion_shift") != "ar":
        raise ValueError(
            f"{uri}/config.json: diffusion_shift={config.get('diffusion_shift')!r}, expected 'ar'"
        )
    for field in ("mask_token_id", "pad_token_id", "eos_token_id"):
        if config.get(field) is None:
            raise ValueError(f"{uri}/config.json: missing {field}")


def load_model(
    uri: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    attn_implementation: str = "sdpa",
) -> tuple[DiffusionLM, PreTrainedTokenizerBase]:
    """Load a model saved by :func:`save_model` from a dir or ``s3://`` URI.

    Args:
        uri: the model dir/URI.
        device: where to put the model.
        dtype: override the saved parameter dtype (None keeps it).
        attn_implementation: "sdpa", "sdpa_fp32" or "eager" (``model.attn_implementation``).

    Returns:
        (model in eval mode, tokenizer)

    Raises:
        ValueError: the checkpoint is not declared a diffusion LM, or tokenizer and model disagree.
        diffucoder.storage.IncompleteArtifactError: no MANIFEST.json.
    """
    from diffucoder.data.tokenizer import load_tokenizer

    with local_dir(uri) as path:
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{uri}: no config.json (not an HF model dir)")
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{uri}/config.json: invalid JSON: {exc}") from exc
        _check_declared(config, uri)
        kwargs = {"attn_implementation": attn_implementation}
        if dtype is not None:
            kwargs["dtype"] = dtype
        else:
            kwargs["dtype"] = "auto"
        hf = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        tokenizer = load_tokenizer(str(path))
    if tokenizer.mask_token_id != config["mask_token_id"] or tokenizer.pad_token_id != config["pad_token_id"]:
        raise ValueError(
            f"{uri}: tokenizer (mask {tokenizer.mask_token_id}, pad {tokenizer.pad_token_id}) disagrees with "
            f"config.json (mask {config['mask_token_id']}, pad {config['pad_token_id']})"
        )
    model = DiffusionLM(hf).to(device)
    model.eval()
    return model, tokenizer
