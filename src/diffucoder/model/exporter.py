"""``diffucoder model export SRC DST --format dream``: a project model as a Dream-format checkpoint.

The directory carries what the released DiffuCoder checkpoints carry:

- ``config.json`` with their fields and ``auto_map`` (:func:`diffucoder.model.dream.dream_config`);
- the weights as safetensors, the project model's files byte for byte (the tensor names are Dream's);
- the tokenizer as ``tokenizer.json`` plus ``vocab.json``/``merges.txt`` and a
  ``tokenizer_config.json`` in the released form (``tokenizer_class: Qwen2Tokenizer``, the chat
  template inline), which transformers 4.x and 5.x load without remote code;
- ``generation_config.json`` with the model's decoding defaults: those it was imported with, else
  :class:`~diffucoder.decoding.config.DecodingConfig`'s (the paper's).

Dream's Python files are Dream's to ship: ``--dream-code DIR`` (a released snapshot such as a
download of apple/DiffuCoder-7B-Instruct) copies them in, after which
``AutoModel.from_pretrained(DST, trust_remote_code=True)`` loads the export the way it loads the
released model. Without them ``auto_map`` names files the directory does not hold.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from diffucoder.model.checkpoint import (
    CheckpointError,
    check_weights,
    publish_with_weights,
    read_config,
    require_empty_destination,
)
from diffucoder.model.dream import (
    DREAM_CODE_FILES,
    GENERATION_DEFAULTS_KEY,
    GENERATION_FIELDS,
    dream_config,
    dream_generation_config,
)

FORMATS = ("dream",)
REQUIRED_CODE = DREAM_CODE_FILES[:2]  # configuration_dream.py, modeling_dream.py


@dataclass(frozen=True)
class ExportResult:
    source: str
    destination: str
    format: str
    files: int
    bytes: int
    code_files: list[str]


def _code_files(dream_code: str) -> list[Path]:
    root = Path(dream_code)
    missing = [name for name in REQUIRED_CODE if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--dream-code {dream_code}: no {', '.join(missing)} (expected the Python files of a released "
            "Dream/DiffuCoder snapshot)"
        )
    return [root / name for name in DREAM_CODE_FILES if (root / name).is_file()]


def _dtype_name(hf_config) -> str:
    dtype = getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None) or "float32"
    return str(dtype).removeprefix("torch.")


def released_tokenizer_config(tokenizer) -> dict:
    """``tokenizer_config.json`` in the released checkpoints' form (no remote code, template inline)."""
    specials = {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    added = {
        str(i): {
            "content": tok.content,
            "lstrip": tok.lstrip,
            "normalized": tok.normalized,
            "rstrip": tok.rstrip,
            "single_word": tok.single_word,
            "special": tok.special,
        }
        for i, tok in sorted(tokenizer.added_tokens_decoder.items())
    }
    roles = {"bos", "eos", "pad", "mask", "unk"}
    role_ids = {getattr(tokenizer, f"{r}_token_id") for r in roles}
    extra = [tokenizer.convert_ids_to_tokens(i) for i in sorted(specials - role_ids) if i is not None]
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": extra,
        "bos_token": tokenizer.bos_token,
        "chat_template": tokenizer.chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": tokenizer.eos_token,
        "errors": "replace",
        "mask_token": tokenizer.mask_token,
        "model_max_length": tokenizer.model_max_length,
        "pad_token": tokenizer.pad_token,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": tokenizer.unk_token,
    }


def _write_tokenizer(tokenizer, out: Path) -> None:
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    tokenizer.backend_tokenizer.model.save(str(out))  # vocab.json + merges.txt (the slow form)
    config = released_tokenizer_config(tokenizer)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))


def export_checkpoint(src: str, dst: str, fmt: str = "dream", dream_code: str | None = None) -> ExportResult:
    """Write the project model at ``src`` to ``dst`` in format ``fmt`` (sealed, MANIFEST.json last).

    Raises:
        ValueError: an unknown format, or ``src`` is not a diffusion model saved by this project.
        FileExistsError: ``dst`` already holds files. Nothing is written on any error.
    """
    from transformers import AutoConfig, __version__

    from diffucoder.data.tokenizer import load_tokenizer
    from diffucoder.decoding.config import DecodingConfig
    from diffucoder.model.io import local_dir

    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: supported: {', '.join(FORMATS)}")
    require_empty_destination(dst)
    code = _code_files(dream_code) if dream_code else []
    with local_dir(src) as path:
        config = read_config(path, src)
        if not config.get("diffusion_lm"):
            raise CheckpointError(
                f"{src}/config.json does not declare diffusion_lm: true; export takes a diffusion model "
                "written by this project (a stage's final/ or an import)"
            )
        hf_config = AutoConfig.from_pretrained(str(path))
        check_weights(path, src, hf_config)
        tokenizer = load_tokenizer(str(path))
        defaults = config.get(GENERATION_DEFAULTS_KEY) or {
            k: getattr(DecodingConfig(), k) for k in GENERATION_FIELDS
        }

        def write_rest(out: Path) -> None:
            dream = dream_config(hf_config, _dtype_name(hf_config), __version__)
            (out / "config.json").write_text(json.dumps(dream, indent=2))
            generation = dream_generation_config(defaults, hf_config, __version__)
            (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
            _write_tokenizer(tokenizer, out)
            for file in code:
                shutil.copyfile(file, out / file.name)

        manifest = publish_with_weights(path, src, dst, write_rest)
    return ExportResult(
        source=src,
        destination=dst,
        format=fmt,
        files=len(manifest.files),
        bytes=sum(f.size for f in manifest.files),
        code_files=[f.name for f in code],
    )
