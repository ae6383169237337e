"""Training: one model at a time (``single``) and many same-shaped models at once."""

from initlab.train.result import RunResult
from initlab.train.run import build_initialized_model, load_data, run_config
from initlab.train.single import evaluate, train_model

__all__ = [
    "RunResult",
    "build_initialized_model",
    "evaluate",
    "load_data",
    "run_config",
    "train_model",
]
