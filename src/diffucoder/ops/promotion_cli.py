"""``diffucoder model promote|rollback``: move the registry's ``champion`` alias by hand.

    diffucoder model promote --config tiny [--version 7] [--tracking-uri URI] [promotion.margin=0.02]
    diffucoder model rollback --config tiny [--to 3]

``promote`` applies the same paired comparison as the pipeline's promote step (``promotion``
section) to the ``candidate`` (or ``--version``) and prints the decision; ``rollback`` points
``champion`` at the previous champion (or ``--to``).
"""

from __future__ import annotations

import argparse


def _config(args: argparse.Namespace):
    from diffucoder.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.tracking_uri:
        cfg.tracking.tracking_uri = args.tracking_uri
    return cfg


def _promote(args: argparse.Namespace) -> int:
    from diffucoder.ops.promotion import promote

    decision = promote(_config(args), version=args.version)
    print(f"{decision.outcome}: version {decision.candidate_version} ({decision.reason})")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from diffucoder.ops.promotion import rollback

    old, new = rollback(_config(args), to_version=args.to)
    print(f"champion: version {old} -> version {new}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="tiny", help="preset or YAML: tracking + promotion sections")
    p.add_argument("--tracking-uri", default=None, help="default: the config's, else $MLFLOW_TRACKING_URI")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")


def register(inner: argparse._SubParsersAction) -> None:
    p = inner.add_parser("promote", help="candidate vs champion on the same held-out problems; move champion")
    _common(p)
    p.add_argument("--version", default=None, help="compare this version instead of the candidate alias")
    p.set_defaults(func=_promote)
    p = inner.add_parser("rollback", help="point champion back at the previous champion")
    _common(p)
    p.add_argument("--to", default=None, help="a specific version instead of the previous champion")
    p.set_defaults(func=_rollback)
