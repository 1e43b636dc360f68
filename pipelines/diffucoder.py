"""The diffucoder DAG: data fan-out -> tokenizer -> pretrain -> midtrain -> instruct -> GRPO ->
evaluate -> register, as one KFP v2 pipeline.

Everything about *where* a task runs lives here, not in the components: caching
(on for data steps, whose outputs are keyed by the data fingerprint; off for training, evaluation
and run control), retries (transient failures of data and launcher pods), GPU placement
(accelerator, node pool selector, tolerations, ``/dev/shm``, timeouts through kfp-kubernetes), and
the exit handler that closes the MLflow parent run and deletes what the run launched.

GPU settings come from :class:`diffucoder_kfp.build_config.PipelineBuildConfig` and the compile
preset's ``k8s`` section, read once when the pipeline is built (``build_pipeline``); the checked-in
IR (pipelines/diffucoder.yaml) is built from the defaults.

Stage selection at run time: ``start_from`` (pretrain|midtrain|instruct|grpo, with
``start_model_uri`` for the later ones) picks one ``dsl.If`` branch holding the chain from that
stage on; ``run_grpo`` skips stage 4 (the instruct model is then evaluated and registered).
``skip_if_data_unchanged`` skips every stage when the data fingerprint (``check-data``, after the
cached data steps) equals the champion model's. Registration is followed by ``promote-model``
(candidate vs champion, :mod:`diffucoder.ops.promotion`). ``run_name`` (default: the KFP job name)
names the run root and the MLflow parent run.
Each stage reads the source the config's ``data.sources`` names; open-run refuses a run that would
train a stage without one, and the data steps build only what the run's stages read (a step the run
does not need leaves an "unused" marker, so the DAG has one shape).
"""

import copy
import dataclasses

from diffucoder_kfp.build_config import PipelineBuildConfig
from diffucoder_kfp.components import data as data_steps
from diffucoder_kfp.components.evaluate import evaluate, promote_model, register_model
from diffucoder_kfp.components.run_control import check_data, close_run, open_run, sandbox_endpoint
from diffucoder_kfp.components.train import train_stage
from kfp import dsl, kubernetes

from diffucoder.config import load_config
from diffucoder.train.config import STAGES

PIPELINE_NAME = "diffucoder"
SANDBOX_CLIENT_LABEL = ("diffucoder.io/sandbox-client", "true")


def _named(component, name: str):
    """The same component under another name, so each stage's task is called after its stage."""
    renamed = copy.copy(component)
    renamed.component_spec = dataclasses.replace(component.component_spec, name=name)
    renamed.name = name
    return renamed


STAGE_COMPONENTS = {stage: _named(train_stage, stage) for stage in STAGES}


class _Placement:
    """Applies the build config's caching/retry/GPU rules to tasks as the DAG creates them."""

    def __init__(self, build: PipelineBuildConfig, multi_node: set[str]):
        self.build = build
        self.multi_node = multi_node  # stages that run as TrainJobs when launcher=trainjob

    def data(self, task):
        task.set_caching_options(True)
        task.set_retry(self.build.retries, backoff_duration="30s", backoff_factor=2.0)
        task.set_cpu_request(self.build.data_cpu).set_memory_request(self.build.data_memory)
        return task

    def control(self, task):
        task.set_caching_options(False)
        task.set_retry(self.build.retries, backoff_duration="10s")
        return task

    def gpu(self, task, gpus: int, timeout_s: int):
        """A task that computes on the GPU pool in its own pod."""
        b = self.build
        task.set_caching_options(False)
        task.set_accelerator_type(b.gpu_resource).set_accelerator_limit(gpus)
        task.set_cpu_request(b.gpu_pod_cpu).set_memory_request(b.gpu_pod_memory)
        for key, value in b.gpu_node_selector.items():
            kubernetes.add_node_selector(task, key, value)
        for t in b.gpu_tolerations:
            kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=b.shm_size
        )
        kubernetes.set_timeout(task, timeout_s)
        return self._cluster_access(task)

    def launcher(self, task, timeout_s: int):
        """A TrainJob launcher pod: CPU only, the GPUs go to the TrainJob it creates."""
        task.set_caching_options(False)
        task.set_retry(self.build.retries, backoff_duration="60s")  # get-or-create: a retry re-attaches
        kubernetes.set_timeout(task, timeout_s)
        return self._cluster_access(task)

    def _cluster_access(self, task):
        kubernetes.add_pod_label(task, *SANDBOX_CLIENT_LABEL)
        kubernetes.use_secret_as_env(task, self.build.s3_secret, self.build.s3_secret_env, optional=True)
        return task


def build_pipeline(build: PipelineBuildConfig | None = None, compile_preset: str = "paper-7b"):
    """The pipeline function for one build config; GPU counts come from the preset's k8s section."""
    build = build or PipelineBuildConfig()
    k8s = load_config(compile_preset).k8s
    multi_node = {s for s, n in k8s.trainjob.num_nodes.items() if n > 1}
    place = _Placement(build, multi_node)
    gpus = k8s.trainjob.gpus_per_node or 1

    @dsl.pipeline(name=PIPELINE_NAME, description=__doc__.splitlines()[0])
    def diffucoder(
        preset: str = compile_preset,
        overrides: list = [],  # noqa: B006 - KFP takes the default literally; it is never mutated
        config_yaml: str = "",
        output_root: str = "",
        seed: int = -1,
        tracking_uri: str = "",
        experiment: str = "",
        base_model_uri: str = "",
        stdlib_max_files: int = 0,
        tokenizer_vocab_size: int = 4096,
        benchmark_root: str = "",
        checkpoint_eval_benchmarks: str = "tiny_heldout",
        final_eval_benchmarks: str = "",
        sandbox_mode: str = "shared",
        sandbox_url: str = build.shared_sandbox_url,
        launcher: str = "trainjob",
        start_from: str = "pretrain",
        start_model_uri: str = "",
        run_grpo: bool = True,
        skip_if_data_unchanged: bool = False,
        run_name: str = "",
    ):
        job_id, job_name = dsl.PIPELINE_JOB_ID_PLACEHOLDER, dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        config_args = dict(
            preset=preset,
            overrides=overrides,
            config_yaml=config_yaml,
            output_root=output_root,
            seed=seed,
            tracking_uri=tracking_uri,
            experiment=experiment,
            base_model_uri=base_model_uri,
            benchmark_root=benchmark_root,
        )
        exit_task = place.control(
            close_run(
                **config_args,
                sandbox_mode=sandbox_mode,
                launcher=launcher,
                kfp_run_id=job_id,
                job_name=job_name,
                run_name=run_name,
            )
        )
        with dsl.ExitHandler(exit_task, name="diffucoder-run"):
            run = place.control(
                open_run(
                    **config_args,
                    kfp_run_id=job_id,
                    job_name=job_name,
                    run_name=run_name,
                    stdlib_max_files=stdlib_max_files,
                    vocab_size=tokenizer_vocab_size,
                    arguments=dict(
                        sandbox_mode=sandbox_mode,
                        sandbox_url=sandbox_url,
                        launcher=launcher,
                        start_from=start_from,
                        start_model_uri=start_model_uri,
                        run_grpo=run_grpo,
                        stdlib_max_files=stdlib_max_files,
                        tokenizer_vocab_size=tokenizer_vocab_size,
                        checkpoint_eval_benchmarks=checkpoint_eval_benchmarks,
                        final_eval_benchmarks=final_eval_benchmarks,
                        skip_if_data_unchanged=skip_if_data_unchanged,
                        run_name=run_name,
                    ),
                )
            )
            cfg_yaml, run_root = run.outputs["config_yaml"], run.outputs["run_root"]
            data_root, parent = run.outputs["data_root"], run.outputs["parent_run_id"]

            # ---- data: fan-out over shards, dedup (plan, LSH fan-out, join), fan-out finalize, report ----
            units = place.data(
                data_steps.ingest(
                    config_yaml=cfg_yaml, data_root=data_root, stdlib_max_files=stdlib_max_files
                )
            )
            with dsl.ParallelFor(
                units.output, parallelism=build.shard_parallelism, name="filter-shards"
            ) as unit:
                # loop bodies take item fields only (see diffucoder.steps.ingest_units)
                filtered = place.data(
                    data_steps.filter_shard(data_root=unit.data_root, uri=unit.uri, shard=unit.shard)
                )
            lsh_tasks = place.data(
                data_steps.dedup_plan(
                    config_yaml=cfg_yaml, data_root=data_root, kept_per_shard=dsl.Collected(filtered.output)
                )
            )
            with dsl.ParallelFor(
                lsh_tasks.output, parallelism=build.shard_parallelism, name="dedup-bands"
            ) as item:
                band = place.data(data_steps.dedup_band(data_root=item.data_root, lsh_task=item.lsh_task))
            dedup = place.data(
                data_steps.dedup(data_root=data_root, pairs_per_task=dsl.Collected(band.output))
            )
            with dsl.ParallelFor(
                units.output, parallelism=build.shard_parallelism, name="finalize-shards"
            ) as unit:
                final = place.data(
                    data_steps.finalize_shard(data_root=unit.data_root, shard=unit.shard).after(dedup)
                )
            corpus = place.data(
                data_steps.data_report(
                    config_yaml=cfg_yaml, data_root=data_root, docs_per_shard=dsl.Collected(final.output)
                )
            )
            tasks = place.data(data_steps.tiny_tasks(config_yaml=cfg_yaml, data_root=data_root))
            tok = place.data(
                data_steps.tokenizer(
                    config_yaml=cfg_yaml,
                    data_root=data_root,
                    vocab_size=tokenizer_vocab_size,
                    corpus=corpus.outputs["corpus"],
                )
            )
            mix = place.data(
                data_steps.midtrain_mix(
                    config_yaml=cfg_yaml,
                    data_root=data_root,
                    corpus=corpus.outputs["corpus"],
                    tasks=tasks.outputs["tasks"],
                )
            )
            packed = {
                stage: place.data(
                    _named(data_steps.pack, f"pack-{stage}")(
                        config_yaml=cfg_yaml,
                        data_root=data_root,
                        stage=stage,
                        text=text,
                        tokenizer=tok.outputs["tokenizer"],
                    )
                ).outputs["packed"]
                for stage, text in (("pretrain", corpus.outputs["corpus"]), ("midtrain", mix.outputs["mix"]))
            }
            packed["instruct"] = packed["grpo"] = tasks.outputs["tasks"]
            sandbox = place.control(
                sandbox_endpoint(
                    config_yaml=cfg_yaml,
                    sandbox_mode=sandbox_mode,
                    sandbox_url=sandbox_url,
                    kfp_run_id=job_id,
                )
            )
            common = dict(
                config_yaml=cfg_yaml,
                run_root=run_root,
                parent_run_id=parent,
                kfp_run_id=job_id,
                pipeline_name=job_name,
            )

            def train(stage: str, init_task, stage_launcher):
                task = STAGE_COMPONENTS[stage](
                    stage=stage,
                    **common,
                    launcher=stage_launcher,
                    data=packed[stage],
                    sandbox_url=sandbox.output if stage == "grpo" else "",
                    **(
                        {"init": init_task.outputs["model"]}
                        if init_task is not None
                        else {"init_uri": start_model_uri}
                    ),
                )
                timeout = build.stage_timeout_s[stage]
                if stage in multi_node:
                    return place.launcher(task, timeout)
                return place.gpu(task, gpus, timeout)

            def evaluate_model(label: str, model_task, benchmarks):
                task = _named(evaluate, f"evaluate-{label}")(
                    label=label,
                    **common,
                    benchmarks=benchmarks,
                    sandbox_url=sandbox.output,
                    model=model_task.outputs["model"],
                    tasks=tasks.outputs["tasks"],
                )
                return place.gpu(task, build.eval_gpus, build.eval_timeout_s)

            def register(model_task, eval_task):
                registered = place.control(
                    register_model(
                        config_yaml=cfg_yaml,
                        run_root=run_root,
                        parent_run_id=parent,
                        model=model_task.outputs["model"],
                        evaluation=eval_task.outputs["results"],
                    )
                )
                return place.control(
                    promote_model(
                        config_yaml=cfg_yaml,
                        run_root=run_root,
                        parent_run_id=parent,
                        version=registered.output,
                    )
                )

            # ---- retrain only on new data: the fingerprint of what the stages would train on ----
            data_check = place.control(
                check_data(
                    config_yaml=cfg_yaml,
                    run_root=run_root,
                    parent_run_id=parent,
                    skip_if_data_unchanged=skip_if_data_unchanged,
                    corpus=corpus.outputs["corpus"],
                    tasks=tasks.outputs["tasks"],
                    tokenizer=tok.outputs["tokenizer"],
                    midtrain_mix=mix.outputs["mix"],
                    pretrain_packed=packed["pretrain"],
                    midtrain_packed=packed["midtrain"],
                )
            )

            with dsl.If(data_check.output == True, name="train"):  # noqa: E712 - KFP condition
                for first in STAGES:
                    with dsl.If(start_from == first, name=f"from-{first}"):
                        model = None
                        for stage in STAGES[STAGES.index(first) : -1]:  # stages 1-3
                            if stage == "instruct" and model is not None:
                                # the held-out score stage 3's learning is measured from
                                evaluate_model("midtrain", model, checkpoint_eval_benchmarks)
                            model = train(stage, model, launcher if stage in multi_node else "in-process")
                        if model is None:  # starting at GRPO: stage 4 is the whole chain
                            grpo = train("grpo", None, "in-process")
                            register(grpo, evaluate_model("grpo", grpo, final_eval_benchmarks))
                            continue
                        evaluate_model("instruct", model, checkpoint_eval_benchmarks)
                        with dsl.If(run_grpo == True, name=f"grpo-from-{first}"):  # noqa: E712 - KFP condition
                            grpo = train("grpo", model, "in-process")
                            register(grpo, evaluate_model("grpo", grpo, final_eval_benchmarks))
                        with dsl.Else(name=f"no-grpo-from-{first}"):
                            register(model, evaluate_model("final", model, final_eval_benchmarks))

    return diffucoder


diffucoder = build_pipeline()
