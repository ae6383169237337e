"""The identity of a factory or data function handed over as a Python object: what it
captures and reads counts, so a store never hands back another model's runs."""

import functools
import textwrap
import warnings

import numpy as np
import pytest
import torch

from initlab import InitlabNote
from initlab.errors import InitlabError
from initlab.usercode.fingerprint import callable_digest
from initlab.usercode.inprocess import model_spec


def _mlp(width: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 2))


def _notebook(source: str, **values) -> dict:
    """Run ``source`` as a notebook cell would (module ``__main__``, no source file)."""
    namespace = {"__name__": "__main__", "torch": torch, **values}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return namespace


def test_closures_differ_by_what_they_capture():
    def make(width):
        return lambda: _mlp(width)

    # both lambdas have the same source: keyed by it alone, a store of width 2 runs
    # answered for width 64
    assert callable_digest(make(2)) != callable_digest(make(64))
    assert callable_digest(make(2)) == callable_digest(make(2))
    assert model_spec(make(2)) != model_spec(make(64))


def test_partials_are_keyed_by_function_and_arguments():
    assert callable_digest(functools.partial(_mlp, 16)) != callable_digest(
        functools.partial(_mlp, 32)
    )
    assert callable_digest(functools.partial(_mlp, width=16)) == callable_digest(
        functools.partial(_mlp, width=16)
    )
    assert model_spec(functools.partial(_mlp, 16)).startswith("callable:")


def test_notebook_globals_and_classes_count():
    cell = """
        class Net(torch.nn.Module):
            def __init__(self, width):
                super().__init__()
                self.fc = torch.nn.Linear(4, width)

        def build():
            return Net(WIDTH)
    """
    narrow, wide = _notebook(cell, WIDTH=2), _notebook(cell, WIDTH=64)
    assert callable_digest(narrow["build"]) != callable_digest(wide["build"])
    edited = _notebook(cell.replace("Linear(4, width)", "Linear(4, 2 * width)"), WIDTH=2)
    assert callable_digest(edited["build"]) != callable_digest(narrow["build"])
    assert callable_digest(_notebook(cell, WIDTH=2)["build"]) == callable_digest(narrow["build"])


def test_captured_arrays_and_modules_are_keyed_by_their_values():
    base = np.zeros(3)
    changed = base.copy()
    changed[1] = 1.0
    assert callable_digest(lambda: base) != callable_digest(lambda: changed)
    torch.manual_seed(0)
    net_a = _mlp(3)
    torch.manual_seed(1)
    net_b = _mlp(3)
    assert callable_digest(lambda: net_a) != callable_digest(lambda: net_b)  # same repr


def test_an_object_known_only_by_its_address_is_named_in_a_note():
    class Settings:
        width = 8

    settings = Settings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callable_digest(lambda: _mlp(settings.width))
    assert any(
        issubclass(w.category, InitlabNote) and "settings (a Settings)" in str(w.message)
        for w in caught
    )


def test_a_recursive_notebook_function_terminates():
    cell = """
        def depth(n):
            return 0 if n == 0 else 1 + depth(n - 1)
    """
    assert len(callable_digest(_notebook(cell)["depth"])) == 16


def test_no_code_at_all_is_one_clear_error():
    from initlab.errors import InitlabError

    with pytest.raises(InitlabError, match="cannot fingerprint"):
        callable_digest(len)


def test_a_partial_captured_by_a_lambda_counts_its_arguments():
    narrow, wide = functools.partial(_mlp, 2), functools.partial(_mlp, 64)
    assert callable_digest(lambda: narrow()) != callable_digest(lambda: wide())


def test_what_a_notebook_class_reads_counts():
    # class attributes, properties and globals read by methods were not hashed: WIDTH = 2
    # and WIDTH = 64 gave one key
    cell = """
        def helper():
            return WIDTH

        class Net(torch.nn.Module):
            scale = SCALE

            @property
            def width(self):
                return helper()

            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, self.width)

        def build():
            return Net()
    """
    base = callable_digest(_notebook(cell, WIDTH=2, SCALE=1)["build"])
    assert callable_digest(_notebook(cell, WIDTH=64, SCALE=1)["build"]) != base
    assert callable_digest(_notebook(cell, WIDTH=2, SCALE=3)["build"]) != base
    assert callable_digest(_notebook(cell, WIDTH=2, SCALE=1)["build"]) == base


def test_a_class_passed_itself_counts_what_its_methods_read():
    """``model=Net`` hashed the class's source only: a notebook helper its forward calls
    (relu edited to zeros), or a global it reads, changed nothing, and ``out=`` resumed the
    old runs; ``model=lambda: Net()`` saw the change."""
    cell = """
        def act(z):
            return ACT(z)

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, WIDTH)

            def forward(self, x):
                return act(self.fc(x))
    """
    base = callable_digest(_notebook(cell, ACT=torch.relu, WIDTH=2)["Net"])
    assert callable_digest(_notebook(cell, ACT=torch.zeros_like, WIDTH=2)["Net"]) != base
    assert callable_digest(_notebook(cell, ACT=torch.relu, WIDTH=3)["Net"]) != base
    assert callable_digest(_notebook(cell, ACT=torch.relu, WIDTH=2)["Net"]) == base


def test_a_users_module_counts_by_its_file(tmp_path, monkeypatch):
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "fp_models.py").write_text("def mlp():\n    return 2\n")
    module = importlib.import_module("fp_models")
    try:
        factory = _notebook("def build():\n    return fp_models.mlp()\n", fp_models=module)
        before = callable_digest(factory["build"])
        (tmp_path / "fp_models.py").write_text("\n\ndef mlp():\n    return 2\n")
        moved = callable_digest(factory["build"])  # the same code, a line lower: no error
        (tmp_path / "fp_models.py").write_text("def mlp():\n    return 64\n")
        # the new file's key for the old code still loaded: refused, until reloaded
        with pytest.raises(InitlabError, match=r"fp_models.py changed since .* \(mlp differs\)"):
            callable_digest(factory["build"])
        importlib.reload(module)
        assert len({before, moved, callable_digest(factory["build"])}) == 3
    finally:
        sys.modules.pop("fp_models", None)


def test_a_users_class_edited_on_disk_but_not_reloaded_is_refused(tmp_path, monkeypatch):
    """A method edited in the file while the old class stays loaded (a notebook without
    autoreload) trained the old code under the new file's key; after a reload, those runs
    were resumed as finished."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    source = "class Net:\n    def forward(self, x):\n        return x + 1\n"
    (tmp_path / "fp_classes.py").write_text(source)
    module = importlib.import_module("fp_classes")
    try:
        callable_digest(module.Net)
        (tmp_path / "fp_classes.py").write_text(source.replace("x + 1", "x * 2"))
        with pytest.raises(InitlabError, match=r"Net.forward differs.*importlib.reload"):
            callable_digest(module.Net)
    finally:
        sys.modules.pop("fp_classes", None)


def test_default_arguments_count_as_a_loops_lambdas_capture():
    """``lambda w=w: mlp(w)`` in a loop over widths got one key: width 256 resumed the
    runs of width 2."""
    digests = {callable_digest(lambda w=w: _mlp(w)) for w in (2, 256)}
    assert len(digests) == 2

    def build(width=8, *, depth=2):
        return _mlp(width)

    kw = _notebook("def build(*, width=W):\n    return width\n", W=3)["build"]
    other = _notebook("def build(*, width=W):\n    return width\n", W=4)["build"]
    assert callable_digest(kw) != callable_digest(other)
    assert callable_digest(build) == callable_digest(build)


def test_two_lambdas_on_one_line_are_told_apart():
    small, large = lambda: _mlp(4), lambda: _mlp(128)
    assert callable_digest(small) != callable_digest(large)


def test_attribute_names_are_not_globals_and_odd_values_do_not_crash():
    cell = """
        def build():
            m = torch.nn.Linear(4, 4)
            m.weight.data.zero_()
            return m
    """
    # a global named like an attribute (data) is not read by build: same key, no note
    with warnings.catch_warnings():
        warnings.simplefilter("error", InitlabNote)
        assert callable_digest(_notebook(cell, data=object())["build"]) == callable_digest(
            _notebook(cell, data=[1, 2])["build"]
        )
    loop: dict = {}
    loop["self"] = loop
    odd = (loop, np.array([object()], dtype=object), torch.empty(3, device="meta"))

    def factory():
        return odd

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = callable_digest(factory)
        assert first == callable_digest(factory)
    # an object array's bytes are pointers (other in every process): named, not hashed
    assert any("an object array" in str(w.message) for w in caught)


def test_unedited_modules_with_setters_overloads_and_set_literals_are_not_refused(
    tmp_path, monkeypatch
):
    """A property's setter (compared with its getter), two definitions of one name and a
    set literal (its frozenset's repr order follows string hashing, which differs between
    processes) made the stale-module check refuse files nobody had edited."""
    import importlib
    import subprocess
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    source = textwrap.dedent(
        """
        import sys

        ACTS = {"relu", "gelu", "tanh", "silu", "elu", "selu", "sigmoid", "softplus"}

        class Net:
            @property
            def scale(self):
                return 1

            @scale.setter
            def scale(self, value):
                self._s = value

        if sys.version_info >= (3, 0):
            def act(name):
                return name in {"relu", "gelu", "tanh", "silu", "elu"}
        else:
            def act(name):
                return False

        def build(width=4):
            return act("relu"), Net(), width in {1, 2, 3, 4, 5, 6, 7, 8}
        """
    )
    (tmp_path / "fp_unedited.py").write_text(source)
    module = importlib.import_module("fp_unedited")
    try:
        callable_digest(module.build)
        callable_digest(module.Net)
    finally:
        sys.modules.pop("fp_unedited", None)
    # a lambda beside another on one line is keyed by its code: the same in every process
    line = "a, b = lambda: x in {'relu', 'gelu', 'tanh', 'silu', 'elu', 'selu'}, lambda: 2"
    script = (
        "from initlab.usercode.fingerprint import callable_digest\nx = 'relu'\n"
        f"{line}\nprint(callable_digest(a))\n"
    )
    (tmp_path / "two.py").write_text(script)
    digests = {
        subprocess.run(
            [sys.executable, str(tmp_path / "two.py")], capture_output=True, text=True,
            env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}, check=True,
        ).stdout.strip()
        for seed in range(4)
    }  # fmt: skip
    assert len(digests) == 1
