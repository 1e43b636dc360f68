"""Logging for diffucoder's entry points: the CLIs and the pipeline steps (whose KFP executor has
already set the root logger to INFO)."""

from __future__ import annotations

import logging

# httpx and httpcore log every HTTP request at INFO: against the sandbox that is a line per batch
# of jobs, thousands in a large evaluation, burying the lines that say something. Their warnings
# and errors still show.
PER_REQUEST_LOGGERS = ("httpx", "httpcore")
DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_per_request_logs() -> None:
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(fmt: str = DEFAULT_FORMAT) -> None:
    """INFO to stderr in ``fmt``, without the HTTP clients' per-request lines."""
    logging.basicConfig(level=logging.INFO, format=fmt)
    quiet_per_request_logs()
