"""The tasks a run can train for, and what its score is for each.

Pure data, without torch: training resolves and runs a task (:mod:`initlab.train.tasks`),
while the store, the rankings and the reports only name it.
"""

from __future__ import annotations

CLASSIFICATION, REGRESSION, SEQUENCE = "classification", "regression", "sequence"
TASKS = (CLASSIFICATION, REGRESSION, SEQUENCE)
SCORES = {CLASSIFICATION: "test accuracy", REGRESSION: "test R²", SEQUENCE: "test token accuracy"}
"""What a run's ``test_accuracy`` holds, by task."""
