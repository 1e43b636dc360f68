"""The planner: per-stage arithmetic, zero-step and unknown-size refusals, the CLI's output and exit codes."""

import json

import pytest

from diffucoder.cli import main
from diffucoder.config import load_config
from diffucoder.ops.memory import n_params
from diffucoder.ops.planner import PlanError, make_plan, plan_stage, stages_run
from diffucoder.train.flops import flops_per_token


def test_paper_pretrain_is_the_papers_token_count_and_its_flops():
    cfg = load_config("paper-7b")
    s = plan_stage(cfg, "pretrain")
    # 100k steps x 2 sequences x 80 GPUs x 4096 tokens = the paper's 65.5B tokens (arXiv 2506.20639 §B.1)
    assert s.steps == 100_000 and s.gpus == 80
    assert s.tokens == 100_000 * 2 * 80 * 4096
    m = cfg.model
    n = n_params(m, cfg.plan.vocab_size) - cfg.plan.vocab_size * m.hidden_size
    assert s.flops == pytest.approx(s.tokens * flops_per_token(n, m.num_hidden_layers, m.hidden_size, 4096))
    p = cfg.plan
    assert s.hours == pytest.approx(s.flops / (80 * p.peak_tflops * 1e12 * p.mfu) / 3600)
    assert s.cost == pytest.approx(s.hours * 80 * p.gpu_hour_price)
    assert s.fits


def test_epoch_stages_use_the_plans_dataset_sizes():
    cfg = load_config("paper-7b")
    instruct = plan_stage(cfg, "instruct")
    # 5 epochs over 436K samples at 2 x 64 per optimizer step
    assert instruct.steps == int(5 * 436_000 // (2 * 64))
    grpo = plan_stage(cfg, "grpo")
    # 8 prompts per round over 8 GPUs (5 x 2 / 10 per rank), mu = 2 optimizer steps per round
    assert grpo.steps == int(21_000 // 8) * 2


def test_grpo_flops_grow_with_rollout_steps_and_estimator_copies():
    base = plan_stage(load_config("paper-7b"), "grpo").flops
    fewer_steps = plan_stage(load_config("paper-7b", ["grpo.rollout.steps=128"]), "grpo").flops
    one_pass = plan_stage(load_config("paper-7b", ["grpo.estimator=full_mask"]), "grpo").flops
    assert fewer_steps < base and one_pass < base


def test_a_stage_with_zero_steps_is_refused_by_name():
    cfg = load_config("paper-7b", ["plan.dataset.grpo=0"])
    with pytest.raises(PlanError, match="stage grpo.*zero optimizer steps"):
        make_plan(cfg)
    cfg = load_config("paper-7b", ["plan.dataset.instruct=100"])  # fewer rows than one global batch
    with pytest.raises(PlanError, match="stage instruct: 100 rows.*zero optimizer steps"):
        make_plan(cfg)


def test_an_epoch_stage_without_a_data_size_is_refused():
    cfg = load_config("paper-7b", ["plan.dataset={}"])
    with pytest.raises(PlanError, match="stage midtrain runs 4 epochs.*plan.dataset.midtrain"):
        make_plan(cfg)


def test_stages_the_run_skips_cost_nothing():
    plan = make_plan(load_config("tiny"), start_from="instruct", run_grpo=False)
    runs = {s.stage: s.runs for s in plan.stages}
    assert runs == {"pretrain": False, "midtrain": False, "instruct": True, "grpo": False}
    assert plan.totals["gpu_hours"] == pytest.approx(next(s for s in plan.stages if s.runs).gpu_hours)
    with pytest.raises(PlanError, match="start_from 'sft'"):
        stages_run("sft")


def test_cli_prints_the_table_and_json(capsys):
    assert main(["plan", "--config", "paper-7b"]) == 0
    out = capsys.readouterr().out
    assert "pretrain" in out and "fits" in out and "assumption" in out
    assert main(["plan", "--config", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in data["stages"]] == ["pretrain", "midtrain", "instruct", "grpo"]
    assert data["stages"][0]["memory_gib"]["total"] > 0 and data["totals"]["cost"] >= 0


def test_cli_exit_code_names_a_stage_that_does_not_fit(capsys):
    code = main(["plan", "--config", "paper-7b", "instruct.micro_batch_size=64"])
    out = capsys.readouterr().out
    assert code == 3
    assert "stage instruct:" in out and "DOES NOT FIT" in out and "micro-batch 64" in out


def test_cli_bad_input_exits_2_with_the_reason(capsys):
    assert main(["plan", "--config", "tiny", "instruct.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert main(["plan", "--config", "tiny", "--start-from", "sft"]) == 2
