"""Ctrl-C held off while something already computed is written down.

A stack of M runs finishes together; recording its M outcomes takes a moment, and a Ctrl-C
in it kept the outcomes recorded before it and lost the rest, trained and all. Inside
:func:`interrupts_deferred` a SIGINT (and a SIGTERM, which the command line handles as
Ctrl-C) is remembered instead of handled, and delivered to the handler that was there when
the block ends (``KeyboardInterrupt`` for Python's default), so the block finishes whole.
Work that may take long (training) never runs inside.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first that came to
    the handler that was installed (Python's default SIGINT handler raises
    ``KeyboardInterrupt`` there). Nothing is held outside the main thread (only it can
    install handlers), nor a signal whose handler is not Python's (``SIG_IGN``,
    ``SIG_DFL``: SIGTERM ends the process then, as it would have). An exception raised by
    the block wins over a held signal, which is then dropped: the block did not finish."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in HELD}
    held: list[tuple[int, FrameType | None]] = []
    for number, handler in previous.items():
        if callable(handler):
            signal.signal(number, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        for number, handler in previous.items():
            if callable(handler):
                signal.signal(number, handler)
    if held:
        signum, frame = held[0]
        previous[signum](signum, frame)
