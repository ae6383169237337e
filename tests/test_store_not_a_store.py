"""A file named initlab.db that is no SQLite file is refused as not a store (never sent to
``store repair``); an empty one is a store no sweep has written to yet, everywhere."""

from initlab.cli import main


def test_a_text_file_is_refused_as_not_a_store_by_every_command(tmp_path, capsys, tiny_spec):
    (tmp_path / "initlab.db").write_text("these are my notes\n" * 3)
    spec = tiny_spec(tmp_path / "tiny.toml", "tiny", ["zeros", "he_normal"], hidden=8)
    for argv in (
        ["store", "check", str(tmp_path)],
        ["store", "repair", str(tmp_path)],
        ["results", str(tmp_path)],
        ["sweep", str(spec), "--out", str(tmp_path), "--workers", "1"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "is not an initlab results store" in err, argv
        assert "store repair" not in err and "\n" not in err, argv
    assert (tmp_path / "initlab.db").read_text() == "these are my notes\n" * 3


def test_an_empty_file_is_a_store_not_written_yet(tmp_path, capsys, tiny_spec):
    (tmp_path / "initlab.db").write_bytes(b"")
    assert main(["store", "check", str(tmp_path)]) == 2
    assert "a sweep into it uses it as a new store" in capsys.readouterr().err
    assert main(["results", str(tmp_path)]) == 2
    assert "no study has been stored in it yet" in capsys.readouterr().err
    spec = tiny_spec(tmp_path / "tiny.toml", "tiny", ["zeros", "he_normal"], hidden=8)
    assert main(["sweep", str(spec), "--out", str(tmp_path), "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["store", "check", str(tmp_path)]) == 0


def test_a_file_of_another_kind_is_refused_as_not_a_store(tmp_path, capsys):
    """``images.npz`` is the file given, not a directory to look for initlab.db in."""
    (tmp_path / "images.npz").write_bytes(b"PK\x03\x04 numpy arrays " * 50)
    (tmp_path / "empty.bin").write_bytes(b"")
    for argv in (
        ["results", str(tmp_path / "images.npz")],
        ["store", "check", str(tmp_path / "images.npz")],
        ["store", "repair", str(tmp_path / "images.npz")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "images.npz is not an initlab results store (not an SQLite file)" in err, argv
        assert "no results store at" not in err and "\n" not in err, argv
        assert ("to check or repair" in err) == (argv[0] == "store"), argv
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "initlab.db").write_bytes(b"PK\x03\x04 numpy arrays " * 50)
    assert (
        main(["compare", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "study")])
        == 2
    )
    err = capsys.readouterr().err  # compare will not write there; nothing to check is moot
    assert "initlab.db is not an initlab results store" in err and "repair" not in err
    assert main(["results", str(tmp_path / "empty.bin")]) == 2
    assert "empty.bin is not an initlab results store" in capsys.readouterr().err
    for argv in (["results"], ["store", "check"], ["store", "repair"]):
        assert main([*argv, str(tmp_path / "nothing")]) == 2
        err = capsys.readouterr().err  # what is missing, and what makes one
        assert "no results store at" in err and "--out DIR` writes one" in err, argv
