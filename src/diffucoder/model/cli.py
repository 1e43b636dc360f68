"""``diffucoder model import|export|add-pad``: released checkpoints in, Dream-format checkpoints out.

diffucoder model import apple/DiffuCoder-7B-Instruct s3://bucket/models/DiffuCoder-7B-Instruct
diffucoder model import ./Qwen2.5-Coder-7B s3://bucket/models/Qwen2.5-Coder-7B
diffucoder model export s3://bucket/runs/x/grpo/final ./export --format dream --dream-code ./dc-snapshot
diffucoder model add-pad s3://bucket/models/DiffuCoder-7B-Base s3://bucket/models/DiffuCoder-7B-Base-dlm-pad
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def _import(args: argparse.Namespace) -> int:
    from diffucoder.model.importer import import_checkpoint

    result = import_checkpoint(args.src, args.dst)
    print(json.dumps(asdict(result), indent=1))
    return 0


def _export(args: argparse.Namespace) -> int:
    from diffucoder.model.exporter import export_checkpoint

    result = export_checkpoint(args.src, args.dst, args.format, dream_code=args.dream_code)
    print(json.dumps(asdict(result), indent=1))
    if not result.code_files:
        print(
            "note: config.json's auto_map names Dream's configuration_dream.py and modeling_dream.py; "
            "copy them in (or pass --dream-code) before AutoModel.from_pretrained(..., trust_remote_code=True)"
        )
    return 0


def _add_pad(args: argparse.Namespace) -> int:
    from diffucoder.model.pad_token import add_pad_token

    result = add_pad_token(args.src, args.dst, args.token)
    print(json.dumps(asdict(result), indent=1))
    return 0


def register(inner: argparse._SubParsersAction) -> None:
    """Add import/export/add-pad to the ``model`` group (:mod:`diffucoder.model_cli`)."""
    p = inner.add_parser(
        "import",
        help="check a Dream/DiffuCoder or Qwen2 checkpoint and write it as a sealed project model",
        description="SRC: a local dir, an s3:// prefix holding a downloaded snapshot, or a Hugging Face "
        "hub id (needs the network). DST: a new local dir or s3:// URI.",
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=_import)

    p = inner.add_parser("export", help="write a project model as a released-format checkpoint")
    p.add_argument("src", help="a project model (a stage's final/ or an import)")
    p.add_argument("dst")
    p.add_argument("--format", default="dream", choices=["dream"])
    p.add_argument(
        "--dream-code",
        default=None,
        metavar="DIR",
        help="copy Dream's configuration_dream.py, modeling_dream.py, generation_utils.py from DIR",
    )
    p.set_defaults(func=_export)

    p = inner.add_parser(
        "add-pad",
        help="write a project model with its own pad token (DiffuCoder-Instruct's recipe) for stage 3",
        description="Appends TOKEN (when the vocabulary lacks it) as the pad token, its embedding rows at "
        "the mean of the others, and writes the result to DST; every other weight is unchanged.",
    )
    p.add_argument("src", help="a project model (an import such as DiffuCoder-7B-Base)")
    p.add_argument("dst")
    p.add_argument("--token", default="<|dlm_pad|>", help="the pad token (default: %(default)s)")
    p.set_defaults(func=_add_pad)
