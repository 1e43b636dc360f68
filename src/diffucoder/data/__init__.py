"""The data stage: code filtering, decontamination and dedup of a corpus
(:func:`diffucoder.data.prepare.prepare`), the tokenizer, and the SFT/RL task formats.

Its public names, listed here, resolve on first use (``diffucoder.lazy``).
"""

from diffucoder.lazy import by_module, lazy_exports

_EXPORTS = by_module(
    __name__,
    {
        "config": ("DataConfig",),
        "filters": ("CodeFilter", "FilterStats"),
        "tokenizer": ("load_tokenizer", "train_tokenizer"),
    },
)
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
