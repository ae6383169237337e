"""What a training run produces: per-epoch records, final metrics, status (its names:
:mod:`initlab.run_status`)."""

from __future__ import annotations

import contextlib
import json
import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from initlab.config import SAME, RunConfig, unused_in_run
from initlab.run_status import OK, SHARE_TASKS, STUCK, STUCK_ALPHA

ENTROPY_MARGIN = 1e-3
"""A loss this fraction below the labels' entropy, or less, is the entropy up to rounding
(a zero-initialized model predicting the class shares): not evidence of learning."""


@dataclass
class RunResult:
    """The outcome of one run.

    ``epochs`` holds one dict per completed epoch with ``epoch``, ``train_loss``,
    ``train_accuracy``, ``val_loss``, ``val_accuracy`` and ``seconds``. ``status`` is
    ``ok``, ``stuck`` (trained, but no better than predicting one class:
    :func:`final_status`), ``diverged`` (the loss became NaN/inf: training stopped there,
    test metrics are NaN) or ``failed`` (an error; ``message`` says which).
    ``layer_stats`` holds tidy per-layer rows recorded during training, if tracking was on.
    ``strategy``: how its stack ran the models (``stacked``, ``vmap`` or ``looped``,
    :mod:`initlab.train.stack`; ``""`` for a model trained alone). ``task``: the task it
    was trained for, resolved from the data (``classification``, ``regression`` or
    ``sequence``, never ``auto``; ``""`` when unknown): what ``test_accuracy`` holds
    (:data:`initlab.task_names.SCORES`). ``device``: where it trained, e.g. ``cpu`` or
    ``cuda:0 (NVIDIA H200)`` (:func:`initlab.train.device.device_name`; ``""`` if unknown).
    """

    config: RunConfig | None
    status: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    train_seconds: float = 0.0
    message: str = ""
    layer_stats: list[dict[str, Any]] = field(default_factory=list)
    strategy: str = ""
    task: str = ""
    device: str = ""

    @property
    def final_train_loss(self) -> float:
        return self.epochs[-1]["train_loss"] if self.epochs else math.nan

    @property
    def final_val_accuracy(self) -> float:
        return self.epochs[-1]["val_accuracy"] if self.epochs else math.nan

    def summary_row(self) -> dict[str, Any]:
        """One flat row: the config's fields (empty where the run does not use them:
        :func:`initlab.config.unused_in_run`), then the run's outcome."""
        row: dict[str, Any] = self.config.to_dict() if self.config else {}
        row.pop("extra", None)
        if self.config:
            row["hidden"] = "-".join(map(str, self.config.hidden))
            row["model_args"] = json.dumps(self.config.model_args, sort_keys=True)
            row["run_id"] = self.config.key()
            row["output_init"] = self.config.output_init or SAME  # as the store writes it
            row.update(dict.fromkeys(unused_in_run(self.config)))
        row.update(
            status=self.status,
            test_accuracy=self.test_accuracy,
            test_loss=self.test_loss,
            final_train_loss=self.final_train_loss,
            final_val_accuracy=self.final_val_accuracy,
            epochs_done=len(self.epochs),
            train_seconds=self.train_seconds,
            message=self.message,
            resolved_task=self.task or None,
            resolved_device=self.device or None,
        )
        return row


@dataclass(frozen=True)
class Baseline:
    """The best constant prediction on a test set: ``share``, the majority class's share of
    its ``n`` labels (the accuracy of always predicting that class), and ``entropy``,
    ``-sum_c p_c log p_c`` of the labels' shares ``p_c`` in nats (the cross-entropy of
    predicting those shares for every example: no constant prediction has a lower loss)."""

    share: float
    n: int
    entropy: float = math.nan


_BASELINES: weakref.WeakKeyDictionary[object, Baseline] = weakref.WeakKeyDictionary()


def majority_baseline(labels: torch.Tensor) -> Baseline:
    """``Baseline(max_c count_c / n, n, entropy)`` of integer class ``labels`` (``[N]``, or
    token targets ``[N, T]``, whose padding, any negative id such as ``-100``, is no label);
    ``Baseline(nan, 0)`` for no labels."""
    flat = labels.reshape(-1).long().cpu()
    flat = flat[flat >= 0]
    n = int(flat.numel())
    if n == 0:
        return Baseline(math.nan, 0)
    counts = torch.bincount(flat)
    shares = counts[counts > 0].double() / n
    return Baseline(int(counts.max()) / n, n, float(-(shares * shares.log()).sum()))


def dataset_baseline(data: object) -> Baseline:
    """:func:`majority_baseline` of ``data.y_test``, computed once per dataset object (a
    weak cache: every stack and run on the same loaded data shares it)."""
    with contextlib.suppress(KeyError, TypeError):  # TypeError: not weak-referenceable
        return _BASELINES[data]
    baseline = majority_baseline(data.y_test)
    with contextlib.suppress(TypeError):  # then computed again next time
        _BASELINES[data] = baseline
    return baseline


def final_status(
    test_accuracy: float,
    baseline: Baseline | None,
    task: str = "classification",
    test_loss: float = math.nan,
    improvement_p: float = math.nan,
    accuracy_p: float = math.nan,
) -> str:
    """``stuck`` when a finished regression run's R² (``test_accuracy``) is at most 0, or
    not significantly above 0: ``improvement_p >= STUCK_ALPHA``
    (:meth:`initlab.train.tasks.Meter.improvement_p`, the one-sided paired t-test of each
    test example's squared error against the test targets' mean; NaN: R² alone decides).
    The mean beats every constant (its SSE is the smallest a constant can have), so a model
    that learned only its output bias (a zero init) is stuck, as is one worse than a
    constant, and one whose R² of 0.01 on 200 examples is within their noise. ``stuck``
    when a finished classification run is no better than predicting one class (a sequence
    run: one token): the one-sided binomial test of ``k = round(test_accuracy ·
    n)`` correct of ``n`` test labels (real target tokens) against ``p0 = baseline.share``
    (``alternative="greater"``) gives ``p >= STUCK_ALPHA``, and its mean cross-entropy
    ``test_loss`` is not below ``baseline.entropy · (1 - ENTROPY_MARGIN)`` significantly
    (``improvement_p < STUCK_ALPHA``: the paired test of each example's cross-entropy against
    the label shares', :meth:`initlab.train.tasks.Meter.improvement_p`, per test sequence for
    tokens, which are not independent; NaN: the margin alone): a loss below the labels' entropy
    beats every constant prediction, so the model used its inputs even where its most
    likely class is still the majority one (a character model that learned more than letter
    frequencies but still guesses a space); 0.4% below it on 200 examples is noise. On a
    test set too small for any accuracy to be significant (``share^n >= STUCK_ALPHA``: even
    all ``n`` right would not be), ``stuck`` only when ``k`` is at most the majority count.
    A sequence run's accuracy is tested over its test sequences instead when ``accuracy_p``
    is given (:meth:`initlab.train.tasks.Meter.accuracy_p`: a binomial test over tokens
    counted correlated tokens as independent trials, and called runs ``ok`` on a 1% edge):
    ``stuck`` when ``accuracy_p >= STUCK_ALPHA``. ``ok`` otherwise, without a baseline or
    test labels, or for a NaN score."""
    from scipy import stats as sps  # ~0.7 s to import: on use

    if task == "regression":
        if not math.isfinite(test_accuracy):  # undefined (constant targets) or diverged
            return OK
        not_better = test_accuracy <= 0 or improvement_p >= STUCK_ALPHA  # NaN p: R² alone
        return STUCK if not_better else OK
    if task not in SHARE_TASKS or baseline is None or baseline.n == 0:
        return OK
    if not math.isfinite(test_accuracy):
        return OK
    below = math.isfinite(test_loss) and test_loss < baseline.entropy * (1 - ENTROPY_MARGIN)
    if below and not improvement_p >= STUCK_ALPHA:  # NaN p (a sequence): the margin alone
        return OK
    if math.isfinite(accuracy_p):  # a sequence run: its test sequences are the units
        return STUCK if accuracy_p >= STUCK_ALPHA else OK
    k = min(max(round(test_accuracy * baseline.n), 0), baseline.n)
    if baseline.share**baseline.n >= STUCK_ALPHA:  # 4 balanced labels: 1.0 is not significant
        return STUCK if k <= round(baseline.share * baseline.n) else OK
    p = sps.binomtest(k, baseline.n, baseline.share, alternative="greater").pvalue
    return STUCK if p >= STUCK_ALPHA else OK
