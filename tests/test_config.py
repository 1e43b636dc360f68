"""Config loading: presets validate, overrides apply, and every error names the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffucoder.config import PRESETS, ConfigError, RunConfig, load_config


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_validates(preset: str) -> None:
    cfg = load_config(preset)
    assert isinstance(cfg, RunConfig)
    assert cfg.preset == preset


def test_presets_differ_where_they_should() -> None:
    tiny, paper = load_config("tiny"), load_config("paper-7b")
    assert tiny.device == "cpu" and paper.device == "cuda"
    assert paper.output_root.startswith("s3://")
    assert tiny.fingerprint() != paper.fingerprint()


def test_a_preset_with_a_base_overrides_it_section_by_section(tmp_path) -> None:
    tiny, smoke = load_config("tiny"), load_config("smoke")
    assert (smoke.model.hidden_size, smoke.model.rope_theta) == (64, tiny.model.rope_theta)
    assert smoke.pretrain.max_steps == 3 and smoke.pretrain.lr == tiny.pretrain.lr
    assert smoke.data.tiny_tasks.slip_rate == tiny.data.tiny_tasks.slip_rate
    assert smoke.evaluation.max_problems == 3  # a mapping in tiny, replaced by a number
    own = tmp_path / "mine.yaml"
    own.write_text("base: smoke\npreset: mine\npretrain:\n  max_steps: 5\n")
    mine = load_config(str(own))
    assert (mine.pretrain.max_steps, mine.model.hidden_size) == (5, 64)


def test_a_bad_base_is_named(tmp_path) -> None:
    own = tmp_path / "bad.yaml"
    own.write_text("base: tinyy\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: base 'tinyy' is not a preset"):
        load_config(str(own))


def test_overrides_are_typed_and_nested() -> None:
    cfg = load_config("tiny", ["seed=123", "storage.max_attempts=2", "tracking.tracking_uri=sqlite:///x.db"])
    assert cfg.seed == 123
    assert cfg.storage.max_attempts == 2
    assert cfg.tracking.tracking_uri == "sqlite:///x.db"
    assert load_config("tiny", ["storage.retry_max_backoff_s=0.5"]).storage.retry_max_backoff_s == 0.5
    assert load_config("tiny", ["tracking.tracking_uri=null"]).tracking.tracking_uri is None


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"storage\.max_atempts: unknown key"):
        load_config("tiny", ["storage.max_atempts=3"])
    with pytest.raises(ConfigError, match=r"trackin: unknown key"):
        load_config("tiny", ["trackin.experiment=x"])


def test_all_bad_keys_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("tiny", ["seed=abc", "storage.max_concurrency=0", "nope=1"])
    msg = str(err.value)
    assert "seed:" in msg and "'abc'" in msg
    assert "storage.max_concurrency:" in msg and "greater than or equal to 1" in msg
    assert "nope: unknown key" in msg


def test_wrong_type_in_yaml_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("preset: mine\nstorage:\n  max_attempts: many\n")
    with pytest.raises(ConfigError, match=r"my\.yaml(.|\n)*storage\.max_attempts: .*'many'"):
        load_config(str(path))


def test_bad_override_syntax_is_named() -> None:
    with pytest.raises(ConfigError, match=r"override 'seed' is not of the form key\.sub=value"):
        load_config("tiny", ["seed"])
    with pytest.raises(ConfigError, match=r"override '=3'"):
        load_config("tiny", ["=3"])
    with pytest.raises(ConfigError, match=r"override 'seed\.x=1': 'seed' is a value, not a section"):
        load_config("tiny", ["seed.x=1"])


def test_bad_preset_name_lists_the_presets() -> None:
    with pytest.raises(
        ConfigError, match=r"'tinny' is neither a preset \(tiny, smoke, paper-7b\) nor a file"
    ):
        load_config("tinny")


def test_invalid_yaml_and_non_mapping_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: invalid YAML"):
        load_config(str(broken))
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: top level must be a mapping, got list"):
        load_config(str(listing))


def test_saved_config_round_trips(tmp_path: Path) -> None:
    """The YAML every stage writes beside its artifacts (``cfg.to_yaml()``) loads back to the same config."""
    cfg = load_config("tiny", ["seed=5", "storage.max_attempts=9"])
    out = tmp_path / "config.yaml"
    out.write_text(cfg.to_yaml())
    assert load_config(str(out)) == cfg
    assert load_config(str(out)).fingerprint() == cfg.fingerprint()


def test_fast_evaluation_needs_blocks_that_divide_the_generation_length():
    # the tiny preset evaluates with fast decoding in blocks of 32: a length of 8 must fail at load,
    # naming both keys, instead of after the references have run
    with pytest.raises(
        ConfigError,
        match=r"fast_decoding=true at speed 1x \(gen_length 8\).*block_length=32.*evaluation.fast",
    ):
        load_config("tiny", ["evaluation.gen_length=8"])
    cfg = load_config(
        "tiny", ["evaluation.gen_length=8", "evaluation.fast.block_length=4", "evaluation.speeds=[1x,2x]"]
    )
    assert cfg.evaluation.fast_decoding and cfg.evaluation.fast.block_length == 4


def test_evaluation_decodes_with_its_own_fast_settings_else_the_decoding_sections():
    """GRPO rollouts read decoding.fast; evaluation.fast, when set, replaces it for evaluation only."""
    from diffucoder.evaluation.generation import decoding_config_for

    shared = load_config("tiny", ["evaluation.fast=null", "decoding.fast.threshold=0.5"])
    fast = decoding_config_for(shared.decoding, shared.evaluation, "2x", 0.2).fast
    assert fast.model_dump() == {**shared.decoding.fast.model_dump(), "enabled": True}
    own = load_config(
        "tiny",
        [
            "evaluation.fast={threshold: 0.7, block_length: 32, kv_cache: prefix}",
            "evaluation.fast_decoding=false",
        ],
    )
    fast = decoding_config_for(own.decoding, own.evaluation, "1x", 0.2).fast
    assert (fast.enabled, fast.threshold, fast.block_length, fast.kv_cache) == (False, 0.7, 32, "prefix")
    assert own.decoding.fast.threshold is None  # the rollouts' settings are untouched
    with pytest.raises(ConfigError, match=r"evaluation.fast.block_length"):
        load_config("tiny", ["evaluation.fast={block_length: 48}"])
