"""Built-in reproductions of classic results: ``initlab study NAME``.

>>> from initlab.studies import names, run_named_study
>>> outcome = run_named_study("lab", scale="default", out="results/studies/lab")
>>> print(outcome.verdict_frame())
"""

from initlab.studies.base import SCALES, Expectation, Study, StudyContext, get, names, register
from initlab.studies.runner import StudyOutcome, run_named_study

__all__ = [
    "SCALES",
    "Expectation",
    "Study",
    "StudyContext",
    "StudyOutcome",
    "get",
    "names",
    "register",
    "run_named_study",
]
