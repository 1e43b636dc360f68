"""Which kind of model a ``config.json`` describes, and refusals that name the fix.

Three kinds reach the platform: a project diffusion model (``diffusion_lm: true``, written by
``save_model`` or ``diffucoder model import``), a released Dream-architecture checkpoint
(``model_type: Dream``, which must be imported first) and a plain causal LM (a base to convert).
Reading only ``config.json`` keeps these checks cheap enough to run before any compute, e.g. when a
pipeline run opens, and before a multi-GB download.
"""

from __future__ import annotations

import json

from diffucoder import storage
from diffucoder.model.dream import is_dream

SUPPORTED_BASE_TYPES = ("qwen2",)


def peek_config(uri: str) -> dict | None:
    """``config.json`` at ``uri`` without fetching the model (None when absent or unreadable)."""
    config_uri = storage.join(uri, "config.json")
    if not storage.exists(config_uri):
        return None
    try:
        config = json.loads(storage.read_text(config_uri))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return config if isinstance(config, dict) else None


def require_diffusion(config: dict, uri: str) -> None:
    """A project diffusion model; a Dream checkpoint is told to import, a causal LM to convert."""
    if is_dream(config):
        raise ValueError(
            f"{uri} is a Dream-format checkpoint (model_type {config.get('model_type')!r}), not yet a "
            f"diffucoder model; import it first: diffucoder model import {uri} DST, then use DST"
        )
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


def require_convertible_base(config: dict, uri: str) -> None:
    """A plain causal LM of a supported type (``model.base_model_uri``)."""
    if config.get("diffusion_lm"):
        raise ValueError(
            f"model.base_model_uri={uri!r} is already a diffusion model; start a stage from it "
            "(--init / start_model_uri) instead of converting it again"
        )
    if is_dream(config):
        raise ValueError(
            f"model.base_model_uri={uri!r} is a Dream-architecture diffusion checkpoint; import it "
            f"(diffucoder model import {uri} DST) and start a stage from DST instead of converting it"
        )
    if config.get("model_type") not in SUPPORTED_BASE_TYPES:
        raise ValueError(
            f"model.base_model_uri={uri!r} is a {config.get('model_type')!r} model; "
            f"supported: {', '.join(SUPPORTED_BASE_TYPES)}"
        )


def check_sealed_model(uri: str, setting: str, *, base: bool) -> None:
    """``uri`` is a complete project artifact of the right kind (a base to convert, or a diffusion model).

    Raises:
        FileNotFoundError / storage.IncompleteArtifactError / ValueError: naming ``setting`` and the fix.
    """
    config = peek_config(uri)
    if config is None:
        raise FileNotFoundError(f"{setting}={uri}: no config.json there (not a model directory)")
    if is_dream(config) or not storage.is_complete(uri):
        raise storage.IncompleteArtifactError(
            f"{setting}={uri}: not an imported model (no MANIFEST.json, or a released format); "
            f"import it first: diffucoder model import SRC {uri}"
        )
    (require_convertible_base if base else require_diffusion)(config, uri)
