"""What the heavy steps import (the library imports these lazily, deep inside).

Each such step loads them first with :func:`diffucoder.preload.preload`, so the garbage collector
walks them neither while they import nor when the task's process exits.
"""

TRACKING_MODULES = ("mlflow",)
TRAIN_MODULES = ("diffucoder.train.run", "deepspeed", "mlflow", "matplotlib.pyplot")
# evaluating a model: decoding (torch) and the report's plots (matplotlib), which the evaluation
# imports only where it decodes or draws, so that scoring a samples file loads neither
EVAL_MODULES = (
    "diffucoder.evaluation.run",
    "diffucoder.evaluation.generation",
    "matplotlib.figure",
    "diffucoder.model",
    "mlflow",
)
TOKENIZER_MODULES = ("diffucoder.data.tokenizer",)
