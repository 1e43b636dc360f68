"""The DAG through kfp.local started from released-format checkpoints (tests/tiny_checkpoints.py).

- ``start_from=grpo`` from an imported DiffuCoder-Instruct-format model: coupled-GRPO and the
  evaluations run with that checkpoint's tokenizer and special tokens; no corpus is built.
- ``base_model_uri`` = an imported Qwen2.5-Coder-format model: stages 1-3 convert and train it,
  with ``<|beginoftext|>``, ``<|mask|>``, ``<|dlm_pad|>`` appended as paper-7b does.
- ``start_from=midtrain`` from an imported DiffuCoder-Base-format model given ``<|dlm_pad|>`` by
  ``diffucoder model add-pad``: stage 2 data is packed with that model's tokenizer, stage 3 pads with it.
- paper-7b without data sources: the run fails in open-run, before any compute, having written nothing.

Local output roots and SQLite tracking keep these to a few minutes each (the stage 1-3 run is marked
slow); the S3 + MLflow-server path of the same DAG is covered by test_pipeline_e2e.py.
"""

from __future__ import annotations

import json

import pytest
from diffucoder_kfp import local
from micro import MICRO_PARAMS, MICRO_PRESET
from tiny_checkpoints import write_dream_checkpoint, write_qwen2_checkpoint

from diffucoder import steps, storage
from diffucoder.config import load_config
from diffucoder.data.tokenizer import load_tokenizer
from diffucoder.model import load_model
from diffucoder.model.importer import import_checkpoint
from diffucoder.model.pad_token import add_pad_token

DATA_STEPS = {"data", "tiny-tasks", "tokenizer", "midtrain-mix", "pack-pretrain", "pack-midtrain"}


def _run(tmp_path, preset: str, overrides: list[str], **params) -> str:
    cfg = load_config(preset, overrides)
    cfg.output_root = str(tmp_path / "runs")
    arguments = local.local_arguments(
        cfg, preset, overrides, **MICRO_PARAMS, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", **params
    )
    return local.run_local(arguments, str(tmp_path / "kfp-local"))


def _records(root: str) -> dict[str, dict]:
    record = steps.read_pipeline_record(root)
    rows = steps.read_step_records(record["data_root"]) + steps.read_step_records(root)
    return {r["step"]: r for r in rows}


def test_grpo_from_an_imported_diffucoder_instruct_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ck = write_dream_checkpoint(tmp_path / "released")
    start = str(tmp_path / "models" / "DiffuCoder-Instruct-tiny")
    import_checkpoint(str(ck.path), start)
    root = _run(
        tmp_path,
        MICRO_PRESET,
        [],
        start_from="grpo",
        start_model_uri=start,
        final_eval_benchmarks="tiny_heldout",
    )
    by_step = _records(root)
    assert set(by_step) == DATA_STEPS | {"grpo", "eval-grpo", "register", "promote"}
    assert by_step["data"]["metrics"]["documents"] == 0  # no stage of the run reads the corpus
    for step, uri in (
        ("tokenizer", "tokenizer"),
        ("midtrain-mix", "midtrain_mix"),
        ("pack-pretrain", "packed"),
    ):
        assert "/unused/" in by_step[step]["uris"][uri], step
    assert by_step["grpo"]["metrics"]["steps"] > 0
    assert 0.0 <= by_step["eval-grpo"]["metrics"]["tiny_heldout_pass_at_1_1x"] <= 1.0

    result = json.loads(storage.read_text(storage.join(root, "grpo", "result.json")))
    model, tokenizer = load_model(result["final_model_uri"])
    _, released = load_model(start)
    assert tokenizer.get_vocab() == released.get_vocab()
    assert (tokenizer.mask_token, tokenizer.pad_token, tokenizer.eos_token) == (
        "<|mask|>",
        "<|dlm_pad|>",
        "<|endoftext|>",
    )
    assert (model.mask_token_id, model.pad_token_id) == (
        ck.token_ids["<|mask|>"],
        ck.token_ids["<|dlm_pad|>"],
    )
    assert model.hf.get_input_embeddings().weight.shape[0] == ck.model.config.vocab_size


@pytest.mark.slow  # ~4 min on 2 busy cores; the conversion itself is tested in tests/model (seconds)
def test_stages_1_to_3_from_an_imported_qwen_coder_base(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ck = write_qwen2_checkpoint(tmp_path / "released")
    base = str(tmp_path / "models" / "Qwen2.5-Coder-tiny")
    import_checkpoint(str(ck.path), base)
    n_base = len(load_tokenizer(base))
    overrides = ["model.tokens.bos=<|beginoftext|>", "instruct.seq_len=384"]
    root = _run(
        tmp_path,
        MICRO_PRESET,
        overrides,
        base_model_uri=base,
        run_grpo=False,
        final_eval_benchmarks="tiny_heldout",
    )
    by_step = _records(root)
    assert {"pretrain", "midtrain", "instruct", "eval-midtrain", "eval-instruct", "eval-final"} <= set(
        by_step
    )
    assert "grpo" not in by_step
    assert by_step["tokenizer"]["uris"]["tokenizer"] == base  # packing reads the base's tokenizer

    model, tokenizer = load_model(storage.join(root, "instruct", "final"))
    appended = [tokenizer.convert_tokens_to_ids(t) for t in ("<|beginoftext|>", "<|mask|>", "<|dlm_pad|>")]
    assert appended == [n_base, n_base + 1, n_base + 2]
    assert (model.mask_token_id, model.pad_token_id) == (appended[1], appended[2])
    assert model.hf.get_input_embeddings().weight.shape[0] == ck.model.config.vocab_size  # padding rows used


@pytest.mark.slow  # ~2 min on 2 busy cores; stages 2-3 from such a model are tested in tests/train (seconds)
def test_stages_2_and_3_from_an_imported_diffucoder_base_with_its_own_pad(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ck = write_dream_checkpoint(tmp_path / "released", instruct=False)
    import_checkpoint(str(ck.path), str(tmp_path / "models" / "DiffuCoder-Base-tiny"))
    start = str(tmp_path / "models" / "DiffuCoder-Base-tiny-dlm-pad")
    pad_id = add_pad_token(str(tmp_path / "models" / "DiffuCoder-Base-tiny"), start).pad_token_id
    root = _run(
        tmp_path,
        MICRO_PRESET,
        ["instruct.seq_len=384"],
        start_from="midtrain",
        start_model_uri=start,
        run_grpo=False,
        final_eval_benchmarks="tiny_heldout",
    )
    by_step = _records(root)
    assert {"midtrain", "instruct", "eval-instruct"} <= set(by_step) and "pretrain" not in by_step
    assert by_step["tokenizer"]["uris"]["tokenizer"] == start  # stage-2 data packed with its tokenizer

    model, tokenizer = load_model(storage.join(root, "instruct", "final"))
    _, started = load_model(start)
    assert tokenizer.get_vocab() == started.get_vocab()
    assert (tokenizer.pad_token_id, model.pad_token_id, model.mask_token_id) == (
        pad_id,
        pad_id,
        ck.token_ids["<|mask|>"],
    )


def test_paper_7b_without_data_sources_fails_before_any_compute(tmp_path, capfd):
    cfg = load_config("paper-7b")
    cfg.output_root = str(tmp_path / "runs")
    arguments = local.local_arguments(
        cfg, "paper-7b", [], tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", base_model_uri=""
    )
    with pytest.raises(RuntimeError):
        local.run_local(arguments, str(tmp_path / "kfp-local"))
    logs = capfd.readouterr()
    assert "stage pretrain has no data source: set data.sources.pretrain" in logs.out + logs.err
    assert not (tmp_path / "runs").exists()  # no run root, no data root
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow parent run was started
