"""A run's key follows the user's own modules that the model file imports: editing
`layers.py` under `from layers import Block` resumed the runs trained with the old block."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from initlab.cli import main
from initlab.usercode.imports import local_files
from initlab.usercode.specs import source_fingerprint


@pytest.fixture(autouse=True)
def _forget_the_projects_modules():
    """The model file's imports land in sys.modules: drop them, so that no other test's
    ``import ui_helper`` finds this project's."""
    yield
    for name in [n for n in sys.modules if n.split(".")[0] in ("ui_helper", "ui_blocks", "ui_net")]:
        del sys.modules[name]


MODEL = """import os, json
import numpy as np
import torch
from torch import nn
import ui_helper
from ui_blocks.attention import SCALE

def build(width: int = 8):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
"""


def _project(root: Path) -> Path:
    """A model file importing a module beside it and a package's submodule, which imports
    the first module again; ``helper`` would write a file if it were ever executed."""
    (root / "ui_blocks").mkdir()
    (root / "ui_blocks" / "__init__.py").write_text("")
    (root / "ui_blocks" / "attention.py").write_text("from ui_helper import ACT\nSCALE = 1.0\n")
    (root / "ui_helper.py").write_text(f"open({str(root / 'ran')!r}, 'w')\nACT = 'relu'\n")
    (root / "model.py").write_text(MODEL)
    return root / "model.py"


def test_the_local_modules_a_file_imports_are_found_without_running_them(tmp_path):
    model = _project(tmp_path)
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in local_files(model)]
    assert found == ["ui_blocks/__init__.py", "ui_blocks/attention.py", "ui_helper.py"]
    assert not (tmp_path / "ran").exists()  # read with ast, never imported


def test_editing_an_imported_helper_changes_the_fingerprint_a_lone_file_keeps_its_own(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    spec = f"{_project(tmp_path)}:build"
    before = source_fingerprint(spec)
    helper = tmp_path / "ui_blocks" / "attention.py"
    helper.write_text("from ui_helper import ACT\nSCALE = 2.0\n")
    os.utime(helper, ns=(1, 1))  # another mtime, whatever the clock's resolution
    assert source_fingerprint(spec) != before
    alone = tmp_path / "alone.py"
    alone.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(64, 10)\n")
    from initlab.usercode.specs import file_digest

    assert source_fingerprint(f"{alone}:build") == file_digest(str(alone))  # keys of before


def test_a_compare_trains_again_after_a_helper_its_model_imports_was_edited(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    model = _project(tmp_path)
    (tmp_path / "ran").unlink(missing_ok=True)
    argv = ["compare", "--model", f"{model}:build", "--data", "digits", "--inits", "zeros"]
    argv += ["--seeds", "1", "--epochs", "1", "--workers", "1", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    assert "ran 0 run(s)" in _said(capsys)  # nothing changed: resumed
    (tmp_path / "ui_helper.py").write_text("ACT = 'tanh'\n")
    os.utime(tmp_path / "ui_helper.py", ns=(2, 2))
    assert main(argv) == 0
    assert "ran 1 run(s)" in _said(capsys)  # trained on the new helper


def _said(capsys) -> str:
    """What the command printed on either stream, lines joined (the console wraps)."""
    said = capsys.readouterr()
    return " ".join((said.out + said.err).split())


def test_a_helper_edited_in_a_running_process_is_imported_again_with_its_model(
    tmp_path, monkeypatch
):
    """The new key named the new helper, but `import ui_helper` found the old module still
    in sys.modules: the runs trained the old code (a notebook, a sweep's worker)."""
    from initlab.usercode.specs import load_callable

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ui_helper.py").write_text("WIDTH = 8\n")
    (tmp_path / "ui_net.py").write_text(
        "import torch\nimport ui_helper\n\n\ndef build():\n"
        "    return torch.nn.Linear(4, ui_helper.WIDTH)\n"
    )
    assert load_callable(f"{tmp_path / 'ui_net.py'}:build")().out_features == 8
    (tmp_path / "ui_helper.py").write_text("WIDTH = 32\n")
    os.utime(tmp_path / "ui_helper.py", ns=(3, 3))
    assert load_callable(f"{tmp_path / 'ui_net.py'}:build")().out_features == 32
    monkeypatch.syspath_prepend(str(tmp_path))  # the same through module:function
    assert load_callable("ui_net:build")().out_features == 32
    (tmp_path / "ui_helper.py").write_text("WIDTH = 16\n")
    os.utime(tmp_path / "ui_helper.py", ns=(4, 4))
    assert load_callable("ui_net:build")().out_features == 16


def test_installed_packages_are_never_followed_nor_imported_again_initlab_included(
    tmp_path, monkeypatch
):
    """initlab installed in place (pip install -e) lies outside site-packages: a model file
    importing it had initlab itself dropped from sys.modules, and tests' patches went to
    modules no longer used."""
    import sys

    import initlab.train.trial as trial
    from initlab.usercode.specs import forget_helpers

    monkeypatch.chdir(tmp_path)
    model = tmp_path / "uses_initlab.py"
    model.write_text("import torch\nimport initlab\nfrom initlab.train import trial\n")
    assert local_files(model) == []
    forget_helpers(model)
    assert sys.modules["initlab.train.trial"] is trial
