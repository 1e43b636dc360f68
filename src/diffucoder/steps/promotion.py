"""The promote step: the registered candidate against the champion."""

from __future__ import annotations

from diffucoder.config import RunConfig


def promote(cfg: RunConfig, parent_run_id: str, version: str) -> str:
    """The pipeline's promote step: candidate vs champion (:func:`diffucoder.ops.promotion.promote`).

    A comparison the rules refuse (different problems, too few of them) does not fail the run: the
    champion stays, and the refusal is recorded as decision ``refused`` with its reason.
    """
    from diffucoder import tracking
    from diffucoder.ops.promotion import PromotionError
    from diffucoder.ops.promotion import promote as decide_and_move

    try:
        decision = decide_and_move(cfg, version=version, run_id=parent_run_id or None)
    except PromotionError as exc:
        tags = {
            "promotion/decision": "refused",
            "promotion/reason": str(exc),
            "promotion/candidate_version": version,
        }
        tracking.set_model_version_tags(cfg.tracking.registered_model_name, version, tags, cfg=cfg.tracking)
        if parent_run_id:
            tracking.set_run_tags(parent_run_id, tags, cfg=cfg.tracking)
        print(f"promotion: refused ({exc})")
        return "refused"
    print(f"promotion: {decision.outcome} ({decision.reason})")
    return decision.outcome
