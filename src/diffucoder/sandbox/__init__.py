"""The code-execution service model-written code runs in: the server, its isolation layers, and
the client that evaluation and GRPO rewards (:mod:`diffucoder.rl.rewards`) call.

Its public names, listed here, resolve on first use (``diffucoder.lazy``); importing the package
loads none of its modules, so a job process pays nothing for them.
"""

from diffucoder.lazy import by_module, lazy_exports

_EXPORTS = by_module(
    __name__,
    {
        "config": ("SandboxConfig",),
        "client": ("Job", "JobResult", "SandboxClient", "SandboxUnavailable"),
        "local": ("local_sandbox",),
    },
)
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
