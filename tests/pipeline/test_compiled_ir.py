"""The compiled IR: tasks and their dependencies, GPU placement, caching/retries, parameters, images.

These read the YAML the KFP backend would receive, so they hold whatever the SDK did with our DSL
(the KFP SDK's compiler). kfp.local ignores every kfp-kubernetes setting, so this is where they are checked.
"""

from __future__ import annotations

import re

import pytest
from diffucoder_kfp.build_config import PipelineBuildConfig
from diffucoder_kfp.compile import IR_PATH

from diffucoder.config import load_config
from diffucoder.images import image_ref

BUILD = PipelineBuildConfig()
PAPER_K8S = load_config("paper-7b").k8s


def _dag(spec: dict, component: str) -> dict:
    return spec["components"][component]["dag"]["tasks"]


def _condition(spec: dict, tasks: dict, test: str) -> tuple[dict, dict]:
    """(the condition task whose trigger contains ``test``, the tasks inside it)."""
    for name, task in tasks.items():
        if name.startswith("condition-") and test in task.get("triggerPolicy", {}).get("condition", ""):
            return task, _dag(spec, task["componentRef"]["name"])
    raise AssertionError(f"no condition with {test!r} among {sorted(tasks)}")


def _train(spec: dict) -> tuple[dict, dict]:
    """(the condition task that runs the stages when check-data says so, the tasks inside it)."""
    return _condition(spec, _dag(spec, "comp-exit-handler-1"), "check-data-Output'] == true")


def _branch(spec: dict, start: str) -> dict:
    """The tasks of the dsl.If branch taken when start_from == ``start``."""
    return _condition(spec, _train(spec)[1], f"start_from'] == '{start}'")[1]


def _nested(spec: dict, tasks: dict, prefix: str) -> dict:
    """Tasks of the first nested condition whose branches hold a task named ``prefix``-ish (GRPO/else)."""
    branches = [t for n, t in tasks.items() if n.startswith("condition-branches")]
    assert len(branches) == 1, tasks.keys()
    inner = _dag(spec, branches[0]["componentRef"]["name"])
    for task in inner.values():
        sub = _dag(spec, task["componentRef"]["name"])
        if any(n.startswith(prefix) for n in sub):
            return sub
    raise AssertionError(f"no nested branch with a {prefix} task")


def _executor(spec: dict, tasks: dict, name: str) -> str:
    component = tasks[name]["componentRef"]["name"]
    return spec["components"][component]["executorLabel"]


def test_checked_in_ir_is_current(compiled_ir):
    """pipelines/diffucoder.yaml must be what `make compile` writes now (a DAG change needs a recompile)."""
    path, _, _ = compiled_ir
    strip = lambda text: re.sub(r"sdkVersion: kfp-[\d.]+", "", text)  # noqa: E731
    assert IR_PATH.is_file(), "pipelines/diffucoder.yaml is missing: run `make compile`"
    assert strip(IR_PATH.read_text()) == strip(path.read_text()), "stale IR: run `make compile` and commit"


def test_compile_command_writes_into_the_working_directory(compiled_ir, tmp_path, monkeypatch):
    """`diffucoder pipeline compile` with no --out: ./diffucoder.yaml, the same IR, and nothing beside
    the package (an installed wheel's folder is no place for a user's build output)."""
    from diffucoder.cli import main

    before = IR_PATH.stat().st_mtime_ns
    monkeypatch.chdir(tmp_path)
    assert main(["pipeline", "compile"]) == 0
    assert (tmp_path / "diffucoder.yaml").read_text() == compiled_ir[0].read_text()
    assert IR_PATH.stat().st_mtime_ns == before


def test_exit_handler_wraps_the_run_and_closes_it(compiled_ir):
    _, spec, _ = compiled_ir
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"close-run", "exit-handler-1"}
    close = root["close-run"]
    assert close["dependentTasks"] == ["exit-handler-1"]
    assert close["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert "status" in close["inputs"]["parameters"]


def test_data_fan_out_and_dependencies(compiled_ir):
    _, spec, _ = compiled_ir
    tasks = _dag(spec, "comp-exit-handler-1")
    loops = {n: t for n, t in tasks.items() if n.startswith("for-loop")}
    assert len(loops) == 3
    bodies = {n: set(_dag(spec, t["componentRef"]["name"])) for n, t in loops.items()}
    filter_loop = next(n for n, b in bodies.items() if b == {"filter-shard"})
    band_loop = next(n for n, b in bodies.items() if b == {"dedup-band"})
    finalize_loop = next(n for n, b in bodies.items() if b == {"finalize-shard"})
    for loop in (filter_loop, band_loop, finalize_loop):
        assert tasks[loop]["iteratorPolicy"]["parallelismLimit"] == BUILD.shard_parallelism
        assert tasks[loop]["parameterIterator"]["items"]["inputParameter"]
    deps = {n: set(t.get("dependentTasks", [])) for n, t in tasks.items()}
    assert "ingest" in deps[filter_loop] and "open-run" in deps["ingest"]
    # the global dedup fans out: plan after every filter task, LSH tasks, then the join
    assert filter_loop in deps["dedup-plan"]
    assert "dedup-plan" in deps[band_loop]
    assert band_loop in deps["dedup"]
    assert {"dedup", "ingest"} <= deps[finalize_loop]
    assert finalize_loop in deps["data-report"]
    assert "data-report" in deps["tokenizer"]
    assert {"data-report", "tiny-tasks"} <= deps["midtrain-mix"]
    assert {"data-report", "tokenizer"} <= deps["pack-pretrain"]
    assert {"midtrain-mix", "tokenizer"} <= deps["pack-midtrain"]


def test_full_chain_from_pretrain(compiled_ir):
    _, spec, _ = compiled_ir
    chain = _branch(spec, "pretrain")
    deps = {n: set(t.get("dependentTasks", [])) for n, t in chain.items()}
    assert {"pretrain", "midtrain", "evaluate-midtrain", "instruct", "evaluate-instruct"} <= set(chain)
    assert "pretrain" in deps["midtrain"] and "midtrain" in deps["instruct"]
    assert "midtrain" in deps["evaluate-midtrain"] and "instruct" in deps["evaluate-instruct"]
    grpo = _nested(spec, chain, "grpo")
    grpo_deps = {n: set(t.get("dependentTasks", [])) for n, t in grpo.items()}
    assert set(grpo) == {"grpo", "evaluate-grpo", "register-model", "promote-model"}
    assert "grpo" in grpo_deps["evaluate-grpo"]
    assert {"grpo", "evaluate-grpo"} <= grpo_deps["register-model"]
    assert "register-model" in grpo_deps["promote-model"]
    version = grpo["promote-model"]["inputs"]["parameters"]["version"]["taskOutputParameter"]
    assert version["producerTask"] == "register-model"
    assert chain["pretrain"]["inputs"]["artifacts"]["data"]["componentInputArtifact"].endswith(
        "pack-pretrain-packed"
    )
    skip = _nested(spec, chain, "evaluate-final")
    assert {n.rsplit("-", 1)[0] if n[-1].isdigit() else n for n in skip} == {
        "evaluate-final",
        "register-model",
        "promote-model",
    }


def test_check_data_gates_every_stage_after_the_data_steps(compiled_ir):
    """check-data fingerprints all six data artifacts; the stages run only when it says true."""
    _, spec, _ = compiled_ir
    check = _dag(spec, "comp-exit-handler-1")["check-data"]
    artifacts = check["inputs"]["artifacts"]
    assert {a["taskOutputArtifact"]["producerTask"] for a in artifacts.values()} == {
        "data-report",
        "tiny-tasks",
        "tokenizer",
        "midtrain-mix",
        "pack-pretrain",
        "pack-midtrain",
    }
    assert check["inputs"]["parameters"]["skip_if_data_unchanged"]["componentInputParameter"] == (
        "pipelinechannel--skip_if_data_unchanged"
    )
    assert check["cachingOptions"] == {}  # the champion it compares with changes between runs
    train, inner = _train(spec)
    assert "check-data" in train["dependentTasks"]
    assert all(name.startswith("condition-") for name in inner)  # nothing trains outside the gate


@pytest.mark.parametrize(
    "start, skipped",
    [
        ("midtrain", {"pretrain"}),
        ("instruct", {"pretrain", "midtrain"}),
        ("grpo", {"pretrain", "midtrain", "instruct"}),
    ],
)
def test_later_start_branches_begin_at_their_stage(compiled_ir, start, skipped):
    _, spec, _ = compiled_ir
    chain = _branch(spec, start)
    stages = {re.sub(r"-\d+$", "", n) for n in chain}
    assert start in stages and not skipped & stages
    name = next(n for n in chain if re.sub(r"-\d+$", "", n) == start)
    assert "init_uri" in chain[name]["inputs"]["parameters"]  # starts from start_model_uri


def test_gpu_tasks_carry_pool_placement(compiled_ir):
    _, spec, platform = compiled_ir
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    grpo = _nested(spec, _branch(spec, "pretrain"), "grpo")
    for task in ("grpo", "evaluate-grpo"):
        label = _executor(spec, grpo, task)
        resources = spec["deploymentSpec"]["executors"][label]["container"]["resources"]
        expected = str(PAPER_K8S.trainjob.gpus_per_node) if task == "grpo" else str(BUILD.eval_gpus)
        accelerator = resources["accelerator"]
        assert (accelerator["resourceType"], accelerator["resourceCount"]) == (BUILD.gpu_resource, expected)
        k8s = executors[label]
        assert k8s["nodeSelector"]["labels"] == BUILD.gpu_node_selector
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s["tolerations"]
        shm = k8s["emptyDirMounts"][0]
        assert (shm["mountPath"], shm["medium"], shm["sizeLimit"]) == ("/dev/shm", "Memory", BUILD.shm_size)
        assert int(k8s["activeDeadlineSeconds"]) > 0
        assert k8s["podMetadata"]["labels"]["diffucoder.io/sandbox-client"] == "true"
        assert k8s["secretAsEnv"][0]["secretName"] == BUILD.s3_secret


def test_multi_node_stages_are_cpu_launchers(compiled_ir):
    """Stages with >1 node in the paper config launch TrainJobs: the launcher pod asks for no GPU."""
    _, spec, platform = compiled_ir
    chain = _branch(spec, "pretrain")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for stage in ("pretrain", "midtrain", "instruct"):
        assert PAPER_K8S.trainjob.num_nodes[stage] > 1
        label = _executor(spec, chain, stage)
        assert "accelerator" not in spec["deploymentSpec"]["executors"][label]["container"].get(
            "resources", {}
        )
        assert int(executors[label]["activeDeadlineSeconds"]) == BUILD.stage_timeout_s[stage]
        assert chain[stage]["retryPolicy"]["maxRetryCount"] == BUILD.retries
        assert chain[stage]["inputs"]["parameters"]["launcher"]["componentInputParameter"].endswith(
            "launcher"
        )


def test_caching_on_for_data_off_for_training(compiled_ir):
    _, spec, _ = compiled_ir
    tasks = _dag(spec, "comp-exit-handler-1")
    for name in (
        "ingest",
        "dedup-plan",
        "dedup",
        "data-report",
        "tiny-tasks",
        "tokenizer",
        "midtrain-mix",
        "pack-pretrain",
    ):
        assert tasks[name]["cachingOptions"] == {"enableCache": True}, name
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == BUILD.retries
    assert _dag(spec, "comp-for-loop-2")["filter-shard"]["cachingOptions"] == {"enableCache": True}
    for name in ("open-run", "sandbox-endpoint"):
        assert tasks[name]["cachingOptions"] == {}
    chain = _branch(spec, "pretrain")
    for name in ("pretrain", "midtrain", "instruct", "evaluate-instruct"):
        assert chain[name]["cachingOptions"] == {}, name
    for name, task in _nested(spec, chain, "grpo").items():
        assert task["cachingOptions"] == {}, name


def test_pipeline_parameters_and_defaults(compiled_ir):
    _, spec, _ = compiled_ir
    params = spec["root"]["inputDefinitions"]["parameters"]
    expected = {
        "preset": "paper-7b",
        "sandbox_mode": "shared",
        "launcher": "trainjob",
        "start_from": "pretrain",
        "run_grpo": True,
        "seed": -1,
        "checkpoint_eval_benchmarks": "tiny_heldout",
        "sandbox_url": BUILD.shared_sandbox_url,
        "tokenizer_vocab_size": 4096,
        "skip_if_data_unchanged": False,
        "run_name": "",
    }
    for name, default in expected.items():
        assert params[name]["defaultValue"] == default, name
    for name in (
        "overrides",
        "config_yaml",
        "output_root",
        "tracking_uri",
        "experiment",
        "base_model_uri",
        "benchmark_root",
        "start_model_uri",
    ):
        assert name in params, name
    # every stage's data comes from the config's data.sources section, never from a parameter
    for name in ("raw_data_uris", "sft_data_uri", "rl_data_uri"):
        assert name not in params, name
    assert spec["pipelineInfo"]["name"] == "diffucoder"


def test_images_come_from_the_project_tags(compiled_ir):
    _, spec, _ = compiled_ir
    images = {label: e["container"]["image"] for label, e in spec["deploymentSpec"]["executors"].items()}
    assert images["exec-ingest"] == image_ref("tools")
    assert images["exec-pretrain"] == image_ref("trainer")
    assert images["exec-evaluate-instruct"] == image_ref("trainer")
    for label, executor in spec["deploymentSpec"]["executors"].items():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command, f"{label} installs packages at start (install_kfp_package=False)"
