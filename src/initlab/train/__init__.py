"""Training: one autograd engine for M >= 1 models of any architecture (see :mod:`.engine`).

``run_config(config)`` trains one run; ``train_configs(configs)`` trains a group of runs that
share an architecture and step schedule as stacks (:mod:`.grouping`, :mod:`.memory`);
``train_model(model, data)`` trains a given module.
"""

from initlab.train.evaluate import evaluate
from initlab.train.grouping import group_configs
from initlab.train.result import RunResult
from initlab.train.run import (
    build_initialized_model,
    load_data,
    run_config,
    train_configs,
    train_model,
)

__all__ = [
    "RunResult",
    "build_initialized_model",
    "evaluate",
    "group_configs",
    "load_data",
    "run_config",
    "train_configs",
    "train_model",
]
