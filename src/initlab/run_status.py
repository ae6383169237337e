"""What a run can end as (its status) and the ``stuck`` rule in words.

Pure data, without torch: training decides a run's status
(:func:`initlab.train.result.final_status`), while the store, the rankings and the reports
only read and print it — reading results must not import the training engine.
"""

from __future__ import annotations

from initlab.task_names import CLASSIFICATION, REGRESSION, SEQUENCE

OK, STUCK, DIVERGED, FAILED = "ok", "stuck", "diverged", "failed"
FINISHED = (OK, STUCK, DIVERGED)
"""Statuses that count as done: resuming skips these runs (``failed`` runs are retried)."""
STUCK_ALPHA = 0.05
"""A finished classification run is ``stuck`` when its test accuracy is not significantly
above the majority class's share of the test labels (the best constant prediction): the
one-sided binomial test of :func:`~initlab.train.result.final_status` gives
``p >= STUCK_ALPHA``."""
STUCK_RULE = (
    "test accuracy not above the majority-class share of the test labels "
    f"(one-sided binomial test, p ≥ {STUCK_ALPHA:g}) and test loss not significantly below "
    "their entropy (paired t-test)"
)
"""The ``stuck`` rule in words, as tables, legends and reports print it."""
STUCK_TOKEN_RULE = (
    "token accuracy not above the most frequent target token's share of the test targets "
    f"and test loss not significantly below their entropy (one-sided t-tests over the test "
    f"sequences, p ≥ {STUCK_ALPHA:g})"
)
"""The rule for sequence runs (:func:`~initlab.train.result.final_status`)."""
STUCK_R2_RULE = (
    "test R² not significantly above 0: no better than predicting the test targets' mean "
    f"(one-sided paired t-test of the examples' squared errors, p ≥ {STUCK_ALPHA:g})"
)
"""The rule for regression runs (:func:`~initlab.train.result.final_status`)."""
SHARE_TASKS = (CLASSIFICATION, SEQUENCE)
"""The tasks whose constant prediction has a share to beat (a majority class or token)."""
STUCK_TASKS = (*SHARE_TASKS, REGRESSION)
"""The tasks whose runs can be ``stuck`` (no better than a constant prediction)."""
