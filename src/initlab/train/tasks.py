"""Per-task loss and score: classification, regression, sequence.

Every function here works on a *stack* of models: outputs ``out`` have a leading model axis
``M`` (``[M, B, ...]``) and targets ``y`` are ``[M, B, ...]`` (each model its own minibatch)
or ``[B, ...]`` (all models on the same examples, as in evaluation).

=============== ========================== ==================================== =============
task            model output, targets      loss (mean per model)                score
=============== ========================== ==================================== =============
classification  ``[B, C]``, int64 ``[B]``  cross-entropy                        accuracy
regression      ``[B, k]`` or ``[B]``,     MSE: mean over examples and outputs  R² over the
                float32 ``[B, k]``/``[B]``  of ``(out - y)²``                    split
sequence        ``[B, T, V]``,             token cross-entropy, mean over       token
                int64 ``[B, T]``           ``B·T`` tokens                       accuracy
=============== ========================== ==================================== =============

R² over a split of ``n`` examples is ``1 - SSE / SST`` with ``SSE = Σ (out - y)²`` and
``SST = Σ (y - ȳ)²`` summed over examples and outputs (ȳ per output: the variance-weighted
R²). A sequence model's perplexity is ``exp(loss)`` (:func:`perplexity`).

**Padding.** A sequence target equal to :data:`IGNORE_INDEX` (-100, the default
``ignore_index`` of ``F.cross_entropy``) is no token: it adds no loss, no count and no hit,
so a model's loss is its mean over the real tokens of its batch (0 for a batch of padding
alone, where ``F.cross_entropy`` would give NaN) and token accuracy is over real tokens.

**Epoch records keep their keys** for every task, so the store, reports and curves work
unchanged: ``train_loss``/``val_loss`` are the task's loss and ``train_accuracy``/
``val_accuracy`` (and ``RunResult.test_accuracy``) are the task's *score* — accuracy,
R² for regression, token accuracy for sequences. ``stuck`` (no better than a constant
prediction) applies to every task (:func:`initlab.train.result.final_status`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from initlab.data.tasks import IGNORE_INDEX
from initlab.errors import InitlabError, UnknownNameError
from initlab.task_names import CLASSIFICATION, REGRESSION, SEQUENCE, TASKS


def resolve_task(task: str, data: object) -> str:
    """``task`` unless it is ``"auto"``, then the data's own (``data.task``; classification
    for datasets that do not say)."""
    name = getattr(data, "task", CLASSIFICATION) if task == "auto" else task
    if name not in TASKS:
        raise UnknownNameError("task", str(name), TASKS)
    return name


def regression_view(out: Tensor, y: Tensor) -> Tensor:
    """``out`` shaped like ``y`` (``[M, B, 1]`` against ``[M, B]`` is the same thing)."""
    if out.shape == y.shape:
        return out
    if out.numel() == y.numel():
        return out.reshape(y.shape)
    raise InitlabError(
        f"regression outputs {list(out.shape[1:])} do not match targets {list(y.shape[1:])}"
    )


def tokens(y: Tensor) -> Tensor:
    """Each model's count of real (not :data:`IGNORE_INDEX`) targets in ``y [M, B, T]``."""
    return (y != IGNORE_INDEX).reshape(y.shape[0], -1).sum(1)


def losses(task: str, out: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """Per-model loss ``[M]`` of ``out [M, B, ...]`` against ``y [M, B, ...]`` (shared
    targets: ``y.expand(M, ...)``): the mean (``"mean"``) or sum (``"sum"``) over the
    examples (classification), example outputs (regression) or real tokens (sequence:
    padding counts for nothing, module docstring)."""
    m = out.shape[0]
    if task == REGRESSION:
        per = (regression_view(out.float(), y) - y).square().reshape(m, -1)
    else:
        logits = out.float().reshape(-1, out.shape[-1])
        if m == 1 and task == CLASSIFICATION:  # the reduction in the kernel, as a plain loop
            return F.cross_entropy(logits, y.reshape(-1), reduction=reduction).reshape(1)
        per = F.cross_entropy(logits, y.reshape(-1), reduction="none").view(m, -1)
        if task == SEQUENCE and reduction == "mean":
            return per.sum(1) / tokens(y).clamp_min(1)
    return per.mean(1) if reduction == "mean" else per.sum(1)


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a sequence model's token cross-entropy (``inf`` on overflow)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


class Meter:
    """Accumulates each model's loss and score over the batches of a split or an epoch.

    Sums stay on the device (float64 where they are sums of many terms; float32 on MPS,
    which has no float64) and are read once,
    by :meth:`result`, so training never waits on the host between steps.
    """

    def __init__(
        self, task: str, models: int, device: torch.device, per_example: bool = False
    ) -> None:
        """``per_example``: keep each regression example's squared error, each
        classification example's cross-entropy, or each sequence's summed token
        cross-entropy and hits (for :meth:`improvement_p` and :meth:`accuracy_p`, on the test
        split: ``M × N`` float64 numbers)."""
        self.task, self.models, self.device = task, models, device
        self.errors: list[Tensor] | None = [] if per_example else None
        self.sequence_hits: list[Tensor] = []
        self.targets: list[Tensor] = []
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        zeros = torch.zeros(models, dtype=self.dtype, device=device)
        self.loss_sum, self.hits, self.count = zeros, zeros.clone(), 0
        self.tokens = zeros.clone() if task == SEQUENCE else None  # real targets per model
        self.sum_y = self.sum_y2 = None  # regression: per model and output, for SST

    def add(self, out: Tensor, y: Tensor, loss_mean: Tensor | None = None) -> None:
        """Add a batch: ``out [M, B, ...]``, targets ``[M, B, ...]``; ``loss_mean``: the
        batch's per-model mean loss when the caller has it already (times the terms per
        model it averages: examples, example outputs or tokens)."""
        out = out.detach()
        if self.task == SEQUENCE:
            self._add_sequence(out, y, loss_mean)
            return
        if loss_mean is None:
            self.loss_sum.add_(losses(self.task, out, y, reduction="sum"))
        else:
            self.loss_sum.add_(loss_mean.detach(), alpha=y[0].numel())
        if self.task == REGRESSION:
            self._add_regression(out, y)
            return
        self.hits.add_((out.argmax(-1) == y).reshape(self.models, -1).sum(1))
        self.count += y[0].numel()
        if self.errors is not None:
            logits = out.float().reshape(-1, out.shape[-1])
            per = F.cross_entropy(logits, y.reshape(-1), reduction="none")
            self.errors.append(per.view(self.models, -1).to(self.dtype))
            self.targets.append(y[0].reshape(-1))

    def _add_sequence(self, out: Tensor, y: Tensor, loss_mean: Tensor | None) -> None:
        """Loss and hits summed over each model's real tokens, and their count."""
        counted = tokens(y)
        if loss_mean is None:
            self.loss_sum.add_(losses(self.task, out, y, reduction="sum"))
        else:
            self.loss_sum.add_(loss_mean.detach() * counted)
        hits = out.argmax(-1) == y  # padding (-100) is never a hit
        self.hits.add_(hits.reshape(self.models, -1).sum(1))
        self.tokens.add_(counted)
        if self.errors is not None:  # per sequence: the test's units (tokens are not independent)
            logits = out.float().reshape(-1, out.shape[-1])
            per = F.cross_entropy(logits, y.reshape(-1), reduction="none")  # 0 at padding
            self.errors.append(per.view(y.shape).sum(2).to(self.dtype))
            self.sequence_hits.append(hits.sum(2).to(self.dtype))
            self.targets.append(y[0])

    def _add_regression(self, out: Tensor, y: Tensor) -> None:
        pred = regression_view(out.float(), y).to(self.dtype)
        pred = pred.reshape(self.models, y.shape[1], -1)
        yy = y.to(self.dtype).reshape(pred.shape)
        squared = (pred - yy).square().sum(2)  # [M, B]: each example's error over outputs
        self.hits += squared.sum(1)  # SSE
        if self.errors is not None:
            self.errors.append(squared)
            self.targets.append(yy[0])
        if self.sum_y is None:
            shape = (self.models, yy.shape[2])
            self.sum_y = torch.zeros(shape, dtype=self.dtype, device=self.device)
            self.sum_y2 = torch.zeros_like(self.sum_y)
        self.sum_y += yy.sum(1)
        self.sum_y2 += yy.square().sum(1)
        self.count += yy.shape[1]

    def improvement_p(self) -> list[float]:
        """Each model's p-value for "no better than the best constant prediction": a
        one-sided paired t-test of ``d_i = c_i − e_i`` over the ``n`` test examples, ``e_i``
        the model's error on example ``i`` and ``c_i`` the constant's:

        * regression: squared errors, the constant the targets' mean: ``c_i = ‖y_i − ȳ‖²``
          (``mean(d) = (SST − SSE) / n``, so ``mean(d) > 0`` is ``R² > 0``);
        * classification: cross-entropies, the constant the test labels' shares ``q``:
          ``c_i = −log q[y_i]`` (``mean(c)`` is the labels' entropy, so ``mean(d) > 0`` is a
          test loss below it).

        ``t = mean(d) / (sd(d) / sqrt(n))`` against Student's t with ``n − 1`` degrees of
        freedom: a small p, the model beats the constant by more than the examples' spread
        explains. For sequences the units are the test sequences, not their tokens (which are
        not independent): ``d_i`` is sequence ``i``'s mean over its real tokens of
        ``−log q[y] − e``, ``q`` the test targets' token shares. NaN without per-example
        errors, with fewer than two examples (sequences) or constant regression targets (R²
        undefined); 0 or 1 when every ``d_i`` is the same (``mean(d) > 0`` or not)."""
        if self.task == SEQUENCE:
            return self._sequence_p()[0]
        if not self.errors or self.count < 2:
            return [math.nan] * self.models
        constant = self._constant_errors(torch.cat(self.targets))
        if constant is None:
            return [math.nan] * self.models
        return _paired_p(constant - torch.cat(self.errors, dim=1))

    def accuracy_p(self) -> list[float]:
        """Each sequence model's p-value for "token accuracy no better than always the most
        frequent target token": a one-sided paired t-test over the test sequences of
        ``a_i − c_i``, ``a_i`` the share of sequence ``i``'s real tokens predicted right and
        ``c_i`` the share that always predicting that token gets right there (sequences of
        other lengths, padded, weigh alike). The sequences are the units: a binomial test over every
        token counted correlated tokens (overlapping windows, the same word) as independent
        trials. NaN for other tasks and fewer than two sequences with a real token."""
        return self._sequence_p()[1] if self.task == SEQUENCE else [math.nan] * self.models

    def _sequence_p(self) -> tuple[list[float], list[float]]:
        """``(loss p, accuracy p)`` per model over the test sequences: the paired test of
        each sequence's mean token cross-entropy against the token shares' ``−log q[y]``
        (:meth:`improvement_p`), and :meth:`accuracy_p`'s."""
        nan = [math.nan] * self.models
        if not self.errors:
            return nan, nan
        y = torch.cat(self.targets).cpu()  # [N, T]
        real = y != IGNORE_INDEX
        n = real.sum(1)
        keep = n > 0
        if int(keep.sum()) < 2:
            return nan, nan
        counts = torch.bincount(y[real])
        shares = counts.to(self.dtype) / int(n.sum())
        constant = torch.where(real, -shares.log()[y.clamp(min=0)], 0).sum(1)  # [N]
        errors = torch.cat(self.errors, dim=1).cpu()[:, keep]
        per_token = n[keep].to(self.dtype)
        loss_d = (constant[keep] - errors) / per_token
        hits = torch.cat(self.sequence_hits, dim=1).cpu()[:, keep]
        top = (y[keep] == int(shares.argmax())).sum(1)  # the constant's hits, per sequence
        acc_d = (hits - top.to(self.dtype)) / per_token  # paired: lengths may differ
        return _paired_p(loss_d), _paired_p(acc_d)

    def _constant_errors(self, y: Tensor) -> Tensor | None:
        """Each test example's error under the best constant prediction (see
        :meth:`improvement_p`); ``None`` for constant regression targets."""
        if self.task == CLASSIFICATION:  # bincount on the CPU: MPS may lack it
            shares = torch.bincount(y.cpu()).to(self.dtype) / len(y)
            return -shares.log()[y.cpu()].to(self.device)
        spread = (y - y.mean(0)).square().sum(1)  # ‖y_i − ȳ‖², the same for every model
        return spread if bool(spread.sum() > 0) else None

    def result(self) -> tuple[list[float], list[float]]:
        """Each model's ``(mean loss, score)``: score = accuracy, R² or token accuracy."""
        n = max(self.count, 1)
        if self.task == REGRESSION:
            outputs = self.sum_y.shape[1] if self.sum_y is not None else 1
            loss = (self.loss_sum / (n * outputs)).tolist()
            if self.sum_y is None:
                return loss, [math.nan] * self.models
            sst = (self.sum_y2 - self.sum_y.square() / n).sum(1)
            r2 = torch.where(sst > 0, 1 - self.hits / sst, torch.full_like(sst, math.nan))
            return loss, r2.tolist()
        if self.tokens is not None:  # no real token: nothing measured (NaN), not 0
            n = torch.where(self.tokens > 0, self.tokens, math.nan)
        return (self.loss_sum / n).tolist(), (self.hits / n).tolist()


def _paired_p(d: Tensor) -> list[float]:
    """Each row's one-sided p-value for ``mean(d) > 0`` (``d [M, n]``, Student's t with
    ``n − 1`` degrees of freedom); 0 or 1 for a row whose values are all the same."""
    from scipy import stats as sps  # ~0.7 s to import: on use

    mean, sd = d.mean(1), d.std(1)
    t = (mean / (sd / math.sqrt(d.shape[1]))).cpu().numpy()
    p = sps.t.sf(t, d.shape[1] - 1)
    constant = (sd == 0).cpu().numpy()
    p[constant] = (mean.cpu().numpy()[constant] <= 0).astype(float)
    return [float(v) for v in p]


def batch_task(out: Tensor, y: Tensor) -> str:
    """The task a batch's targets imply: float targets → regression; integer ``[B, T]``
    targets for ``[B, T, V]`` outputs → sequence; else classification. The targets come as
    the data rules give them (:func:`initlab.data.tasks.batch_targets`): labels of any
    integer dtype as int64, whole-number float labels as int64, one-hot rows refused, so a
    float batch here is a regression target."""
    if y.is_floating_point():
        return REGRESSION
    return SEQUENCE if out.dim() == 3 and y.dim() == 2 else CLASSIFICATION


def model_loss(task: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The scalar loss of one model (no model axis): ``loss(out [B, ...], y [B, ...])``;
    its ``task`` attribute names the task (the diagnosis reads logits only for
    cross-entropy losses)."""

    def loss(out: Tensor, y: Tensor) -> Tensor:
        return losses(task, out.unsqueeze(0), y.unsqueeze(0))[0]

    loss.task = task
    return loss
