"""The setting the pipeline's end-to-end tests run: the ``smoke`` preset, every stage real, each tiny.

A ~0.2M-parameter model, two stdlib shards, a few optimizer steps per stage and a handful of
evaluation problems (src/diffucoder/presets/smoke.yaml), with the pipeline parameters `make smoke`
passes, so the whole DAG runs through kfp.local in a few minutes on 2 cores.
"""

MICRO_PRESET = "smoke"
MICRO_PARAMS = {"stdlib_max_files": 40, "tokenizer_vocab_size": 400}
