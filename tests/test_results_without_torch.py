"""Reading results imports no torch: ``import initlab.store`` and the modules that read and
print a store, and ``initlab results`` / ``initlab report`` on a stored study, run without
the training engine (seconds of start-up: the status and task names, ``AS_BUILT`` and the
setting names live in torch-free modules).

A report still loads the initializer registry, on demand, for a group stuck in every run (is
its init a constant?) and for a depth × sigma_w² sweep; the store here has neither.

Each check runs in a fresh Python (this process has torch imported by conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from initlab.config import RunConfig
from initlab.store import open_store
from initlab.sweep.engine import Outcome
from initlab.train.result import RunResult

MARK = "@@imported@@"
READERS = ("initlab.store", "initlab.results", "initlab.results_console", "initlab.report")
"""The modules that read a store and print or report its runs."""


def imported_after_each(steps: list[str], heavy: str = "torch") -> dict[str, bool]:
    """Run each Python statement of ``steps`` in turn in a fresh Python: whether ``heavy``
    was imported after each (so the first one to import it is the one named)."""
    code = "import json, sys\nseen = {}\n"
    for step in steps:
        code += f"{step}\nseen[{step!r}] = {heavy!r} in sys.modules\n"
    code += f"print({MARK!r} + json.dumps(seen))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.rpartition(MARK)[2])


def test_the_modules_that_read_results_import_no_torch():
    seen = imported_after_each([f"import {module}" for module in READERS])
    assert [step for step, imported in seen.items() if imported] == []


def stored_study(path, model: str = "mlp") -> None:
    """A store of four finished runs (two inits × two seeds, one run stuck) of ``model``,
    no training."""
    shape = {"hidden": (16,)} if model == "mlp" else {"limit_train": 64}  # keyed by its name
    with open_store(path, create=True) as store:
        for init in ("he_normal", "glorot_uniform"):
            for seed in range(2):
                config = RunConfig(dataset="digits", model=model, init=init, seed=seed, epochs=2)
                config = config.replace(**shape)
                stuck = init == "glorot_uniform" and seed == 1
                epochs = [
                    {"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.8, "val_loss": 1.0 / e}
                    | {"val_accuracy": 0.8, "seconds": 0.1}
                    for e in (1, 2)
                ]
                result = RunResult(
                    config,
                    "stuck" if stuck else "ok",
                    epochs,
                    test_accuracy=0.1 if stuck else 0.8 + 0.01 * seed,
                    test_loss=0.5,
                )
                store.record(Outcome(result, started_at=0.0, finished_at=1.0, engine="single"))


def test_results_and_report_of_a_stored_study_import_no_torch(tmp_path):
    stored_study(tmp_path / "study")
    store, out = str(tmp_path / "study"), str(tmp_path / "report")
    commands = [
        ["results", store],
        ["results", store, "--group-by", "init", "--within", "seed"],
        ["report", store, "--out", out],
    ]
    steps = ["from initlab.cli import main"]
    steps += [f"assert main({args!r}) == 0, {args!r}" for args in commands]
    seen = imported_after_each(steps)
    assert [step for step, imported in seen.items() if imported] == []
    assert (tmp_path / "report" / "report.html").exists()


def test_results_of_a_user_models_study_import_no_torch(tmp_path):
    """Reading a study of ``net.py:build`` computes its runs' keys to find runs of an edited
    file; the key's dataset name came from the data registry, whose package imports torch."""
    (tmp_path / "net.py").write_text("def build():\n    raise SystemExit('not called')\n")
    stored_study(tmp_path / "study", model=f"{tmp_path / 'net.py'}:build")
    steps = [
        "from initlab.cli import main",
        f"assert main(['results', {str(tmp_path / 'study')!r}]) == 0",
    ]
    assert imported_after_each(steps) == dict.fromkeys(steps, False)


def test_results_prints_a_stored_study_without_the_plotting_stack(tmp_path):
    # matplotlib (~1 s) is for reports and curves; `initlab results` loads it for --within only
    stored_study(tmp_path / "study")
    study = str(tmp_path / "study")
    steps = ["from initlab.cli import main", f"assert main(['results', {study!r}]) == 0"]
    assert imported_after_each(steps, "matplotlib") == dict.fromkeys(steps, False)
