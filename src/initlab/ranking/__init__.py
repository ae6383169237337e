"""Comparing groups of runs across seeds, and saying which is best.

:mod:`~initlab.ranking.stats` has the statistics (means, intervals, Welch's test, Holm's
adjustment, the ranking of groups); :mod:`~initlab.ranking.scores` names what the runs
scored and applies the stuck rule; :mod:`~initlab.ranking.groups` ranks the runs that may be
compared together and :mod:`~initlab.ranking.verdict` says what a ranking supports;
:mod:`~initlab.ranking.reach` computes ``epochs_to_90`` and
:mod:`~initlab.ranking.summary_format` formats the summary table for display.

Nothing is imported here: :mod:`initlab.curves`, :mod:`initlab.doctor` and
:mod:`initlab.scaling` import :mod:`~initlab.ranking.stats` alone, and
:mod:`~initlab.ranking.groups` imports :mod:`initlab.curves`.
"""
