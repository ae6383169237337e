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
from types import FrameType

PACKAGE = str(Path(__file__).resolve().parent)


class InitlabNote(UserWarning):
    """A note from initlab (``warnings.simplefilter("ignore", InitlabNote)`` hides them)."""


def note(message: str) -> None:
    """Warn ``message`` as an :class:`InitlabNote` at the line that called into initlab,
    once per line where the filters in force show a warning once (:func:`_shown_before`)."""
    level = _outside_initlab()
    if not _shown_before(message, sys._getframe(level - 1)):
        warnings.warn(message, InitlabNote, stacklevel=level)


_SHOWN: set[tuple[str, str, int]] = set()
"""``(message, file, line)`` of each note shown under a show-once filter."""


def forget_shown() -> None:
    """Start a new record of shown notes (each command of the command line shows its own,
    as a new process would)."""
    _SHOWN.clear()


def _shown_before(message: str, frame: FrameType) -> bool:
    """Whether ``message`` was shown at ``frame``'s line before and the filter in force
    there shows a warning once (``default``, ``module``, ``once``: Python's own default).
    Python keeps that record itself, but resets it whenever a filter changes, and
    ``warnings.catch_warnings`` inside initlab and torch changes them for every model a
    comparison builds: one ``compare`` call in a notebook repeated each note nine times.
    Under ``always`` (as ``pytest.warns`` sets) every note is shown."""
    module, line = frame.f_globals.get("__name__", ""), frame.f_lineno
    if _action(message, module, line) not in ("default", "module", "once"):
        return False
    key = (message, frame.f_code.co_filename, line)
    if key in _SHOWN:
        return True
    _SHOWN.add(key)
    return False


def _action(message: str, module: str, line: int) -> str:
    """The action of the first filter in :data:`warnings.filters` that an
    :class:`InitlabNote` with ``message``, raised at ``module``'s ``line``, matches."""
    for action, text, category, where, lineno in warnings.filters:
        if (
            (text is None or text.match(message))
            and issubclass(InitlabNote, category)
            and (where is None or where.match(module))
            and lineno in (0, line)
        ):
            return action
    return warnings.defaultaction


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
