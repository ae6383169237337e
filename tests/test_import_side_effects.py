"""Importing initlab changes nothing and costs little: ``import initlab`` and
``import initlab.store`` leave matplotlib, Ray and scipy.stats unimported, since only the
functions that draw or test import them; and neither importing the modules that print
(Rich, whose ``rich.style`` draws from ``random`` as it imports) nor printing moves a seeded
``random`` or numpy stream.

Each check runs in a fresh Python (this process has imported everything already); nothing
here measures time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MARK = "@@imports@@"


def fresh(code: str) -> object:
    """Run ``code`` in a fresh Python; what it printed after :data:`MARK`, as JSON."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.rpartition(MARK)[2])


@pytest.mark.parametrize("module", ["initlab", "initlab.store"])
def test_importing_initlab_or_its_store_does_not_import_matplotlib_ray_or_scipy_stats(module):
    heavy = ("matplotlib", "ray", "scipy.stats")  # scipy.stats alone took ~0.7 s
    loaded = fresh(
        f"import json, sys\nimport {module}\n"
        f"print({MARK!r} + json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    assert loaded == []


def test_the_curves_still_draw_once_matplotlib_is_imported_there(tmp_path):
    import pandas as pd

    from initlab.curves import plot_curves

    epochs = pd.DataFrame(
        {"init": ["a", "a"], "epoch": [1, 2], "train_loss": [2.0, 1.0], "val_accuracy": [0.5, 0.6]}
    )
    assert plot_curves(epochs, ["init"], tmp_path / "curves.png").stat().st_size > 0


def test_importing_and_printing_leave_a_seeded_random_and_numpy_stream_where_they_were():
    kept = fresh(
        "import io, json, random\n"
        "import numpy as np\n"
        "random.seed(0); np.random.seed(0)\n"
        "state, np_state = random.getstate(), np.random.get_state()[1].tolist()\n"
        "import initlab\n"
        "import initlab.console, initlab.progress_display\n"
        "initlab.compare  # the public entry point that first imports Rich\n"
        "console = initlab.console.stdout_console()\n"
        "console.file = io.StringIO()\n"
        "console.print('a line')\n"
        "same = [random.getstate() == state, np.random.get_state()[1].tolist() == np_state]\n"
        f"print({MARK!r} + json.dumps(same))"
    )
    assert kept == [True, True]


def test_preserved_globals_does_not_import_numpy_for_a_state_nobody_set():
    imported = fresh(
        "import json, random, sys\n"
        "from initlab.global_state import preserved_globals\n"
        "random.seed(3); state = random.getstate()\n"
        "with preserved_globals():\n"
        "    random.random()\n"
        f"print({MARK!r} + json.dumps(['numpy' in sys.modules, random.getstate() == state]))"
    )
    assert imported == [False, True]
