"""Save and load diffusion LMs as HF model dirs (safetensors + config + tokenizer), locally or on S3.

A saved model is a directory artifact: written to a temp dir, sealed with ``MANIFEST.json`` and
published through :mod:`diffucoder.storage`, so a reader never sees a half-written model.
``load_model`` refuses a checkpoint whose ``config.json`` does not declare ``diffusion_lm: true``:
running a plain causal LM bidirectionally would silently produce garbage. Converting a causal LM is
an explicit step (``build_model`` with ``model.base_model_uri``), and so is taking in a released
Dream/DiffuCoder checkpoint (``diffucoder model import``, :mod:`diffucoder.model.importer`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from diffucoder import storage
from diffucoder.model.checkpoint import read_config
from diffucoder.model.diffusion_lm import DiffusionLM
from diffucoder.model.kinds import peek_config, require_diffusion


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
        ValueError: the checkpoint is not declared a diffusion LM (a Dream checkpoint: the message
            names the import command), or tokenizer and model disagree.
        diffucoder.storage.IncompleteArtifactError: no MANIFEST.json.
    """
    from diffucoder.data.tokenizer import load_tokenizer

    peeked = peek_config(uri)
    if peeked is not None:  # a wrong kind of checkpoint is named before anything is downloaded
        require_diffusion(peeked, uri)
    with local_dir(uri) as path:
        config = read_config(path, uri)
        require_diffusion(config, uri)
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
