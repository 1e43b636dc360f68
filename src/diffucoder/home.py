"""Where relative local paths in a config resolve: the project home, never the current directory.

A config says ``output_root: runs/tiny``; a command started from another directory must still
write to, and read from, the same place. So a relative local path in a config (``output_root``,
``evaluation.data_root``), and the default MLflow store (``mlflow.db``), resolve against:

1. ``$DIFFUCODER_HOME`` when set;
2. else the source checkout this package runs from (an editable install: ``runs/tiny`` is the
   checkout's ``runs/tiny``, as ``make run`` and the README show it);
3. else ``~/diffucoder``.

``s3://`` URIs and absolute paths are used as they are. Paths typed on the command line
(``--out``, ``--output-root``, ``--plot``) are the shell's, relative to the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "DIFFUCODER_HOME"


def project_home() -> Path:
    """The directory relative config paths resolve against (see the module docstring)."""
    if os.environ.get(HOME_ENV, "").strip():
        return Path(os.environ[HOME_ENV]).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "diffucoder").is_dir():
        return checkout
    return Path.home() / "diffucoder"


def resolve_path(uri: str) -> str:
    """A config path made explicit: a URI (``s3://...``) or an absolute path as it is, a relative
    local path under :func:`project_home`."""
    if "://" in uri:
        return uri
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else project_home() / path)
