"""One function per report section: data in, :class:`Section` out (``None``: not applicable).

The ``intro`` of each section is the one-paragraph reading guide shown above its content.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from initlab.curves import curves_figure
from initlab.report import figures, layers, sweep, tables
from initlab.report.model import Details, Image, Note, Section, Table
from initlab.results import REACH_FRACTION, ResultSet
from initlab.train.result import STUCK_FACTOR


def ranked(results: ResultSet) -> pd.DataFrame:
    """The result set's summary, best group first (see :func:`tables.ranked_summary`)."""
    return tables.ranked_summary(results.summary(), results.runs, results.group_by)


def empty_section() -> Section:
    return Section("summary", "Summary", "There are no runs to report.", [Note("no runs")])


def summary_section(ranked: pd.DataFrame, group_by: Sequence[str], verdict: str = "") -> Section:
    intro = (
        f"One row per group ({', '.join(group_by)}), best first: ranked by mean test accuracy. "
        "Mean ± sample std over the group's runs (seeds); the 95% CI is the Student-t interval "
        "for the mean. 'as good as best?': Welch's t-test of the group against the best one, "
        f"Holm-adjusted over the other groups — 'yes' when p ≥ {tables.ALPHA:g} (the data "
        "cannot tell them apart). 'epochs to 90%' is "
        "the first epoch at which the group's mean validation accuracy reaches "
        f"{REACH_FRACTION:.0%} of the best group's final one. diverged: the loss became "
        f"NaN/inf; stuck: test accuracy below {STUCK_FACTOR:g}/classes (no better than "
        "predicting one class); failed: an error."
    )
    verdict_note = [Note(verdict)] if verdict else []
    return Section(
        "summary", "Summary", intro, [Table(tables.summary_table(ranked)), *verdict_note]
    )


def pairwise_section(runs: pd.DataFrame, group_by: Sequence[str], ranked: pd.DataFrame) -> Section:
    intro = (
        "Is one group really better than another, or is the gap seed noise? For each pair: the "
        "difference of mean test accuracies with a bootstrap 95% interval, and the two-sided "
        f"p-value of Welch's t-test (unequal variances). Highlighted rows: p < {tables.ALPHA:g}. "
        "With many pairs some small p-values are expected by chance; the Holm column corrects "
        "for the number of pairs. Groups with fewer than two finite accuracies cannot be "
        "tested (—)."
    )
    if len(ranked) < 2:
        return Section("pairwise", "Pairwise comparisons", intro, [Note("only one group")])
    frame, strong = tables.pairwise_table(runs, group_by, ranked)
    blocks: list = [Table(frame, strong_rows=strong)]
    if len(ranked) > tables.MAX_ALL_PAIRS:
        blocks.insert(0, Note(f"{len(ranked)} groups: each is compared with the best."))
    return Section("pairwise", "Pairwise comparisons", intro, blocks)


def curves_section(epochs: pd.DataFrame, group_by: Sequence[str]) -> Section:
    intro = (
        "Training loss (log scale) and validation accuracy after each epoch: the line is the "
        "mean over the group's seeds, the band ±1 std. Flat curves at chance mean the network "
        "is not learning (e.g. a symmetric or vanishing initialization)."
    )
    if epochs.empty:
        return Section("curves", "Learning curves", intro, [Note("no per-epoch records")])
    image = Image.from_figure(
        "curves", curves_figure(epochs, group_by), "training loss and validation accuracy"
    )
    return Section("curves", "Learning curves", intro, [image])


def accuracy_section(runs: pd.DataFrame, group_by: Sequence[str], ranked: pd.DataFrame) -> Section:
    intro = (
        "Final test accuracy per group, best on top: the blue dot is the mean, the bar its 95% "
        "confidence interval; orange dots are single runs. Groups whose intervals do not "
        "overlap differ clearly; one run gives no interval."
    )
    accuracies = tables.group_accuracies(runs, group_by, list(ranked["group"]))
    fig = figures.accuracy_figure(ranked, accuracies)
    image = Image.from_figure("accuracy", fig, "test accuracy per group with 95% CI")
    return Section("accuracy", "Accuracy with confidence intervals", intro, [image])


def gradients_section(
    layer_stats: pd.DataFrame | None, runs: pd.DataFrame, group_by: Sequence[str]
) -> Section:
    title = "Per-layer gradient norms"
    intro = (
        "Weight-gradient norm of each layer (rows, input layer first) after each epoch "
        "(columns), as log10, averaged over seeds; one panel per group, one colour scale. "
        "A colour gradient from top to bottom means gradients vanish (darker toward the input) "
        "or explode toward the input; dark grey cells are exactly zero gradients (e.g. zero "
        "init), light grey cells were not recorded."
    )
    metric = layers.grad_norm_metric(layer_stats)
    if metric is None:
        off = "per-layer tracking was off (or recorded no gradient norms) for these runs"
        return Section("gradients", title, intro, [Note(off)])
    grids, x_name = layers.layer_grids(layer_stats, runs, group_by, metric)
    if not grids:
        return Section("gradients", title, intro, [Note(f"no '{metric}' rows to draw")])
    fig = figures.grad_norm_figure(grids, x_name, metric)
    image = Image.from_figure("gradients", fig, f"log10 {metric} per layer and {x_name}")
    return Section("gradients", title, intro, [image])


def trainability_section(runs: pd.DataFrame) -> Section | None:
    """Only for runs that vary both depth and sigma_w² (see :mod:`initlab.report.sweep`)."""
    if not sweep.is_depth_scale_sweep(runs):
        return None
    intro = (
        "Final test accuracy (mean over seeds) for each depth (number of hidden layers) and "
        "weight variance σ_w² (= Var(W) × fan_in, derived from the init spec). Mean-field "
        "theory (Schoenholz et al. 2017) says random networks train up to a depth of about "
        "6·ξ_c: the dashed curve. Bright cells below the curve and dark cells above it agree "
        "with theory; the peak of the curve is the edge of chaos. Cells of runs that diverged "
        "count as accuracy 0; light grey: no run."
    )
    panels = sweep.trainability_panels(runs)
    blocks: list = [
        Image.from_figure("trainability", figures.trainability_figure(panels), "trainability")
    ]
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


def runs_section(runs: pd.DataFrame, group_by: Sequence[str]) -> Section:
    intro = "Every run with its outcome; run_id is the stable hash of its full config."
    details = Details(f"all {len(runs)} runs", [Table(tables.runs_table(runs, group_by))])
    return Section("runs", "Runs", intro, [details])
