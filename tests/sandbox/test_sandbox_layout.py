"""The sandbox runs from any layout: a venv, the package source and TMPDIR under /tmp, under a 0700
home, on a read-only mount; a layout that cannot work fails at server start, naming the path.

The session server itself (conftest.py) runs from a venv under /tmp, so every sandbox test, the
hostile suite included, exercises the binds that bring the runtime back into each slot.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from sandbox_helpers import containment_facts, project_venv, venv_site_packages

from diffucoder.sandbox import harness, layout, slot_setup
from diffucoder.sandbox.client import Job, SandboxClient, SandboxUnavailable
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import local_sandbox
from diffucoder.sandbox.pool import ExecutorPool, SlotError

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only a root server drops the code to sandbox uids")


@pytest.fixture
def private_home() -> Path:
    """A directory like a home with mode 0700, outside /tmp (so only its mode hides it)."""
    home = Path(tempfile.mkdtemp(prefix="diffucoder-home-", dir="/var/tmp"))
    yield home
    shutil.rmtree(home)


def slot_view(client: SandboxClient, path: str) -> Path:
    """``path`` as slot 0 sees it: through /proc/<executor>/root, its mount namespace's root."""
    (slot_pid,) = client.health()["slot_pids"][:1]
    for pid in _descendants(slot_pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        # bubblewrap's own processes carry the executor's command line too, but live outside
        if b"diffucoder.sandbox.executor" in argv and not argv[0].endswith(b"bwrap"):
            return Path(f"/proc/{pid}/root{path}")
    raise AssertionError(f"no executor below slot process {slot_pid}")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rfind(b")") + 2 :].split()[1]), []).append(int(name))
    found, stack = [], [root]
    while stack:
        found.append(pid := stack.pop())
        stack.extend(children.get(pid, []))
    return found


def test_discovery_measures_what_a_slot_reads():
    paths = set(layout.discover().paths)
    assert {sys.executable, os.path.realpath(sys.executable), sys.prefix, sys.base_prefix} <= paths
    assert layout.package_root() in paths and os.path.dirname(harness.__file__) in paths
    assert any(os.path.basename(p).startswith("libseccomp.so") for p in paths)  # mapped by the executor
    # neither the working directory nor a whole private mount is ever a runtime path
    assert not {"/", "/tmp", os.getcwd()} & paths


def test_an_unusable_interpreter_is_named(tmp_path):
    with pytest.raises(layout.SandboxLayoutError, match="'python3' is unusable"):
        layout.discover("python3")
    missing = str(tmp_path / "gone" / "python")
    with pytest.raises(layout.SandboxLayoutError, match=f"interpreter {missing} is unusable"):
        layout.discover(missing)
    # a real interpreter without the sandbox's dependencies
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = str(tmp_path / "bare" / "bin" / "python")
    with pytest.raises(layout.SandboxLayoutError, match=f"interpreter {bare} cannot import") as err:
        layout.discover(bare)
    assert "ModuleNotFoundError" in str(err.value)


def test_binds_bring_back_only_the_runtime(private_home):
    clone = Path(tempfile.mkdtemp(prefix="diffucoder-clone-", dir="/tmp"))
    try:
        venv, home_venv = clone / "x" / ".venv", private_home / "proj" / ".venv"
        for d in (venv / "lib", home_venv):
            d.mkdir(parents=True)
        args = layout.bwrap_binds([str(venv), str(venv / "lib"), str(home_venv), "/usr/lib"])
        assert args == [
            *("--perms", "0755", "--tmpfs", str(private_home)),  # the 0700 dir: an empty tmpfs over it
            *("--perms", "0755", "--dir", str(clone)),  # world-traversable, unlike bwrap's own 0700
            *("--perms", "0755", "--dir", str(clone / "x")),
            *("--ro-bind", str(venv), str(venv)),  # its lib/ comes with it; /usr/lib is visible anyway
            *("--perms", "0755", "--dir", str(private_home / "proj")),
            *("--ro-bind", str(home_venv), str(home_venv)),
        ]
    finally:
        shutil.rmtree(clone)


# the host server only: it runs from runtime_root (the image runs from its own /opt/venv)
@pytest.mark.parametrize("sandbox_server", ["host"], indirect=True)
def test_slots_see_the_runtime_under_tmp_and_nothing_else_there(contained_client, runtime_root):
    """The session server runs from a venv under /tmp: each slot's /tmp holds that runtime (read
    only) and the slot's own job dirs; sibling files of the runtime and the rest of /tmp are absent."""
    sibling = runtime_root / "notes.txt"
    sibling.write_text("not part of the runtime\n")
    fd, loose = tempfile.mkstemp(prefix="diffucoder-host-", dir="/tmp")
    os.close(fd)
    # what the server's runtime holds under /tmp: the venv, the package copy and, from a clone
    # under /tmp, the clone's own site-packages (project_venv points a .pth at it)
    deps = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    runtime = [runtime_root / "venv", runtime_root / "src", *(d for d in deps if d.is_relative_to("/tmp"))]
    try:
        # every directory on the way holds nothing but the way on
        expected: dict[Path, set[str]] = {}
        for path in runtime:
            for parent, child in zip(path.parents, [path, *path.parents], strict=False):
                if parent == Path("/"):
                    break
                expected.setdefault(parent, set()).add(child.name)
        for directory, names in expected.items():
            seen = set(os.listdir(slot_view(contained_client, str(directory))))
            if directory == Path("/tmp"):  # plus the slot's own job directory root
                job_roots = {n for n in seen if n.startswith("diffucoder-sandbox-")}
                assert len(job_roots) == 1
                seen -= job_roots
            assert seen == names, directory
        assert not slot_view(contained_client, str(sibling)).exists()
        assert not slot_view(contained_client, loose).exists()
        code = (
            "import os\ndef where():\n    return os.getcwd()\n"
            "def write(path):\n    try:\n        open(path, 'w').write('x')\n        return 'written'\n"
            "    except OSError as e:\n        return type(e).__name__\n"
        )
        cwd = contained_client.run(Job(code=code, entry_point="where", inputs=[[]])).outputs[0]
        assert cwd.startswith("/tmp/diffucoder-sandbox-")  # the slot's private /tmp, not the server's TMPDIR
        pyvenv = str(runtime_root / "venv" / "pyvenv.cfg")
        assert (
            contained_client.run(Job(code=code, entry_point="write", inputs=[[pyvenv]])).outputs[0]
            != "written"
        )
    finally:
        sibling.unlink()
        os.unlink(loose)


@root_only
def test_a_venv_in_a_private_home_runs_under_bubblewrap(private_home):
    python = project_venv(private_home)
    (venv_site_packages(private_home) / "layout_marker.py").write_text("VALUE = 42\n")
    cfg = SandboxConfig(workers=1, sandbox_uid_base=62600)
    with local_sandbox(cfg, python=str(python)) as url:
        client = SandboxClient(url, cfg)
        assert client.health()["layers"]["bubblewrap"] is True
        code = "def marker():\n    import layout_marker\n    return layout_marker.VALUE\n"
        # the code, as the sandbox uid, imports a module from the venv inside the 0700 directory
        assert client.run(Job(code=code, entry_point="marker", inputs=[[]])).outputs == [42]
        assert containment_facts(client)["uid"] == 62600


@root_only
def test_a_layout_the_sandbox_uid_cannot_read_is_refused_naming_the_directory(private_home, monkeypatch):
    python = project_venv(private_home)
    cfg = SandboxConfig(workers=2, sandbox_uid_base=62700, bubblewrap=False)
    with pytest.raises(SandboxUnavailable) as err, local_sandbox(cfg, python=str(python)):
        pass
    message = str(err.value)
    assert f"is stopped at {private_home} (mode 0700) on the way to" in message
    assert "cannot run code from this layout" in message
    # --insecure-dev serves anyway (never for untrusted code) and says what is missing
    server_tmp = Path(tempfile.mkdtemp(prefix="diffucoder-tmpdir-", dir="/tmp"))
    try:
        server_tmp.chmod(0o711)
        monkeypatch.setenv("TMPDIR", str(server_tmp))
        with (
            local_sandbox(cfg, insecure_dev=True, python=str(python)) as url,
            SandboxClient(url, cfg) as client,
        ):
            health = client.health()
            assert (
                health["layers"]["runtime_readable"] is False and health["mandatory_layers_active"] is False
            )
            # without bubblewrap each slot keeps its job dirs under TMPDIR/diffucoder-sandbox-<pid> ...
            assert len(list(server_tmp.glob("diffucoder-sandbox-*"))) == 2
        # ... and removes it when its server stops
        assert list(server_tmp.glob("diffucoder-sandbox-*")) == []
    finally:
        shutil.rmtree(server_tmp)


@root_only
def test_a_tmpdir_the_sandbox_uid_cannot_enter_is_refused(monkeypatch):
    """Without bubblewrap the job dirs live under the server's TMPDIR, which the uid must traverse."""
    private_tmp = tempfile.mkdtemp(prefix="diffucoder-tmpdir-", dir="/tmp")  # 0700
    try:
        monkeypatch.setenv("TMPDIR", private_tmp)
        cfg = SandboxConfig(workers=1, sandbox_uid_base=62800, bubblewrap=False)
        with pytest.raises(SandboxUnavailable) as err, local_sandbox(cfg):
            pass
        assert f"is stopped at {private_tmp} (mode 0700) on the way to its job directories" in str(err.value)
        assert "set TMPDIR" in str(err.value)
    finally:
        shutil.rmtree(private_tmp)


@root_only
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a_runtime_on_a_read_only_mount(tmp_path):
    """Server, venv and package on a read-only bind mount (in a private mount namespace)."""
    root = Path(tempfile.mkdtemp(prefix="diffucoder-ro-", dir="/tmp"))
    try:
        python = project_venv(root)
        driver = root / "driver.py"
        driver.write_text(
            "import json, os\n"
            "from diffucoder.sandbox.client import Job, SandboxClient\n"
            "from diffucoder.sandbox.config import SandboxConfig\n"
            "from diffucoder.sandbox.local import local_sandbox\n"
            f"print(json.dumps(os.access({str(root)!r}, os.W_OK)))\n"
            "cfg = SandboxConfig(workers=1, sandbox_uid_base=62900)\n"
            "with local_sandbox(cfg) as url:\n"
            "    r = SandboxClient(url, cfg).run(Job(code='x = 1', tests=['assert x == 1']))\n"
            "print(json.dumps([r.verdicts, r.infra_error]))\n"
        )
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" "$3"'
        out = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                root,
                python,
                driver,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        writable, result = (json.loads(line) for line in out.stdout.splitlines()[-2:])
        assert writable is False and result == [["passed"], None]
    finally:
        shutil.rmtree(root)


def test_a_hidden_interpreter_fails_at_start_naming_it(runtime_root):
    """Without the binds, a slot's bubblewrap cannot even exec a venv's python under /tmp: the start
    fails with bubblewrap's own message (the interpreter path), not a bare "slot exited"."""
    runtime = layout.RuntimeLayout(
        interpreter=str(runtime_root / "venv" / "bin" / "python"),
        package_root=str(runtime_root / "src"),
        paths=(),
    )
    bwrap = slot_setup.bwrap_command([])
    if bwrap is None:
        pytest.skip("bubblewrap cannot create namespaces on this host")
    pool = ExecutorPool(SandboxConfig(workers=1, sandbox_uid_base=63100), runtime, bwrap)
    with pytest.raises(SlotError, match=f"execvp {runtime.interpreter}: No such file or directory"):
        asyncio.run(pool.start())
