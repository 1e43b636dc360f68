"""``diffucoder evaluate`` argument handling (the full run is covered by test_run_smoke.py)."""

import pytest

from diffucoder.cli import main


def test_unknown_benchmark_is_rejected_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", "m", "--out", "o", "--benchmarks", "humaneval,nope"])
    err = capsys.readouterr().err
    assert "unknown benchmark(s) ['nope']" in err and "mbpp_plus" in err


def test_tiny_heldout_without_its_uri_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="evaluation.tiny_heldout_uri"):
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "missing"),
                "--out",
                str(tmp_path / "out"),
                "--benchmarks",
                "tiny_heldout",
                "--config",
                "tiny",
            ]
        )
    assert not (tmp_path / "out").exists()


def test_bad_override_names_the_key(tmp_path):
    from diffucoder.config import ConfigError

    with pytest.raises(ConfigError, match="evaluation.pass_k"):
        main(
            ["evaluate", "--model", "m", "--out", str(tmp_path), "--config", "tiny", "evaluation.pass_k=[5]"]
        )
