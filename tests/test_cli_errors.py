"""The ``diffucoder`` command as a user meets it: errors, --debug, --version, --help.

Every test runs the real console entry point in a fresh interpreter, so what it checks is what a
terminal shows (stdout, stderr, exit status) and which modules a command imported.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path


def _cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diffucoder.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_mistyped_config_key_gets_one_line_with_a_suggestion() -> None:
    proc = _cli("config", "show", "--config", "tiny", "grpo.betta=0.02")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = _error_lines(proc)
    assert lines[0] == "diffucoder: error: invalid config 'tiny':"
    assert lines[1:] == ["  grpo.betta: unknown key; did you mean 'beta'?"]


def test_nested_key_suggestion_comes_from_its_own_section() -> None:
    proc = _cli("config", "show", "data.pack.seq_lenn=64", "data.tiny_tasks.zzz=1")
    assert proc.returncode == 2
    assert "  data.pack.seq_lenn: unknown key; did you mean 'seq_len'?" in proc.stderr
    # nothing close: no guess
    assert "  data.tiny_tasks.zzz: unknown key\n" in proc.stderr


def test_mistyped_preset_is_named_with_a_suggestion() -> None:
    proc = _cli("config", "show", "--config", "tinny")
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "diffucoder: error: config 'tinny' is neither a preset (tiny, smoke, paper-7b) nor a file; "
        "did you mean 'tiny'?"
    ]


def test_debug_shows_the_traceback_wherever_it_is_written() -> None:
    proc = _cli("config", "show", "grpo.betta=0.02", "--debug")
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "diffucoder.config.ConfigError: invalid config 'tiny'" in proc.stderr


def test_evaluate_a_missing_model_fails_before_loading_anything(tmp_path: Path) -> None:
    """No config printout, no torch, no benchmark read: just the flag and the path."""
    missing = tmp_path / "nonexistent"
    code = (
        "import sys; from diffucoder.cli import main; "
        f"rc = main(['evaluate', '--model', {str(missing)!r}, '--out', {str(tmp_path / 'out')!r}]); "
        "print('torch' in sys.modules, rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.stdout.split() == ["False", "2"]
    assert _error_lines(proc) == [
        f"diffucoder: error: --model {missing}: no such model (expected a dir or s3:// prefix written by "
        "save_model)"
    ]
    assert not (tmp_path / "out").exists()


def test_evaluate_a_dir_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "final").mkdir()
    proc = _cli("evaluate", "--model", str(tmp_path / "final"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"--model {tmp_path / 'final'}: not a model: it has no config.json" in proc.stderr
    assert proc.stdout == ""


def test_train_names_missing_data_and_init(tmp_path: Path) -> None:
    proc = _cli("train", "--stage", "pretrain", "--data", str(tmp_path / "packed"), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert _error_lines(proc) == [f"diffucoder: error: --data {tmp_path / 'packed'}: no such training data"]
    data = tmp_path / "sft.jsonl"
    data.write_text("{}\n")
    proc = _cli(
        "train",
        "--stage",
        "instruct",
        "--data",
        str(data),
        "--init",
        str(tmp_path / "mid"),
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 2
    assert f"--init {tmp_path / 'mid'}: no such model" in proc.stderr


def test_unreachable_object_store_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    proc = _cli("evaluate", "--model", "s3://models/instruct/final", "--out", str(tmp_path), env=env)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = _error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("diffucoder: error: ")
    assert f"127.0.0.1:{port}" in lines[0] or "s3://models" in lines[0]


def test_version_is_the_installed_one() -> None:
    proc = _cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"diffucoder {version('diffucoder')}"


def test_help_speaks_to_users_with_examples() -> None:
    top = _cli("--help")
    assert top.returncode == 0
    assert "examples:" in top.stdout and "diffucoder pipeline run-local --preset tiny" in top.stdout
    assert "--debug" in top.stdout and "--version" in top.stdout
    assert "``" not in top.stdout and ":class:" not in top.stdout  # no reStructuredText
    evaluate = _cli("evaluate", "--help")
    assert "examples:" in evaluate.stdout and "diffucoder evaluate --model" in evaluate.stdout
    assert "tiny, smoke, paper-7b" in evaluate.stdout  # --config lists the presets


def test_run_local_help_lists_the_presets() -> None:
    proc = _cli("pipeline", "run-local", "--help")
    assert proc.returncode == 0
    assert "a preset (tiny, smoke, paper-7b) or a YAML file" in proc.stdout
    assert "examples:" in proc.stdout


def test_operations_commands_report_errors_in_the_same_style() -> None:
    """plan, pipeline submit, model promote and runs compare end like every other command: one
    `diffucoder: error:` line, exit 2 for what the user typed, 1 for a service that does not answer;
    --debug shows the traceback."""
    plan = _cli("plan", "--config", "tiny", "--start-from", "sft")
    assert plan.returncode == 2 and _error_lines(plan)[-1].startswith("diffucoder: error: ")
    submit = _cli("pipeline", "submit", "--host", "http://127.0.0.1:9", "--param", "no_equals_sign")
    assert submit.returncode == 2
    assert _error_lines(submit)[-1] == "diffucoder: error: --param 'no_equals_sign': expected name=value"
    assert "Traceback" not in submit.stderr
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    listing = _cli("pipeline", "schedule", "list", "--host", down)
    assert listing.returncode == 1
    line = _error_lines(listing)[-1]
    assert line.startswith("diffucoder: error: ") and f"KFP endpoint {down} does not answer" in line
    assert "Traceback" not in listing.stderr
    debug = _cli("pipeline", "schedule", "list", "--host", down, "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def _cli_without(absent: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command in an interpreter where the top-level package ``absent`` is not installed."""
    code = (
        "import sys\n"
        "class Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {absent!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "from diffucoder.cli import main\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_pipeline_commands_name_the_kfp_extra_where_kfp_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "ir.yaml"
    proc = _cli_without("kfp", "pipeline", "compile", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "diffucoder: error: `diffucoder pipeline` needs the Kubeflow Pipelines SDK, and kfp is not "
        "installed: pip install 'diffucoder[kfp]'"
    ]
    assert not out.exists()
    helped = _cli_without("kfp", "--help", cwd=tmp_path)  # the rest of the command needs no kfp
    assert helped.returncode == 0 and "pipeline" in helped.stdout


def test_the_pipeline_command_names_the_extra_where_the_kfp_side_is_missing(tmp_path: Path) -> None:
    proc = _cli_without("diffucoder_kfp", "pipeline", "run-local", "--preset", "tiny", cwd=tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "diffucoder: error: `diffucoder pipeline` needs diffucoder_kfp, which is not installed: "
        "pip install 'diffucoder[kfp]'"
    ]
