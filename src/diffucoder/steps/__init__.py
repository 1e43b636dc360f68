"""The bodies of the KFP pipeline's steps, as plain functions (this package never imports kfp).

Each component of the KFP side (``components/``) parses its inputs and calls one function here, so
the step logic is importable and unit-testable without KFP, and the components stay thin. Large
data never travels through KFP: every step writes its output under the run root (a local dir or
``s3://`` prefix) with :mod:`diffucoder.storage`, and hands the next step a small KFP artifact
whose metadata (:func:`artifact_metadata`) carries the URI, sizes, checksums and the resolved config.

Run layout under ``<output_root>/<run name>/``::

    pipeline.json        parent MLflow run id, tracking URI, pipeline arguments, resolved config
    config.yaml          the resolved RunConfig every step reads
    steps/<step>.json    one record per finished step: seconds, key metrics, artifact URIs
    pretrain/ midtrain/ instruct/ grpo/ eval-<label>/   the stages' artifacts

Data artifacts live under ``<output_root>/data/<data fingerprint>/`` (:func:`data_root`): raw/,
work/, corpus/, tasks/, tokenizer/, midtrain-mix/, <stage>-packed/, steps/, plan.json. What the data
steps build follows the run's :class:`DataPlan` (the stages it trains and the sources
``data.sources`` names); a step the run does not need writes a small sealed ``unused/<step>/``
marker instead, so the DAG keeps one shape for every run.

One module per concern: :mod:`~diffucoder.steps.run_config` (the config and the run's identity),
:mod:`~diffucoder.steps.records` (run and step records, artifact metadata),
:mod:`~diffucoder.steps.run_lifecycle` (the MLflow parent run's open and close, the sandbox,
cleanup), :mod:`~diffucoder.steps.data_plan` (what the data steps build and where),
:mod:`~diffucoder.steps.data` (the data steps), :mod:`~diffucoder.steps.train_eval` (training,
evaluation, registration), :mod:`~diffucoder.steps.promotion` (candidate vs champion),
:mod:`~diffucoder.steps.retrain` (the data fingerprint and skip-if-unchanged) and
:mod:`~diffucoder.steps.preloads` (what the heavy steps import up front).

Its public names, listed here, resolve on first use (``diffucoder.lazy``).
"""

from diffucoder.lazy import by_module, lazy_exports

_EXPORTS = by_module(
    __name__,
    {
        "run_config": ("config_from_yaml", "export_run_env", "resolve_config", "run_name", "run_root"),
        "records": (
            "PIPELINE_RECORD",
            "STEP_DIR",
            "artifact_metadata",
            "read_pipeline_record",
            "read_step_records",
            "record_step",
            "timed_step",
        ),
        "run_lifecycle": (
            "SANDBOX_MODES",
            "cleanup_cluster",
            "close_pipeline",
            "open_pipeline",
            "sandbox_endpoint",
        ),
        "data_plan": (
            "PLAN_FILE",
            "SOURCE_HINTS",
            "DataPlan",
            "check_inputs",
            "data_root",
            "is_unused",
            "no_source",
            "plan_run",
            "read_plan",
            "unused",
            "write_plan",
        ),
        "data": (
            "INGEST_STARTED",
            "corpus_uri",
            "data_config",
            "data_report",
            "dedup",
            "dedup_band",
            "dedup_plan",
            "filter_unit",
            "finalize_unit",
            "ingest_started",
            "ingest_units",
            "midtrain_mix",
            "pack",
            "raw_sources",
            "tiny_tasks",
            "tokenizer",
        ),
        "train_eval": (
            "FINAL_EVALS",
            "LAUNCHERS",
            "STAGE_DATA",
            "evaluate",
            "register",
            "stage_data_uri",
            "train",
        ),
        "promotion": ("promote",),
        "retrain": ("DATA_ARTIFACTS", "SKIPPED_TAG", "check_data", "data_fingerprint", "stage_source_uris"),
        "preloads": ("EVAL_MODULES", "TOKENIZER_MODULES", "TRACKING_MODULES", "TRAIN_MODULES"),
    },
)
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
