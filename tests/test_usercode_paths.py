"""A user's model file finds its neighbour modules, at import and when its factory runs."""

from initlab.usercode.specs import load_callable


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


def test_a_factory_that_raises_on_its_arguments_names_them(tmp_path, monkeypatch):
    """width='abc' from a spec or --model-arg gave only the factory's own TypeError."""
    import pytest

    from initlab.errors import InitlabError
    from initlab.models import build_user_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(
        "from torch import nn\n\n\ndef build(width=4):\n    return nn.Linear(2, width)\n"
    )
    with pytest.raises(InitlabError, match=r"raised TypeError: .* \(called with width='abc'\)$"):
        build_user_model("nets.py:build", {"width": "abc"})


def test_a_factory_calling_sys_exit_is_an_error_not_a_silent_exit_0(tmp_path, monkeypatch):
    import pytest

    from initlab.errors import InitlabError
    from initlab.models import build_user_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text("import sys\n\n\ndef build():\n    sys.exit(0)\n")
    with pytest.raises(InitlabError, match=r"the model factory nets.py:build raised SystemExit"):
        build_user_model("nets.py:build")


def test_a_module_spec_does_not_put_its_package_folder_on_the_path(tmp_path, monkeypatch):
    """initlab.models.scalable:mlp put src/initlab/models first on sys.path during the call,
    so 'import gpt' there would find initlab's own module; a file spec's folder is added."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sub.py").write_text("import sys\n\n\ndef paths():\n    return list(sys.path)\n")
    monkeypatch.chdir(tmp_path)
    assert str(package) not in load_callable("pkg.sub:paths")()
    assert str(package) in load_callable("pkg/sub.py:paths")()
