"""Naming the user file that changed since a stale run trained (the store's ``sources``)."""

import json

from initlab.store.rows import user_sources
from initlab.store.versions import changed_files
from initlab.usercode.specs import source_fingerprint


def test_only_the_file_that_changed_is_named(tmp_path, monkeypatch):
    """A sweep on models.py and data.npz, then models.py edited: the note blamed both."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models.py").write_text("def build():\n    pass\n")
    (tmp_path / "data.npz").write_bytes(b"not really an npz; only its bytes are hashed")
    fields = {"model": "models.py:build", "dataset": "data.npz"}
    recorded = json.dumps(user_sources(fields))
    assert json.loads(recorded) == {
        "models.py:build": source_fingerprint("models.py:build"),
        "data.npz": source_fingerprint("data.npz"),
    }
    (tmp_path / "models.py").write_text("def build():\n    return 1\n")
    specs = ("models.py:build", "data.npz")
    assert changed_files([(specs, recorded)]) == "models.py"
    # a run recorded before the column existed: either may have changed
    assert changed_files([(specs, None)]) == "data.npz or models.py"
    # nothing changed (an older initlab keyed the run differently): both, as possibilities
    assert changed_files([(specs, json.dumps(user_sources(fields)))]) == "data.npz or models.py"
    (tmp_path / "data.npz").write_bytes(b"other bytes")
    assert changed_files([(specs, recorded)]) == "data.npz and models.py"


def test_built_in_models_and_data_record_no_sources():
    assert user_sources({"model": "mlp", "dataset": "digits"}) == {}


def net_sweep(tmp_path, monkeypatch) -> tuple:
    """``net.py:build`` and a sweep of it over two inits in ``tmp_path`` (the working
    directory): the model file, and the sweep's command line."""
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "net.py"
    model.write_text(
        "from torch import nn\n\n\ndef build(width=8):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(),"
        " nn.Linear(width, 10))\n"
    )
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "s"\nseeds = 1\n[fixed]\nmodel = "net.py:build"\ndataset = "digits"\n'
        'epochs = 1\nlimit_train = 64\n[sweep]\ninit = ["default", "he_normal"]\n'
    )
    return model, ["sweep", str(spec), "--out", "out", "--workers", "1"]


def test_a_sweep_and_its_dry_run_say_that_older_versions_train_again(tmp_path, monkeypatch, capsys):
    """After an edit the dry run said '0 already done' and the sweep started silently,
    while the store held every run of these settings on the older file."""
    from initlab.cli import main

    model, run = net_sweep(tmp_path, monkeypatch)
    assert main(run) == 0
    model.write_text(model.read_text() + "# edited\n")
    capsys.readouterr()
    assert main([*run, "--dry-run"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "2 stored run(s) with these settings were trained before net.py last changed" in said
    assert main(run) == 0
    assert "2 stored run(s) with these settings" in " ".join(capsys.readouterr().err.split())


def test_a_study_edited_then_put_back_says_its_current_runs_are_stored(
    tmp_path, monkeypatch, capsys
):
    """Trained, edited and trained again, then the file put back (a git checkout): the
    study still lists the edited version's runs, and the note told the user to run it again
    'to retrain them', though the store holds every run of the file as it is now and
    running it again trains nothing."""
    from initlab.cli import main

    model, run = net_sweep(tmp_path, monkeypatch)
    original = model.read_text()
    assert main(run) == 0
    model.write_text(original + "# edited\n")
    assert main(run) == 0
    model.write_text(original)  # put back
    capsys.readouterr()
    assert main(["results", "out"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "2 of the runs date from before net.py last changed" in said
    assert (
        "the runs of the current version the store already holds (all 2: nothing retrains)" in said
    )
    assert main(run) == 0
    rerun = " ".join(capsys.readouterr().err.split())
    assert "2 of 2 runs" in rerun and "running" not in rerun, rerun  # nothing retrained
    assert main(["results", "out"]) == 0
    assert "run their study again" not in capsys.readouterr().err  # it lists the current runs
