"""End-to-end smoke evaluation of the tiny model: real tokenizer, real (untrained) tiny-preset model
saved and loaded through the model package, real decoding, a real local sandbox server and an
embedded MLflow store. Checks the artifacts, the metric names and the MLflow run, not the scores
(an untrained model scores ~0)."""

from __future__ import annotations

import json

import pytest
import torch

from diffucoder.config import load_config
from diffucoder.data.formats import tasks_to_sft
from diffucoder.data.tiny_tasks import generate_tasks
from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.evaluation.run import run_evaluation
from diffucoder.model import build_model, save_model


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_eval")
    tasks = generate_tasks(seed=0, n_train=60, n_heldout=6, difficulty=2)
    heldout = root / "heldout.jsonl"
    heldout.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tasks["heldout"]))
    texts = [m["content"] for row in tasks_to_sft(tasks["train"]) for m in row["messages"]]
    tokenizer = train_tokenizer(texts, vocab_size=600)
    cfg = load_config("tiny")
    model = build_model(cfg.model, tokenizer)
    save_model(model, tokenizer, str(root / "model"))
    return root, str(heldout)


def _small_eval_config(heldout: str, speeds: str = "[1x,2x]"):
    return load_config(
        "tiny",
        [
            f"evaluation.tiny_heldout_uri={heldout}",
            "evaluation.max_problems=2",
            "evaluation.max_io_inputs=10",
            "evaluation.gen_length=8",
            "evaluation.fast.block_length=4",  # the tiny preset evaluates with fast decoding
            "evaluation.temperatures=[0.4]",
            f"evaluation.speeds={speeds}",
            "evaluation.n_samples=2",
            "evaluation.pass_k=[1,2]",
            "evaluation.batch_size=4",
            "evaluation.system_prompt=''",
        ],
    )


def test_tiny_model_evaluates_end_to_end(tiny_setup, mlflow_sqlite):
    root, heldout = tiny_setup
    torch.set_num_threads(1)
    cfg = _small_eval_config(heldout)
    benchmarks = ["humaneval", "humaneval_plus", "mbpp", "mbpp_plus", "tiny_heldout"]
    out = root / "eval"
    result = run_evaluation(cfg, str(root / "model"), benchmarks, str(out))

    # one row per (benchmark, problem, speed, temperature), each with n_samples samples
    rows = [json.loads(line) for line in (out / "per_problem.jsonl").read_text().splitlines()]
    assert len(rows) == len(benchmarks) * 2 * 2
    assert all(r["n"] == 2 and len(r["samples"]) == 2 for r in rows)
    assert {r["benchmark"] for r in rows} == set(benchmarks)
    assert all(s["verdict"] != "infra_error" for r in rows for s in r["samples"])

    saved = json.loads((out / "metrics.json").read_text())
    metrics = saved["metrics"]
    for name in (
        "humaneval_pass_at_1_1x",
        "humaneval_plus_pass_at_2_2x",
        "mbpp_pass_at_1_1x_temp0.4",
        "evalplus_pass_at_1_1x",
        "tiny_heldout_pass_at_1_2x",
        "arness_local_at_1_1x",
        "arness_global_at_4_2x",
        "tokens_per_s_1x",
    ):
        assert name in metrics, name
        assert 0.0 <= metrics[name] <= 1.0 or name.startswith("tokens_per_s")
    assert metrics == result.metrics
    assert saved["timings"]["problems"] == len(benchmarks) * 2

    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3 and "tiny_heldout" in report

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_sqlite)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    # the run was open for the whole evaluation (references, decoding, sandbox), not created after it
    timings = saved["timings"]
    work = timings["reference_s"] + timings["generation_s"] + timings["sandbox_s"]
    assert (run.info.end_time - run.info.start_time) / 1000 >= work
    tracked = run.data.metrics
    assert tracked["eval/humaneval/pass_at_1_1x"] == metrics["humaneval_pass_at_1_1x"]
    assert tracked["eval/humaneval_plus/pass_at_2_2x"] == metrics["humaneval_plus_pass_at_2_2x"]
    assert tracked["eval/evalplus/pass_at_1_1x"] == metrics["evalplus_pass_at_1_1x"]
    assert tracked["throughput/tokens_per_s_1x"] == metrics["tokens_per_s_1x"]
    assert "time/sandbox_s" in tracked
    assert all("/" in name for name in tracked), sorted(n for n in tracked if "/" not in n)
    # AR-ness is one curve per kind and speed, step = k
    curve = client.get_metric_history(run.info.run_id, "arness/local_1x")
    assert {p.step: p.value for p in curve} == {
        k: metrics[f"arness_local_at_{k}_1x"] for k in cfg.evaluation.arness_local_ks
    }
    assert not any(name.startswith("arness_") for name in tracked)
    # each benchmark file is a dataset input of the run
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == set(benchmarks)
    assert inputs["tiny_heldout"].dataset.source_type == "local"
    assert heldout in inputs["tiny_heldout"].dataset.source
    assert {t.key: t.value for t in inputs["tiny_heldout"].tags}["mlflow.data.context"] == "evaluation"
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )


def test_a_benchmarks_samples_do_not_depend_on_what_else_the_run_evaluates(tiny_setup, mlflow_sqlite):
    """Each benchmark decodes each grid point from its own, equally seeded generator: tiny_heldout
    evaluated alone at 2x gets the same samples as when the run also evaluates MBPP and 1x first."""
    root, heldout = tiny_setup
    torch.set_num_threads(1)

    def heldout_samples_at_2x(benchmarks: list[str], speeds: str, out: str) -> dict[str, list[str]]:
        run_evaluation(_small_eval_config(heldout, speeds), str(root / "model"), benchmarks, str(root / out))
        rows = [json.loads(line) for line in (root / out / "per_problem.jsonl").read_text().splitlines()]
        return {
            r["task_id"]: [s["completion"] for s in r["samples"]]
            for r in rows
            if r["benchmark"] == "tiny_heldout" and r["speed"] == "2x"
        }

    alone = heldout_samples_at_2x(["tiny_heldout"], "[2x]", "alone")
    alongside = heldout_samples_at_2x(["mbpp", "tiny_heldout"], "[1x,2x]", "alongside")
    assert len(alone) == 2
    assert len({c for samples in alone.values() for c in samples}) > 1  # sampled, not constant
    assert alongside == alone
