"""initlab's notes: one-line warnings about what it did for the user (a fallback taken, a
setting it could not honour, layers a scheme leaves alone).

A note is an :class:`InitlabNote` (a ``UserWarning``) attributed to the line that called
into initlab, so ``initlab.compare(...)`` in a notebook shows the user's own line, not
initlab's; the command line prints it as ``note: ...`` (:func:`initlab.console.warning_line`).
"""

from __future__ import annotations

import os
import sys
import warnings
from functools import lru_cache
from pathlib import Path

PACKAGE = str(Path(__file__).resolve().parent)


class InitlabNote(UserWarning):
    """A note from initlab (``warnings.simplefilter("ignore", InitlabNote)`` hides them)."""


def note(message: str) -> None:
    """Warn ``message`` as an :class:`InitlabNote` at the line that called into initlab."""
    warnings.warn(message, InitlabNote, stacklevel=_outside_initlab())


def _outside_initlab() -> int:
    """The ``stacklevel`` of the frame that called into initlab: the one just outside the
    outermost initlab frame (counted from :func:`note`, ``warnings.warn``'s level 1), so a
    wrapper in between (``torch.no_grad`` around an initlab function) does not count."""
    frame, level, outermost = sys._getframe(2), 2, 1
    while frame is not None:
        if _is_initlab(frame.f_code.co_filename):
            outermost = level
        frame, level = frame.f_back, level + 1
    return outermost + 1


@lru_cache(maxsize=1024)
def _is_initlab(filename: str) -> bool:
    path = str(Path(filename).resolve())
    return path == PACKAGE or path.startswith(PACKAGE + os.sep)
