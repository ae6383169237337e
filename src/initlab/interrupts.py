"""Ctrl-C held off while something already computed is written down.

A stack of M runs finishes together; recording its M outcomes takes a moment, and a Ctrl-C
in it kept the outcomes recorded before it and lost the rest, trained and all. Inside
:func:`interrupts_deferred` a SIGINT is remembered instead of raised, and delivered (the
handler that was there called, ``KeyboardInterrupt`` for Python's default) when the block
ends, so the block finishes whole. Work that may take long (training) never runs inside.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT until the block ends, then deliver it to the handler that was installed
    (Python's default raises ``KeyboardInterrupt`` there). Nothing is held outside the main
    thread (only it can install handlers) or where SIGINT is ignored or not Python's to
    handle (``SIG_IGN``, ``SIG_DFL``). An exception raised by the block wins over a held
    SIGINT, which is then dropped: the block did not finish anyway."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    held: list[tuple[int, FrameType | None]] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        previous(*held[0])
