"""A spec that sets no setting runs the full default lab: a note on stderr says so."""

from initlab.cli import main


def test_a_spec_setting_nothing_gets_a_note_naming_the_defaults(tmp_path, capsys):
    spec = tmp_path / "b.yaml"
    spec.write_text("name: b\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "note: b.yaml sets no settings" in err and "fashion-mnist" in err


def test_a_spec_with_settings_gets_no_note(tmp_path, capsys):
    spec = tmp_path / "c.yaml"
    spec.write_text("name: c\nfixed:\n  dataset: digits\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "sets no settings" not in capsys.readouterr().err
    empty = tmp_path / "b.yaml"
    empty.write_text("name: b\n")
    args = ["sweep", str(empty), "--out", str(tmp_path / "p"), "--dry-run", "--data", "digits"]
    assert main(args) == 0
    assert "sets no settings" not in capsys.readouterr().err  # the command line sets one
