"""A note shows once per line under Python's default filters, however many models a call
builds: initlab's and torch's ``catch_warnings`` reset Python's own record of shown
warnings, and one ``compare`` call repeated each note for every model. Under ``always``
(``pytest.warns``) every note still shows."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from initlab.notes import InitlabNote, note

SCRIPT = """
import warnings
from initlab.notes import note
for _ in range(3):
    with warnings.catch_warnings():  # what initlab and torch do inside a comparison
        warnings.simplefilter("ignore", DeprecationWarning)
    note("the same fact")
"""


def test_a_note_repeated_at_one_line_shows_once_under_the_default_filters():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("InitlabNote: the same fact") == 1


def test_under_always_every_note_shows():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            note("always this")
    assert [str(w.message) for w in caught] == ["always this"] * 3
    for _ in range(2):
        with pytest.warns(InitlabNote, match="again"):
            note("again")
