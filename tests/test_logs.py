"""The entry points' logging set-up."""

from __future__ import annotations

import logging
import subprocess
import sys


def test_entry_point_logging_keeps_info_but_drops_per_request_http_lines():
    """httpx logs every request at INFO; after ``logs.configure`` its warnings still show, the
    request lines do not, and the project's own INFO lines do."""
    script = (
        "import logging\n"
        "from diffucoder import logs\n"
        "logs.configure('%(name)s %(levelname)s %(message)s')\n"
        "logging.getLogger('httpx').info('HTTP Request: POST /v1/run_batch')\n"
        "logging.getLogger('httpx').warning('a retried connection')\n"
        "logging.getLogger('diffucoder.evaluation').info('evaluating')\n"
    )
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert err.splitlines() == ["httpx WARNING a retried connection", "diffucoder.evaluation INFO evaluating"]
    assert logging.getLogger("httpx").level == logging.NOTSET  # this process's logging is untouched
