"""The batched engine: train many same-shaped MLPs at once with batched matrix products.

>>> from initlab.train.batched import group_configs, group_key, train_group
>>> for group in group_configs(configs):
...     results = train_group(group, data) if group_key(group[0]) else [run_config(group[0], data)]

Modules: :mod:`.grouping` (which configs train together), :mod:`.stack` (stacked
parameters), :mod:`.functional` (activations, loss, batch norm with their derivatives),
:mod:`.network` (forward and hand-written backward), :mod:`.optim` (SGD, momentum, Adam,
AdamW on stacked tensors), :mod:`.evaluate`, :mod:`.memory` (chunk sizes), :mod:`.chunk`
(the training loop), :mod:`.engine` (``train_group``).
"""

from initlab.train.batched.engine import GroupOutcome, train_group, train_group_states
from initlab.train.batched.grouping import group_configs, group_key
from initlab.train.batched.memory import default_chunk_size

__all__ = [
    "GroupOutcome",
    "default_chunk_size",
    "group_configs",
    "group_key",
    "train_group",
    "train_group_states",
]
