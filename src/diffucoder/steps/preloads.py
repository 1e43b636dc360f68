"""What the heavy steps import (the library imports these lazily, deep inside).

Each such step loads them first with :func:`diffucoder.preload.preload`, so the garbage collector
walks them neither while they import nor when the task's process exits.
"""

TRACKING_MODULES = ("mlflow",)
TRAIN_MODULES = ("diffucoder.train.run", "deepspeed", "mlflow", "matplotlib.pyplot")
EVAL_MODULES = ("diffucoder.evaluation.run", "diffucoder.model", "mlflow")
TOKENIZER_MODULES = ("diffucoder.data.tokenizer",)
