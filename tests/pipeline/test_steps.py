"""Step bodies (diffucoder.steps) and the summary/compare output, without running the DAG."""

from __future__ import annotations

import json

import pytest
from diffucoder_kfp import local, remote
from diffucoder_kfp.kfp_client import KfpError

from diffucoder import steps, storage
from diffucoder.config import load_config


def test_resolve_config_precedence():
    cfg = steps.resolve_config(
        "tiny",
        ["seed=3", "pretrain.max_steps=5"],
        output_root="/x",
        seed=7,
        tracking_uri="http://127.0.0.1:1",
        base_model_uri="/m",
        benchmark_root="/b",
    )
    assert (cfg.seed, cfg.output_root, cfg.pretrain.max_steps) == (7, "/x", 5)
    assert (cfg.tracking.tracking_uri, cfg.model.base_model_uri, cfg.evaluation.data_root) == (
        "http://127.0.0.1:1",
        "/m",
        "/b",
    )
    verbatim = steps.resolve_config("paper-7b", ["seed=99"], config_yaml=cfg.to_yaml())
    assert verbatim.model_dump() == cfg.model_dump()  # a rerun's config wins over preset/overrides
    assert steps.config_from_yaml(cfg.model_dump(mode="json")).fingerprint() == cfg.fingerprint()


def test_bad_config_yaml_names_the_key():
    with pytest.raises(ValueError, match="pretrain.max_stepz: unknown key"):
        steps.config_from_yaml("pretrain:\n  max_stepz: 3\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        steps.config_from_yaml("- a\n- b\n")


def test_data_root_follows_data_settings_and_plan_only():
    a = load_config("tiny")
    b = load_config("tiny", ["pretrain.lr=0.1"])
    c = load_config("tiny", ["data.shard_docs=7"])
    plan = steps.plan_run(a, {})
    assert steps.data_root(a, plan, 0, 4096) == steps.data_root(b, plan, 0, 4096)
    assert steps.data_root(a, plan, 0, 4096) != steps.data_root(c, plan, 0, 4096)
    assert steps.data_root(a, plan, 0, 4096) != steps.data_root(a, plan, 40, 4096)
    # a run that builds no corpus must not share a data root with one that does
    grpo_only = steps.plan_run(a, {"start_from": "grpo", "start_model_uri": "/m"})
    assert steps.data_root(a, plan, 0, 4096) != steps.data_root(a, grpo_only, 0, 4096)


def test_run_name_and_stage_data():
    assert steps.run_name("diffucoder-2026-11-27 08:37:31") == "diffucoder-2026-11-27-08-37-31"
    with pytest.raises(ValueError, match="no usable characters"):
        steps.run_name("///")
    tiny = load_config("tiny")
    assert steps.stage_data_uri(tiny, "instruct", "s3://b/tasks") == "s3://b/tasks/sft/train.jsonl"
    assert steps.stage_data_uri(tiny, "grpo", "/t") == "/t/rl/train.jsonl"
    assert steps.stage_data_uri(tiny, "pretrain", "/p") == "/p"
    real = load_config("tiny", ["data.sources.grpo=s3://b/rl.jsonl", "data.sources.instruct=null"])
    assert steps.stage_data_uri(real, "grpo", "/t") == "s3://b/rl.jsonl"
    with pytest.raises(ValueError, match="stage instruct has no data source: set data.sources.instruct"):
        steps.stage_data_uri(real, "instruct", "/t")


def test_sandbox_endpoint_modes():
    cfg = load_config("tiny")
    assert steps.sandbox_endpoint(cfg, "local", "http://ignored", "r1") == ""
    assert steps.sandbox_endpoint(cfg, "shared", "http://sb:8080", "r1") == "http://sb:8080"
    with pytest.raises(ValueError, match="needs sandbox_url"):
        steps.sandbox_endpoint(cfg, "shared", "", "r1")
    with pytest.raises(ValueError, match="expected one of local, shared, per-run"):
        steps.sandbox_endpoint(cfg, "cluster", "", "r1")


def test_artifact_metadata_refuses_incomplete_and_hashes_manifest(tmp_path):
    cfg = load_config("tiny")
    art = tmp_path / "art"
    art.mkdir()
    (art / "a.txt").write_text("hello")
    with pytest.raises(storage.IncompleteArtifactError, match="no MANIFEST.json"):
        steps.artifact_metadata(str(art), cfg)
    storage.seal_dir(art)
    meta = steps.artifact_metadata(str(art), cfg, stage="x")
    assert (meta["files"], meta["bytes"], meta["stage"]) == (1, 5, "x")
    assert meta["sha256"]["a.txt"] == storage.read_manifest(str(art)).files[0].sha256
    assert meta["config"]["preset"] == "tiny" and meta["config_fingerprint"] == cfg.fingerprint()
    diverged = steps.artifact_metadata(str(art), cfg, metrics={"loss": float("nan"), "steps": 3})
    assert diverged["metrics"] == {"loss": "nan", "steps": 3}  # a protobuf Struct cannot hold NaN


def _per_problem(
    root: str, label: str, passed: list[int], public_passed: int = 0, passed_2x: list[int] = ()
) -> dict[str, str]:
    """An evaluation's per_problem.jsonl: one sample per held-out task (at 1x, and at 2x where
    ``passed_2x`` is given), plus one HumanEval problem."""
    rows = [
        {
            "benchmark": "tiny_heldout",
            "task_id": f"t{i}",
            "speed": speed,
            "temperature": 0.2,
            "n": 1,
            "n_correct": ok,
        }
        for speed, outcomes in (("1x", passed), ("2x", passed_2x))
        for i, ok in enumerate(outcomes)
    ]
    rows.append(
        {
            "benchmark": "humaneval",
            "task_id": "t0",
            "speed": "1x",
            "temperature": 0.2,
            "n": 1,
            "n_correct": public_passed,
        }
    )
    uri = f"{root}/eval-{label}/per_problem.jsonl"
    storage.write_text(uri, "".join(json.dumps(r) + "\n" for r in rows))
    return {"per_problem": uri}


def test_summary_and_rerun_arguments(tmp_path):
    cfg = load_config("tiny", [f"output_root={tmp_path}"])
    root, data = str(tmp_path / "run-1"), str(tmp_path / "data" / "abc")
    record = {
        "parent_run_id": "p1",
        "tracking_uri": "sqlite:///x.db",
        "experiment": "e",
        "run_root": root,
        "data_root": data,
        "arguments": {"sandbox_mode": "local", "run_grpo": True},
        "config_yaml": cfg.to_yaml(),
        "status": "FINISHED",
        "started_at": 1.0,
    }
    storage.write_text(f"{root}/pipeline.json", json.dumps(record))
    steps.record_step(data, "data", seconds=3.0, metrics={"documents": 10}, uris={"corpus": f"{data}/corpus"})
    trend = {"reward/total/first_quarter": 1.5, "reward/total/last_quarter": 1.75}
    trend |= {"pass_rate/first_quarter": 0.5, "pass_rate/last_quarter": 0.625}
    native = ("bf16-mixed", "auto: native bfloat16 on this CPU (X: torch cpu_capability AVX512, ...)")
    for stage, (precision, reason) in {
        "pretrain": native,
        "midtrain": native,
        "instruct": native,
        "grpo": ("fp32", "auto: this stage keeps float32 on CPU"),
    }.items():
        settings = {"precision": precision, "precision_reason": reason}
        metrics = {**trend, "loss": 0.01} if stage == "grpo" else {"loss": 0.02}
        steps.record_step(
            root,
            stage,
            seconds=2.0,
            metrics=metrics,
            uris={"model": f"{root}/{stage}/final"},
            settings=settings,
        )
    # per-task results of the three evaluations on the same 4 held-out tasks (+ one public problem)
    # instruct and GRPO also ran at 2x: the GRPO model loses one task of three by halving the steps
    passed = {"midtrain": [0, 0, 0, 0], "instruct": [1, 0, 0, 0], "grpo": [1, 1, 1, 0]}
    passed_2x = {"midtrain": [], "instruct": [0, 0, 0, 0], "grpo": [1, 1, 0, 0]}
    for label, seconds in (("midtrain", 4.0), ("instruct", 5.0)):
        per_problem = _per_problem(root, label, passed[label], passed_2x=passed_2x[label])
        metrics = {"tiny_heldout_pass_at_1_1x": sum(passed[label]) / 4}
        steps.record_step(
            root,
            f"eval-{label}",
            seconds=seconds,
            metrics=metrics,
            uris={"report": f"{label}.html", **per_problem},
        )
    per_problem = _per_problem(root, "grpo", passed["grpo"], public_passed=1, passed_2x=passed_2x["grpo"])
    metrics = {"tiny_heldout_pass_at_1_1x": 0.75}
    steps.record_step(
        root, "eval-grpo", seconds=6.0, metrics=metrics, uris={"report": "grpo.html", **per_problem}
    )
    table = local.summary(root)
    assert "data" in table and "documents=10" in table
    assert (
        "learning signal: held-out tiny tasks pass@1 (change +- paired SE over the same tasks)\n"
        "  0.000 before instruct-tuning\n"
        "  0.250 after instruct (+0.250 +- 0.250 paired SE, 4 tasks: 1 up, 0 down)\n"
        "  0.750 after coupled-GRPO (+0.500 +- 0.289 paired SE, 4 tasks: 2 up, 0 down)"
    ) in table
    assert (
        "halving the decoding steps (1x -> 2x), held-out tiny tasks (+- paired SE over the same tasks)\n"
        "  after instruct, T 0.2: relative drop +1.000 +- 1.000 (0.250 -> 0.000; drop +0.250 +- 0.250 "
        "paired SE, 4 tasks: 1 worse at 2x, 0 better)\n"
        "  after coupled-GRPO, T 0.2: relative drop +0.333 +- 0.333 (0.750 -> 0.500; drop +0.250 +- 0.250 "
        "paired SE, 4 tasks: 1 worse at 2x, 0 better)\n"
        "  drop change, after instruct -> after coupled-GRPO: +0.000 +- 0.408 paired SE, 4 tasks: 1 up, 1 down"
    ) in table
    assert (
        f"precision: pretrain, midtrain, instruct bf16-mixed ({native[1]}); "
        "grpo fp32 (auto: this stage keeps float32 on CPU)"
    ) in table
    assert "first -> last quarter: reward 1.500 -> 1.750 (+0.250), pass rate 0.500 -> 0.625 (+0.125)" in table
    assert "pass_rate/first_quarter=0.5, pass_rate/last_quarter=0.625, loss=0.01" in table
    assert "mlflow ui --backend-store-uri sqlite:///x.db" in table and "HTML report: grpo.html" in table
    args = remote.rerun_arguments(root)
    assert args["config_yaml"] == cfg.to_yaml() and args["output_root"] == str(tmp_path)
    assert (args["sandbox_mode"], args["tracking_uri"]) == ("local", "sqlite:///x.db")
    with pytest.raises(FileNotFoundError, match="not a pipeline run root"):
        remote.rerun_arguments(str(tmp_path / "nothing"))


def test_rerun_restores_parameter_types_that_kfp_recorded_as_strings():
    # what open_run receives for the pipeline's arguments dict under kfp.local: every parameter a string
    recorded = {
        "stdlib_max_files": "40.0",
        "run_grpo": "false",
        "overrides": "[]",
        "sandbox_mode": "local",
    }
    assert remote.typed_arguments(recorded) == {
        "stdlib_max_files": 40,
        "run_grpo": False,
        "overrides": [],
        "sandbox_mode": "local",
    }
    for bad in ("forty", "40.5"):
        with pytest.raises(ValueError, match=f"stdlib_max_files='{bad}' is not a valid Integer"):
            remote.typed_arguments({"stdlib_max_files": bad})
    with pytest.raises(ValueError, match=r"\['no_such_param'\] are not parameters"):
        remote.typed_arguments({"no_such_param": "1"})


def test_submit_to_an_unreachable_endpoint_names_it(unused_port):
    host = f"http://127.0.0.1:{unused_port()}"
    with pytest.raises(KfpError, match=f"KFP endpoint {host} does not answer"):
        remote.submit(host, {"preset": "tiny"})


def test_data_row_without_an_ingest_start_says_what_to_rerun(tmp_path):
    with pytest.raises(FileNotFoundError, match="rerun the data steps from ingest"):
        steps.ingest_started(str(tmp_path / "data" / "abc"))


def test_plan_needs_a_source_for_every_stage_the_run_trains():
    paper = load_config("paper-7b")
    with pytest.raises(ValueError) as err:
        steps.plan_run(paper, {})
    for stage in ("pretrain", "midtrain", "instruct", "grpo"):
        assert f"stage {stage} has no data source: set data.sources.{stage}" in str(err.value)
    # only the stages the run trains need one
    grpo_only = load_config("paper-7b", ["data.sources.grpo=s3://rl/acecode-hard.jsonl"])
    plan = steps.plan_run(grpo_only, {"start_from": "grpo", "start_model_uri": "s3://m/instruct"})
    assert plan == steps.DataPlan(stages=("grpo",), corpus=False, tiny_tasks=False, tokenizer_from="")
    assert not plan.packs
    # the tiny tasks come only for an evaluation that scores them
    plan = steps.plan_run(
        grpo_only,
        {
            "start_from": "grpo",
            "start_model_uri": "s3://m/i",
            "final_eval_benchmarks": "humaneval,tiny_heldout",
        },
    )
    assert plan.tiny_tasks and not plan.corpus
    with pytest.raises(ValueError, match="start_from=instruct needs start_model_uri"):
        steps.plan_run(grpo_only, {"start_from": "instruct"})
    with pytest.raises(ValueError, match="start_from='sft': expected one of"):
        steps.plan_run(grpo_only, {"start_from": "sft"})


def test_plan_follows_start_and_generated_sources():
    tiny = load_config("tiny")
    assert steps.plan_run(tiny, {}) == steps.DataPlan(
        stages=("pretrain", "midtrain", "instruct", "grpo"), corpus=True, tiny_tasks=True, tokenizer_from=""
    )
    no_grpo = steps.plan_run(tiny, {"run_grpo": "false"})  # kfp.local hands dict values over as text
    assert no_grpo.stages == ("pretrain", "midtrain", "instruct")
    midtrain = steps.plan_run(tiny, {"start_from": "midtrain", "start_model_uri": "/m/pretrain"})
    assert midtrain.corpus and midtrain.tokenizer_from == "/m/pretrain"  # the mix reads the corpus
    real = load_config(
        "tiny",
        [
            "data.sources.midtrain=s3://c/annealing",
            "data.sources.instruct=s3://s/sft.jsonl",
            "data.sources.grpo=s3://r/rl.jsonl",
        ],
    )
    only_mbpp = {"final_eval_benchmarks": "mbpp", "checkpoint_eval_benchmarks": "mbpp"}
    plan = steps.plan_run(real, {"start_from": "midtrain", "start_model_uri": "/m", **only_mbpp})
    assert not plan.corpus and not plan.tiny_tasks and plan.packs
    based = load_config("tiny", ["model.base_model_uri=s3://m/qwen"])
    assert steps.plan_run(based, {}).tokenizer_from == "s3://m/qwen"
    with pytest.raises(ValueError, match="use \\[generated:tiny\\] alone or URIs"):
        load_config("tiny", ["data.sources.pretrain=[generated:tiny,s3://x]"])
    with pytest.raises(ValueError, match="unknown generated source 'generated:big'"):
        load_config("tiny", ["data.sources.grpo=generated:big"])


def test_inputs_must_exist_and_start_models_be_imported(tmp_path):
    from tiny_checkpoints import write_dream_checkpoint

    ck = write_dream_checkpoint(tmp_path / "dc")
    cfg = load_config("tiny")
    args = {"start_from": "grpo", "start_model_uri": str(ck.path)}
    plan = steps.plan_run(cfg, args)
    with pytest.raises(
        storage.IncompleteArtifactError, match=f"import it first: diffucoder model import SRC {ck.path}"
    ):
        steps.check_inputs(cfg, args, plan)
    with pytest.raises(FileNotFoundError, match="start_model_uri=.*no config.json there"):
        steps.check_inputs(cfg, {**args, "start_model_uri": str(tmp_path / "none")}, plan)
    missing = load_config("tiny", [f"data.sources.grpo={tmp_path / 'rl.jsonl'}"])
    with pytest.raises(FileNotFoundError, match="data.sources.grpo: .*rl.jsonl does not exist"):
        steps.check_inputs(missing, args, plan)
    unsealed = load_config("tiny", [f"data.sources.midtrain={tmp_path}"])
    with pytest.raises(
        storage.IncompleteArtifactError, match="data.sources.midtrain=.*not a sealed directory"
    ):
        steps.check_inputs(unsealed, {}, steps.plan_run(unsealed, {}))
