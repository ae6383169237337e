"""One function per report section: data in, :class:`Section` out (``None``: not applicable).

The ``intro`` of each section is the one-paragraph reading guide shown above its content.
``score`` (:class:`~initlab.ranking.scores.Score`) names what the runs' ``test_accuracy`` holds
(accuracy, R², token accuracy) and which ``stuck`` rule applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from initlab.curves import VAL_LOSS_PANEL, curves_figure
from initlab.ranking.reach import REACH_FRACTION, reach_legend
from initlab.ranking.scores import ACCURACY, LOSS_NAME, RESOLVED_TASK, Score, run_tasks
from initlab.ranking.stats import ALPHA
from initlab.report import figures, layers, stuck_notes, sweep, tables
from initlab.report.model import Details, Image, Note, Section, Table
from initlab.results import ResultSet
from initlab.store.read import varying
from initlab.task_names import REGRESSION, SEQUENCE


def ranked(results: ResultSet) -> pd.DataFrame:
    """The result set's summary, best group first (see :func:`tables.ranked_summary`)."""
    return tables.ranked_summary(
        results.summary(), results.runs, results.group_by, getattr(results, "within", ())
    )


def empty_section() -> Section:
    return Section("summary", "Summary", "There are no runs to report.", [Note("no runs")])


def summary_section(
    ranked: pd.DataFrame,
    group_by: Sequence[str],
    verdict: str = "",
    score: Score = ACCURACY,
    by_loss: bool = False,
    tracked: bool = False,
    reach: float = math.nan,
) -> Section:
    """The ranked summary and its legend; ``by_loss``: ``epochs to 90%`` counts epochs to a
    validation loss (:meth:`initlab.results.ResultSet.reaches_by_loss`), down to ``reach``
    (:meth:`~initlab.results.ResultSet.reach_threshold`, said when finite). Runs ranked by
    test loss (:func:`tables.loss_ranked`) show its 95% CI, and say so."""
    stuck = f"; {score.stuck_rule()}"
    loss = tables.loss_ranked(ranked, score)
    interval = (
        "the 95% CI is the Student-t interval for the mean test loss, cut at 0"
        if loss
        else "the 95% CI is the Student-t interval for the mean, cut to the values the score "
        "can take"
    )
    intro = (
        f"One row per group ({', '.join(group_by)}), best first: ranked by mean "
        f"{LOSS_NAME if loss else score.name()}{_lower(loss)}{_per_task(score)}. Mean ± "
        f"sample std over the group's runs (seeds); {interval}. 'worse than best?': Welch's "
        f"t-test of the group against the best one, Holm-adjusted over every pair of groups — "
        f"'yes' when p < {ALPHA:g}; 'undecided' when p ≥ {ALPHA:g}: the data "
        "cannot tell them apart, which is no evidence that they are as good (more seeds "
        f"may){_stuck_vs_best(score)}. 'epochs to 90%' is the {_reach(score, by_loss, reach)}. "
        f"diverged: the loss became NaN/inf{stuck if score.stuck_applies else ''}; failed: an "
        "error."
    )
    verdict_note = [Note(line) for line in verdict.splitlines()]  # one per dataset
    reasons = stuck_notes.stuck_reasons(ranked, group_by, score, tracked)
    causes = [Note(line) for line in reasons]
    table = Table(tables.summary_table(ranked, score))
    return Section("summary", "Summary", intro, [table, *verdict_note, *causes])


def _stuck_vs_best(score: Score) -> str:
    """The legend's clause for ``yes: stuck ...``
    (:func:`initlab.ranking.scores.stuck_not_tied`)."""
    if not score.stuck_applies:
        return ""
    return (
        f"; 'yes: {score.stuck_phrase()}' where only that parts a group from the best (its "
        "p ≥ 0.05): it is stuck in every run, no run of the best is, and each run of the "
        "best scored above each of its runs"
    )


def _reach(score: Score, by_loss: bool, reach: float = math.nan) -> str:
    """What 'epochs to 90%' counts: :func:`initlab.ranking.reach.reach_legend`, the score named;
    for a loss, the target ``reach`` too when it is finite."""
    if by_loss:
        here = f" (here {reach:.4f})" if math.isfinite(reach) else ""
        return reach_legend(by_loss=True) + here
    return (
        f"first epoch at which the group's mean {score.name('validation')} comes within "
        f"{1 - REACH_FRACTION:.0%} of the best group's final one"
    )


def _lower(loss: bool) -> str:
    """`` (lower is better; mean cross-entropy per token)`` when ranked by test loss."""
    return " (lower is better; mean cross-entropy per token)" if loss else ""


def _per_task(score: Score) -> str:
    """``: each task's score (...), the task column says which`` for runs of mixed tasks."""
    return f": {score.per_task()}, the task column says which" if score.mixed else ""


def pairwise_section(
    runs: pd.DataFrame, group_by: Sequence[str], ranked: pd.DataFrame, score: Score = ACCURACY
) -> Section:
    intro = (
        "Is one group really better than another, or is the gap seed noise? For each pair: the "
        f"difference of mean {_plural(score.ranked_name())} with its 95% interval, and the "
        "two-sided p-value of Welch's t-test (unequal variances). With many pairs some small "
        "p-values are expected by chance; the Holm column corrects for all k(k−1)/2 pairs of "
        "groups (within each partition when groups are ranked apart), the family of the "
        "summary's 'worse than best?', so a pair shows the same adjusted p in both tables. "
        f"Highlighted rows are those whose Holm-adjusted p < {ALPHA:g}. "
        f"Groups with fewer than two finite {_plural(score.ranked_name().removeprefix('test '))} "
        "cannot be tested (—)."
    )
    if len(ranked) < 2:
        return Section("pairwise", "Pairwise comparisons", intro, [Note("only one group")])
    frame, strong = tables.pairwise_table(runs, group_by, ranked, score)
    blocks: list = [Table(frame, strong_rows=strong)]
    if note := tables.family_note(ranked):
        blocks.insert(0, Note(note))
    return Section("pairwise", "Pairwise comparisons", intro, blocks)


def curves_section(
    epochs: pd.DataFrame, group_by: Sequence[str], score: Score = ACCURACY, by_loss: bool = False
) -> Section:
    """Training loss and validation score per epoch; ``by_loss`` (runs ranked by test loss
    whose epochs recorded ``val_loss``): the validation loss instead of the score."""
    val = VAL_LOSS_PANEL[1] if by_loss else score.name("validation")
    if by_loss:
        intro = (
            "Training loss and validation loss (mean cross-entropy per token, what the runs "
            "are ranked by; both log scale, lower is better) after each epoch: the line is the "
            "mean over the group's seeds, the band ±1 std. Curves flat at the loss of "
            "predicting the tokens' frequencies (the targets' entropy) show that the network "
            "is not learning (e.g. a symmetric or vanishing initialization)."
        )
    else:
        intro = (
            f"Training loss (log scale) and {val} after each epoch: the line is the mean over "
            "the group's seeds, the band ±1 std. Flat curves "
            f"{score.stuck_phrase().removeprefix('stuck ')} show that the network is not "
            "learning (e.g. a symmetric or vanishing initialization"
            + (", or targets the inputs do not predict" if REGRESSION in score.tasks else "")
            + ")."
        )
    if epochs.empty:
        return Section("curves", "Learning curves", intro, [Note("no per-epoch records")])
    fig = curves_figure(epochs, group_by, score.name("validation"), by_loss)
    # not "curves": compare's curves.png (ResultSet.save) shares the directory a report may go to
    image = Image.from_figure("report_curves", fig, f"training loss and {val}")
    return Section("curves", "Learning curves", intro, [image])


def accuracy_section(
    runs: pd.DataFrame, group_by: Sequence[str], ranked: pd.DataFrame, score: Score = ACCURACY
) -> Section:
    """The summary's means and 95% CIs as a figure: of the test score, or of the test loss
    for runs ranked by it (:func:`tables.loss_ranked`)."""
    if tables.loss_ranked(ranked, score):
        return _loss_section(runs, group_by, ranked)
    test = score.name()
    intro = (
        f"Final {test} per group, best on top: the blue dot is the mean, the bar its 95% "
        "confidence interval; orange dots are single runs. Groups whose intervals do not "
        "overlap differ clearly; one run gives no interval."
    )
    accuracies = tables.group_accuracies(runs, group_by, list(ranked["group"]))
    fig = figures.accuracy_figure(ranked, accuracies, test, clip=score.bounded)
    image = Image.from_figure("accuracy", fig, f"{test} per group with 95% CI")
    bare = score.name("")
    title = f"{bare[0].upper()}{bare[1:]} with confidence intervals"
    return Section("accuracy", title, intro, [image])


def _loss_section(runs: pd.DataFrame, group_by: Sequence[str], ranked: pd.DataFrame) -> Section:
    """:func:`accuracy_section` of runs ranked by test loss: the loss's means and CIs."""
    intro = (
        "Final test loss per group (mean cross-entropy per token, what the runs are ranked "
        "by; lower is better), best on top: the blue dot is the mean, the bar its 95% "
        "confidence interval; orange dots are single runs. Groups whose intervals do not "
        "overlap differ clearly; one run gives no interval."
    )
    losses = tables.group_accuracies(runs, group_by, list(ranked["group"]), "test_loss")
    name = f"{LOSS_NAME} (lower is better)"
    columns, limits = ("test_loss", "test_loss_ci95"), (0.0, math.inf)
    fig = figures.accuracy_figure(ranked, losses, name, columns=columns, limits=limits)
    image = Image.from_figure("accuracy", fig, f"{LOSS_NAME} per group with 95% CI")
    return Section("accuracy", "Test loss with confidence intervals", intro, [image])


def gradients_section(
    layer_stats: pd.DataFrame | None, runs: pd.DataFrame, group_by: Sequence[str]
) -> Section:
    title = "Per-layer gradients"
    metric = layers.grad_norm_metric(layer_stats)
    what = (
        "Std of the back-propagated gradient dL/dz at each layer"
        if metric == "pre_grad_std"
        else "Weight-gradient norm of each layer (dL/dz, which shows vanishing best, was not "
        "recorded; weight-gradient norms stay nearly constant across layers even where dL/dz "
        "vanishes, Glorot & Bengio 2010)"
    )
    intro = (
        f"{what} (rows, input layer first) after each epoch (columns), as log10, averaged "
        "over seeds; one panel per group, one colour scale. Gradients that vanish toward the "
        "input darken from bottom to top by orders of magnitude (explode: lighten); a gentle "
        "shade down the rows is the network's shape, not vanishing: a unit's share of the "
        "gradient shrinks as its layer widens (784-300-100-10 under He: the gradient's norm is "
        "kept, each unit's std is about √(100/300) = 0.58 times the next layer's), so compare "
        "the panels row by row; dark grey cells are exactly zero gradients (e.g. zero init), "
        "light grey cells were not recorded."
    )
    if metric is None:
        off = "per-layer tracking was off (or recorded no gradient norms) for these runs"
        return Section("gradients", title, intro, [Note(off)])
    grids, x_name = layers.layer_grids(layer_stats, runs, group_by, metric)
    if not grids:
        return Section("gradients", title, intro, [Note(f"no '{metric}' rows to draw")])
    fig = figures.grad_norm_figure(grids, x_name, metric)
    image = Image.from_figure("gradients", fig, f"log10 {metric} per layer and {x_name}")
    return Section("gradients", title, intro, [image])


def trainability_section(runs: pd.DataFrame, score: Score = ACCURACY) -> Section | None:
    """Only for runs that vary both depth and sigma_w² (see :mod:`initlab.report.sweep`)."""
    if not sweep.is_depth_scale_sweep(runs):
        return None
    intro = (
        f"Final {score.name()} (mean over seeds) for each depth (number of hidden layers) and "
        "weight variance σ_w² (= Var(W) × fan_in, derived from the init spec). Mean-field "
        "theory (Schoenholz et al. 2017) says random networks train up to a depth of about "
        "6·ξ_c: the dashed curve. Bright cells below the curve and dark cells above it agree "
        "with theory; the peak of the curve is the edge of chaos. Cells of runs that diverged "
        f"count as {score.name('')} 0; light grey: no run."
    )
    panels = sweep.trainability_panels(runs)
    fig = figures.trainability_figure(panels, f"final {score.name()} (mean over seeds)")
    blocks: list = [Image.from_figure("trainability", fig, "trainability")]
    unknown = [p.activation for p in panels if p.theory_x is None]
    if unknown:
        reason = "σ_b² unknown (non-zero bias policy) or activation unknown to the theory"
        blocks.append(Note(f"no theory curve for {', '.join(unknown)}: {reason}"))
    return Section("trainability", "Trainability: depth × σ_w²", intro, blocks)


def failures_section(runs: pd.DataFrame, group_by: Sequence[str]) -> Section:
    intro = "Runs that diverged (loss NaN/inf; training stopped there) or failed with an error."
    frame = tables.failures_table(runs, group_by)
    if frame.empty:
        return Section("failures", "Failures", intro, [Note("no run diverged or failed")])
    note = Note(f"{len(frame)} of {len(runs)} runs diverged or failed", kind="warning")
    return Section("failures", "Failures", intro, [note, Table(frame)])


def runs_section(runs: pd.DataFrame, group_by: Sequence[str], score: Score = ACCURACY) -> Section:
    """Every run: its grouping columns and every other setting that varies between runs
    (a swept optimizer or lr outside ``group_by``: without it two runs look the same)."""
    intro = "Every run with its outcome; run_id is the stable hash of its full config."
    if score != ACCURACY:
        intro += f" Column {score.holds()}."
    with_loss = SEQUENCE in score.tasks and "test_loss" in runs
    if with_loss:
        ranks = "them" if score.by_loss else "the sequence runs"
        intro += f" test_loss: the mean cross-entropy per test token (what ranks {ranks})."
    if score.mixed:  # each run's task, also for runs recorded without one
        runs = runs.assign(**{RESOLVED_TASK: run_tasks(runs)})
    split = any(c.startswith("model_args.") for c in runs)  # one column per argument
    extra = [k for k in varying(runs) if k not in group_by and not (split and k == "model_args")]
    settings = [*group_by, *extra]
    frame = tables.runs_table(runs, settings, with_task=score.mixed, with_loss=with_loss)
    details = Details(f"all {len(runs)} runs", [Table(frame)])
    return Section("runs", "Runs", intro, [details])


def _plural(score: str) -> str:
    """A score's plural: ``test accuracies``, ``test scores``, ``test R² values``."""
    if score.endswith("accuracy"):
        return f"{score[:-1]}ies"
    return f"{score}s" if score.endswith("score") else f"{score} values"
