"""A spec's own model settings that cannot work are errors naming the spec key
(``[fixed] model``), not a command-line option the user did not use."""

import pytest

from initlab.cli import main

BASE = 'name = "m"\n[fixed]\ndataset = "digits"\nepochs = 1\n'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('model = "nofile.py:build"\n', "m.toml: [fixed] model: no such file 'nofile.py'"),
        (
            'model = "mlp"\nmodel_args = {width = 3}\n',
            "m.toml: [fixed] model_args {'width': 3} are for a model factory",
        ),
        (
            '[sweep]\nmodel = ["mlp", "nofile.py:build"]\n',
            "m.toml: [sweep] model: no such file 'nofile.py'",
        ),
        (  # the runs' own check named neither the file nor the section
            'model = "f.py:build"\nhidden = [100]\n',
            "m.toml: [fixed] hidden=100: the model f.py:build does not use it (only the "
            "built-in mlp does); give your factory's own settings in [fixed] model_args",
        ),
        (
            'model = "f.py:build"\n[sweep]\nhidden = [[100], [64]]\n',
            "m.toml: [sweep] hidden: the model f.py:build does not use it",
        ),
        ('model = "cnn"\ndropout = 0.5\n', "m.toml: [fixed] dropout=0.5: the model cnn does not"),
    ],
)
def test_spec_model_errors_name_the_spec_key(tmp_path, monkeypatch, capsys, body, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Flatten()\n"
    )
    (tmp_path / "m.toml").write_text(BASE + body)
    assert main(["sweep", "m.toml", "--out", "out", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and "--model" not in err
    assert len(err.strip().splitlines()) == 1
    if "no such file" in expected:  # where it looked, and why there
        assert f"in {tmp_path}" in err and "read from the current directory" in err


def test_model_given_on_the_command_line_replaces_the_specs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.toml").write_text(BASE + 'model = "nofile.py:build"\n')
    assert main(["sweep", "m.toml", "--model", "mlp", "--out", "out", "--dry-run"]) == 0
    assert main(["sweep", "m.toml", "--model", "gone.py:f", "--out", "out", "--dry-run"]) == 2
    assert "error: --model: no such file 'gone.py'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "expected"),
    [  # the dry run listed these as pending; the real run blamed a --data nobody passed
        ('data = "gone.npz"\n', "m.toml: [fixed] data: no such file 'gone.npz'"),
        ('dataset = "gone.pt"\n', "m.toml: [fixed] data: no such file 'gone.pt'"),
        ('[sweep]\ndata = ["digits", "gone.npz"]\n', "m.toml: [sweep] data: no such file"),
        ('data = "sub.npz"\n', "m.toml: [fixed] data: 'sub.npz' is a directory, not a data"),
        ('data = "d.py:lod"\n', "m.toml: unknown function in 'd.py' for [fixed] data 'lod'"),
    ],
)
@pytest.mark.parametrize("dry_run", [True, False])
def test_spec_data_errors_name_the_spec_key(tmp_path, monkeypatch, capsys, body, expected, dry_run):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub.npz").mkdir()
    (tmp_path / "d.py").write_text("def load():\n    raise AssertionError('not called')\n")
    (tmp_path / "m.toml").write_text('name = "m"\n[fixed]\nepochs = 1\n' + body)
    command = ["sweep", "m.toml", "--out", "out"] + (["--dry-run"] if dry_run else [])
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and "--data" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    if dry_run and "[sweep]" not in body:  # --data replaces the spec's: its checks apply
        assert main([*command, "--data", "digits"]) == 0
