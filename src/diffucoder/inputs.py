"""Checks of the inputs named on the command line, made before any expensive work.

Loading torch, a model or a benchmark takes seconds; a mistyped ``--model`` path should fail at
once, naming the flag and the path, not after the load or deep inside it.
"""

from __future__ import annotations

from diffucoder import storage


class MissingInputError(FileNotFoundError):
    """An input named on the command line does not exist or is not what the flag expects."""


def require_exists(uri: str, *, flag: str, what: str) -> None:
    """Raise :class:`MissingInputError` unless ``uri`` (a path or ``s3://`` URI) exists."""
    if not storage.exists(uri):
        raise MissingInputError(f"{flag} {uri}: no such {what}")


def require_model(uri: str, *, flag: str = "--model") -> None:
    """Raise :class:`MissingInputError` unless ``uri`` is a saved model (a dir with config.json)."""
    require_exists(uri, flag=flag, what="model (expected a dir or s3:// prefix written by save_model)")
    if not storage.exists(storage.join(uri, "config.json")):
        raise MissingInputError(
            f"{flag} {uri}: not a model: it has no config.json (a stage's model is its final/ dir, "
            "e.g. runs/tiny/instruct/final)"
        )
