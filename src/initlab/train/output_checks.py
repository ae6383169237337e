"""What a model returns, checked before it trains: its output's shape against the task's
targets (:func:`check_output`), class outputs against the labels they must cover, a
vocabulary against every split's target ids, and probabilities where the loss takes
logits."""

from __future__ import annotations

from torch import Tensor

from initlab.data.tasks import is_integral
from initlab.errors import InitlabError, option
from initlab.notes import note
from initlab.task_names import CLASSIFICATION, REGRESSION

SUM_TOLERANCE = 1e-3
"""How far from 1 a row of probabilities may sum (float32 softmax rows sum to 1 within
``C · eps``; a row of logits that happens to sum to 1 is not in [0, 1] everywhere)."""


def note_probabilities(task: str, out: Tensor) -> None:
    """One note when classification or sequence outputs ``out [B, (T,) C]`` look like
    probabilities (every value in [0, 1], every row summing to 1 within
    :data:`SUM_TOLERANCE`): a softmax at the model's end. The loss, ``F.cross_entropy``,
    applies ``log_softmax`` itself, so probabilities train as logits squeezed into [0, 1]:
    gradients tiny, and every init looks stuck."""
    if task not in ("classification", "sequence") or out.dim() < 2 or out.shape[-1] < 2:
        return
    values = out.detach().float()
    if not bool(((values >= 0) & (values <= 1)).all()):
        return
    if not bool(((values.sum(-1) - 1).abs() <= SUM_TOLERANCE).all()):
        return
    note(
        "the model's outputs are probabilities (in [0, 1], rows summing to 1: a softmax at "
        "its end?); initlab's loss is cross-entropy on logits (it applies log_softmax "
        "itself): return the logits, or every init trains on squeezed outputs"
    )


def check_classes(out: Tensor, y: Tensor, num_classes: int, inferred: bool = False) -> None:
    """Classification outputs ``out`` must be ``[B, C]``, ``C`` at least the classes the
    labels ``y`` need, else one line; for a task ``inferred`` from whole-number targets
    (:mod:`initlab.data.tasks`) it says so and offers ``--task regression`` (they may be
    quantities: counts, scores), first for a one-output model, else after the logits."""
    if out.dim() != 2:
        raise InitlabError(
            f"classification needs model outputs [batch, classes], got {list(out.shape)}"
        )
    needed, units = max(int(num_classes), int(y.max()) + 1 if len(y) else 0), out.shape[1]
    if units >= needed:
        return
    one_based = needed == units + 1 and int(y.min()) >= 1
    logits = f"make the model output {needed} logits"
    if needed == 2 and units == 1:  # a BCEWithLogits-style binary classifier
        logits += (
            " (classes train with cross-entropy: one logit for BCEWithLogitsLoss is the "
            "same classifier as 2 logits, nn.Linear(d, 2))"
        )
    logits += "; no label here is 0: if they start at 1, subtract 1" if one_based else ""
    quantities = f"if they are quantities (counts, scores), pass {option('--task regression')}"
    if inferred and units == 1:
        raise InitlabError(
            f"the task was inferred as classification from whole-number targets ({needed} "
            f"classes, labels 0..{needed - 1}) but the model outputs 1 value: {quantities}; "
            f"if they are class labels, {logits}"
        )
    aside = f" (task inferred from whole-number targets: {quantities})" if inferred else ""
    raise InitlabError(
        f"the model outputs {units} class{'es' if units != 1 else ''} but the labels need "
        f"{needed} (labels 0..{needed - 1}); {logits}{aside}"
    )


def check_output(
    task: str, out: Tensor, y: Tensor, num_classes: int, *, inferred: bool = False, top: int = 0
) -> None:
    """Raise unless the output shape ``out [B, ...]`` fits ``task`` and the targets ``y``
    (``inferred``: ``task="auto"`` read them, :func:`check_classes`; ``top``: the other
    splits' largest target id, which a sequence model's vocabulary must reach too)."""
    got, want = list(out.shape[1:]), list(y.shape[1:])
    if task == CLASSIFICATION:
        check_classes(out, y, num_classes, inferred)
    elif task == REGRESSION:
        ok = got == want or (got == [1] and want == []) or (got == [] and want == [1])
        if not ok:
            targets = f"targets {want}" if want else "targets of one value per example ([N])"
            labels = not want and len(got) == 1 and got[0] > 1
            classes = ""
            if labels and is_integral(y):
                classes = (
                    "; they are whole numbers, i.e. class labels: drop "
                    f"{option('--task regression')} (or pass {option('--task classification')}), "
                    "or give float targets for regression"
                )
            elif labels:
                classes = (
                    "; if these are class labels, give them as integers (float targets are "
                    f"regression) or pass {option('--task classification')}"
                )
            raise InitlabError(
                f"regression outputs per example {got} do not match {targets}; "
                f"make the model output one value per target{classes}"
            )
    else:
        if out.dim() != 3 or y.dim() != 2 or out.shape[1] != y.shape[1]:
            flipped = out.dim() == 3 and y.dim() == 2 and out.shape[2] == y.shape[1]
            fix = (
                "the vocabulary axis is not last: move it there in the model's forward (e.g. "
                "logits.transpose(1, 2))"
                if flipped and out.shape[1] > int(y.max())
                else "return logits [batch, T, vocab], one row of vocab logits per target"
            )
            raise InitlabError(
                "sequence tasks need outputs [batch, T, vocab] for targets [batch, T]; per "
                f"example, got outputs {got} for targets {want}: {fix}"
            )
        top = max(top, int(y.max()) if y.numel() else 0)
        if out.shape[2] <= top:
            raise InitlabError(
                f"the model outputs a vocabulary of {out.shape[2]} tokens but the targets "
                f"contain token {top}; output at least {top + 1} logits per position"
            )
