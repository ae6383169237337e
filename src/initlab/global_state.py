"""Run third-party code that draws from, or reseeds, process-wide state and leave that state
as it was: :func:`preserved_globals`.

A leaf module that imports nothing heavy (numpy only if it is already imported), so that
the light modules (:mod:`initlab.console`, on the way to ``initlab --help``) can use it
around their imports: importing ``rich.style`` draws ``random.getrandbits(24)``, which
moved the stream of a user who had called ``random.seed`` before ``initlab.compare``.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def preserved_globals() -> Iterator[None]:
    """Restore Python's and numpy's global RNG states and ``os.environ`` on exit.

    For third-party code that reseeds or draws from them (mnist1d's generator; importing
    ``sklearn.datasets`` or ``rich.style`` draws from ``random``; ``sklearn`` sets
    ``KMP_DUPLICATE_LIB_OK=True``, which would hide a real duplicate-OpenMP error for the
    rest of the user's session). numpy's state is kept when numpy was imported on entry; one
    not imported yet has a state nobody set (a fresh one, seeded from the OS), so nothing
    is kept and numpy is not imported for it.
    """
    numpy = sys.modules.get("numpy")
    py_state = random.getstate()
    np_state = numpy.random.get_state() if numpy is not None else None
    environment = dict(os.environ)
    try:
        yield
    finally:
        random.setstate(py_state)
        if numpy is not None:
            numpy.random.set_state(np_state)
        for key in set(os.environ) - set(environment):
            del os.environ[key]
        for key, value in environment.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
