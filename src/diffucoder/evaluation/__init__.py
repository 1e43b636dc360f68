"""Evaluation of a model on HumanEval(+)/MBPP(+) and the tiny held-out tasks: pass@k through the
sandbox, AR-ness, and the HTML report (:func:`diffucoder.evaluation.run.run_evaluation`).

Its public names, listed here, resolve on first use (``diffucoder.lazy``).
"""

from diffucoder.lazy import by_module, lazy_exports

_EXPORTS = by_module(
    __name__,
    {
        "config": ("EvaluationConfig",),
        "run": ("run_evaluation",),
    },
)
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
