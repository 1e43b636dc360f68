"""No tracked file refers to anything outside the checkout.

A clone on its own must build, test and run, and so must a wheel or an image made from it. This scans
every tracked text file for what has broken that before: the sibling ``shared`` folder and the notes
in it, machine-specific absolute paths, and relative paths that climb out of the repository (Markdown
links, kustomization entries, ``Path(__file__)`` arithmetic in Python, symlinks).
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = PurePosixPath(Path(__file__).relative_to(REPO_ROOT).as_posix())  # its examples would match

# Third-party data copied in verbatim (their READMEs are ours and are scanned).
VENDORED = (PurePosixPath("src/diffucoder/benchmark_data"), PurePosixPath("tests/k8s/crds"))

# (pattern, what it is); patterns are written so that this file's source does not match them.
TEXT_RULES = [
    (re.compile(r"(^|\.\./+|[\s`'\"(])shared/|\.\./+shared\b"), "the sibling shared folder"),
    (re.compile(r"\bshared/+(data|reference)\b"), "the shared data or notes folder"),
    (re.compile(r"\bSTYLE(\.md)?,?\s+rule"), "a style-note rule number"),
    (re.compile(r"\breference\s+(§|notes\b)"), "a citation of the design notes"),
    (
        re.compile(r"\b(kfp|data|sandbox|containers|diffucoder)\.md,?\s+(§|section\s+)?\d"),
        "a section of a design note",
    ),
    (re.compile(r"(^|[\s\"'`(=:,\[])/wor[k]/"), "an absolute path on the development machine"),
    (re.compile(r"(^|[\s\"'`(=:,\[])/home/(?!diffucoder\b)[\w.-]+"), "a user's home directory"),
    (re.compile(r"(^|[\s\"'`(=:,\[])/Users/[\w.-]+"), "a user's home directory"),
]

MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)")
FILE_ANCESTOR = re.compile(
    r"Path\(__file__\)(?:\.resolve\(\)|\.absolute\(\))?"
    r"(?P<chain>(?:\.parent\b)+|\.parents\[(?P<index>\d+)\])(?P<more>(?:\.parent\b)*)"
)
UP_FROM_ROOT = re.compile(r"\b(REPO|REPO_ROOT|ROOT|PROJECT_ROOT)\.parents?\b|/\s*[\"']\.\.[\"']")
KUSTOMIZE_KEYS = ("resources", "components", "bases")


def escapes(base: PurePosixPath, target: str) -> bool:
    """Whether ``target``, relative to directory ``base`` of the repo, leaves the repo."""
    return posixpath.normpath(posixpath.join(str(base), target)).split("/")[0] == ".."


def text_findings(path: PurePosixPath, text: str) -> list[str]:
    """``path:line: what`` for each reference outside the repo in one file's text."""
    found = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        found += [
            f"{path}:{lineno}: {what}: {line.strip()[:120]}" for rx, what in TEXT_RULES if rx.search(line)
        ]
        if path.suffix == ".md":
            for target in MARKDOWN_LINK.findall(line):
                if not re.match(r"[a-z][a-z0-9+.-]*:|#", target) and escapes(path.parent, target.lstrip("/")):
                    found.append(f"{path}:{lineno}: link out of the repo: {target}")
        if path.suffix == ".py":
            found += _python_findings(path, lineno, line)
    if path.name in ("kustomization.yaml", "kustomization.yml"):
        found += _kustomize_findings(path, text)
    return found


def _python_findings(path: PurePosixPath, lineno: int, line: str) -> list[str]:
    found = []
    for m in FILE_ANCESTOR.finditer(line):
        up = int(m["index"]) + 1 if m["index"] is not None else m["chain"].count(".parent")
        up += m["more"].count(".parent")
        if up > len(path.parts):  # tests/conftest.py: two parents up is the repo root
            found.append(f"{path}:{lineno}: Path(__file__) climbs {up} levels, above the repo root")
    if UP_FROM_ROOT.search(line):
        found.append(f"{path}:{lineno}: a path above the repo root: {line.strip()[:120]}")
    return found


def _kustomize_findings(path: PurePosixPath, text: str) -> list[str]:
    doc = yaml.safe_load(text) or {}
    entries = [e for key in KUSTOMIZE_KEYS for e in doc.get(key) or []]
    entries += [p["path"] for p in doc.get("patches") or [] if isinstance(p, dict) and "path" in p]
    return [
        f"{path}: kustomize entry out of the repo: {e}"
        for e in entries
        if "://" not in e and escapes(path.parent, e)
    ]


def tracked_files() -> list[tuple[str, PurePosixPath]]:
    """(git mode, path) of every tracked file."""
    proc = subprocess.run(
        ["git", "ls-files", "-s", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"this check needs the git checkout: git ls-files failed in {REPO_ROOT}: {proc.stderr}")
    rows = [entry.split("\t", 1) for entry in proc.stdout.split("\0") if entry]
    return [(meta.split()[0], PurePosixPath(name)) for meta, name in rows]


def test_no_tracked_file_refers_outside_the_checkout():
    found = []
    files = tracked_files()
    assert len(files) > 100
    for mode, path in files:
        if path == THIS_FILE or (any(v in path.parents for v in VENDORED) and path.name != "README.md"):
            continue
        if mode == "120000":  # a symlink: its target is its content
            target = os.readlink(REPO_ROOT / path)
            if os.path.isabs(target) or escapes(path.parent, target):
                found.append(f"{path}: symlink out of the repo: {target}")
            continue
        data = (REPO_ROOT / path).read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        found += text_findings(path, data.decode("utf-8", errors="replace"))
    assert found == [], "tracked files refer to things outside the checkout:\n" + "\n".join(found)


# The offending paths are assembled from parts so that this file does not itself hold them (other
# scanners of the repository would flag the literals).
UP, SHARED, WORK = "..", "shared", "work"


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("src/x.py", f'DATA = "{UP}/{SHARED}/data"'),
        ("docs/a.md", "See shared/reference/kfp.md."),
        ("BENCHMARKS.md", "(`git clone` next to `shared/`, then `make run`)"),
        ("src/x.py", "# keep components thin (STYLE rule 10)"),
        ("src/x.py", '"""Loss (reference §1.3)."""'),
        ("docs/a.md", "as the reference notes say"),
        ("src/x.py", "# reference data.md 1.8"),
        ("Makefile", f"DATA ?= /{WORK}/{SHARED}/data"),
        ("docs/a.md", "cd /home/alice/src/diffucoder"),
        ("docs/a.md", "[notes](../../notes.md)"),
        ("tests/k8s/conftest.py", 'CRDS = Path(__file__).resolve().parents[3] / "crds"'),
        ("tests/conftest.py", "ROOT = Path(__file__).parent.parent.parent"),
        ("tests/conftest.py", 'DATA = REPO_ROOT.parent / "data"'),
        ("benchmarks/b.py", 'DATA = (REPO / ".." / "data")'),
        ("manifests/overlays/x/kustomization.yaml", "resources:\n  - ../../../../other-repo/base\n"),
    ],
)
def test_the_scan_catches_references_outside(path, text):
    assert text_findings(PurePosixPath(path), text) != []


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("docs/a.md", "[sandbox](sandbox.md), [deploy](../README.md#run) and [kfp](https://kubeflow.org/)"),
        ("docs/a.md", "DeepSpeed caches its op in `~/.cache/torch_extensions`."),
        ("images/x/Dockerfile", "WORKDIR /home/diffucoder"),
        ("src/x.py", f"reads `<data_root>/{WORK}/` and docs/sandbox.md"),
        ("tests/k8s/conftest.py", "REPO_ROOT = Path(__file__).resolve().parents[2]"),
        ("tests/conftest.py", "HERE = Path(__file__).parent.parent"),
        ("src/x.py", 'if ".." in parts: raise ValueError(path)'),
        (
            "manifests/overlays/local/kustomization.yaml",
            "resources:\n  - ../../base\ncomponents:\n  - ../../components/x\n",
        ),
    ],
)
def test_the_scan_leaves_paths_inside_the_repo_alone(path, text):
    assert text_findings(PurePosixPath(path), text) == []
