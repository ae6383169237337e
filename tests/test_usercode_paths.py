"""A user's model file finds its neighbour modules, at import and when its factory runs."""

from initlab.usercode import load_callable


def test_a_factory_imports_modules_beside_its_file_when_called(tmp_path, monkeypatch):
    """``import blocks`` inside ``build`` failed with ModuleNotFoundError: the directory was
    on sys.path only while the file was imported (and then only the current directory)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "blocks.py").write_text("WIDTH = 7\n")
    (project / "parts.py").write_text("DEPTH = 3\n")
    (project / "models.py").write_text(
        "import parts\n\n\ndef build():\n    import blocks\n\n"
        "    return blocks.WIDTH, parts.DEPTH\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    import sys

    before = list(sys.path)
    build = load_callable(f"{project / 'models.py'}:build")
    assert sys.path == before  # nothing left behind
    assert build() == (7, 3)
    assert sys.path == before and build.__name__ == "build"
