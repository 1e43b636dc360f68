"""``diffucoder evaluate`` argument handling (the full run is covered by test_run_smoke.py)."""

import pytest

from diffucoder.cli import main


def test_unknown_benchmark_is_rejected_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", "m", "--out", "o", "--benchmarks", "humaneval,nope"])
    err = capsys.readouterr().err
    assert "unknown benchmark(s) ['nope']" in err and "mbpp_plus" in err


def _model_dir(tmp_path):
    """A directory that passes the CLI's model check (the run itself never gets that far)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return str(model)


def test_tiny_heldout_without_its_uri_fails_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["evaluate", "--model", _model_dir(tmp_path), "--out", str(out), "--benchmarks", "tiny_heldout"]
    assert main(argv) == 2
    assert "evaluation.tiny_heldout_uri" in capsys.readouterr().err
    assert not out.exists()


def test_missing_benchmark_file_is_named_before_any_work(tmp_path, capsys):
    heldout = tmp_path / "heldout.jsonl"
    argv = ["evaluate", "--model", _model_dir(tmp_path), "--out", str(tmp_path / "out"), "--benchmarks"]
    argv += ["tiny_heldout", f"evaluation.tiny_heldout_uri={heldout}"]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err
        == f"diffucoder: error: benchmark tiny_heldout: {heldout}: no such benchmark file\n"
    )


def test_bad_override_names_the_key(tmp_path, capsys):
    argv = ["evaluate", "--model", _model_dir(tmp_path), "--out", str(tmp_path), "evaluation.pass_k=[5]"]
    assert main(argv) == 2
    assert "evaluation.pass_k" in capsys.readouterr().err
