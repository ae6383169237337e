"""``initlab.sweep.run``: a spec from Python with compare's keywords (issue: "the same
keywords on sweeps"), a notebook factory's model_args swept like any other axis."""

import numpy as np
import pytest
from torch import nn

import initlab
import initlab.sweep
from initlab.errors import InitlabError


def arrays(n: int = 240) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    cut = n * 3 // 4
    return x[:cut], y[:cut], x[cut:], y[cut:]


SPEC = {
    "name": "widths",
    "fixed": {"epochs": 1, "track": "off"},
    "sweep": {"model_args": {"width": [4, 16]}, "init": ["default", "he_normal"]},
    "seeds": 2,
}


def test_a_notebook_factorys_width_is_swept_into_a_resumable_store(tmp_path):
    def build(width: int = 4) -> nn.Module:  # defined here: registered, as in a notebook
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))

    results = initlab.sweep.run(SPEC, tmp_path / "w", model=build, data=arrays(), device="cpu")
    runs = results.runs
    assert len(runs) == 8 and set(runs["status"]) <= {"ok", "stuck"}
    assert sorted(set(runs["model_args.width"])) == [4, 16]
    assert list(results.group_by) == ["model_args.width", "init"]
    assert results.verdict()  # ranked and judged like any study
    trained = []
    again = initlab.sweep.run(
        SPEC, tmp_path / "w", model=build, data=arrays(), device="cpu",
        progress=lambda config, epoch, result: trained.append(result) if result else None,
    )  # fmt: skip
    assert len(again.runs) == 8 and trained == []  # every run was in the store already
    assert list(again.runs["run_id"]) == list(runs["run_id"])


def test_the_keywords_are_checked_before_anything_runs(tmp_path):
    def build(width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))

    cases = [
        (dict(workers=2), "exist only in this process: use workers=1"),
        (dict(model_args={"width": 3}), r"^model_args=\{'width': ...\}: the spec varies"),
        (dict(device="gpu"), "did you mean 'cuda'"),
        (dict(progress=lambda r: None), "progress is called as progress"),
    ]
    for keywords, said in cases:
        with pytest.raises(InitlabError, match=said):
            initlab.sweep.run(SPEC, tmp_path / "never", model=build, data=arrays(), **keywords)
    with pytest.raises(InitlabError, match="spec takes a spec file's path, a dict"):
        initlab.sweep.run(["not", "a", "spec"])
    with pytest.raises(InitlabError, match=r"data examples have shape \[8\]"):
        wrong = lambda: nn.Linear(5, 2)  # noqa: E731
        initlab.sweep.run({"fixed": {"epochs": 1}}, tmp_path / "never", model=wrong,
                          data=arrays())  # fmt: skip
    assert not (tmp_path / "never").exists()


def test_a_python_object_in_a_spec_dict_points_to_the_keywords():
    with pytest.raises(InitlabError, match=r"initlab.sweep.run\(spec, model=arrays\)"):
        initlab.sweep.run({"fixed": {"model": arrays}})
    with pytest.raises(InitlabError, match=r"initlab.sweep.run\(spec, data=...\)"):
        initlab.sweep.run({"fixed": {"data": arrays()}})


def test_runs_with_an_argument_only_some_set_are_not_pooled_as_seeds(tmp_path):
    """depth=6 given to half the runs, absent (the factory's default) from the others:
    pandas' string dtype kept the absent ones missing, the column read as constant, and
    each group held both depths as 4 "seeds"."""

    def build(width: int = 4, depth: int = 1) -> nn.Module:
        layers = [nn.Linear(8, width), nn.ReLU()]
        layers += [m for _ in range(depth - 1) for m in (nn.Linear(width, width), nn.ReLU())]
        return nn.Sequential(*layers, nn.Linear(width, 2))

    spec = {"fixed": {"epochs": 1, "track": "off"}, "sweep": {"model_args": {"width": [4, 8]}},
            "seeds": 2}  # fmt: skip
    out = tmp_path / "pool"
    initlab.sweep.run(spec, out, model=build, data=arrays())
    initlab.sweep.run(spec, out, model=build, data=arrays(), model_args={"depth": 3})
    with initlab.store.open_store(out) as store:
        every = store.results()  # all runs: both studies
    assert "model_args.depth" in every.group_by and "model_args.width" in every.group_by
    summary = every.summary()  # no group dropped for the runs that lack depth
    assert len(summary) == 4 and set(summary["runs"]) == {2}
    labels = set(every.ranking()["group"])
    assert labels == {"4 / (default)", "8 / (default)", "4 / 3", "8 / 3"}  # not 4.0 / nan


def test_settings_and_a_model_args_string_get_one_line_each():
    """``epochs=1`` was a TypeError naming run(); ``model_args="width=8"`` a ValueError."""
    with pytest.raises(InitlabError, match=r"^run takes no epochs=: run settings go "
                       r"in the spec \(\{'fixed': \{'epochs': ...\}\}"):  # fmt: skip
        initlab.sweep.run(SPEC, epochs=1)
    with pytest.raises(InitlabError, match=r"^run takes no seeds=: give it in the spec"):
        initlab.sweep.run(SPEC, seeds=3)
    with pytest.raises(InitlabError, match=r"keyword of initlab.sweep.run 'modle'; did you "
                       r"mean 'model'\?"):  # fmt: skip
        initlab.sweep.run(SPEC, modle=arrays)
    with pytest.raises(InitlabError, match="model_args takes a dict of the factory's keyword"):
        initlab.sweep.run(SPEC, model_args="width=8")


def test_the_failure_note_names_the_failed_runs_group_not_only_its_init():
    """Both runs were 'he_normal seed 0': the note did not say which width failed."""
    import pandas as pd

    from initlab.notes import InitlabNote
    from initlab.results import ResultSet
    from initlab.sweep.python_api import _note_failures

    runs = pd.DataFrame(
        [{"run_id": f"r{w}", "init": "he_normal", "seed": 0, "model_args.width": w,
          "status": "failed" if w == 32 else "ok", "message": "RuntimeError: boom",
          "test_accuracy": 0.5} for w in (16, 32)]
    )  # fmt: skip
    results = ResultSet(runs, pd.DataFrame(), group_by=("model_args.width", "init"))
    with pytest.warns(InitlabNote, match=r"1 of 2 run\(s\) failed, e.g. model_args.width=32, "
                      r"init=he_normal seed 0: RuntimeError: boom"):  # fmt: skip
        _note_failures(results)


def test_a_swept_value_the_model_cannot_take_is_named_in_the_error(tmp_path):
    """A sweep over widths where one width fails said only what failed, not at which width."""

    def build(width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(4, 2))  # 4 only

    with pytest.raises(InitlabError, match=r"^runs with width=16: the model cannot run"):
        initlab.sweep.run(SPEC, tmp_path / "w", model=build, data=arrays(), device="cpu")
    assert not (tmp_path / "w").exists()
    with pytest.raises(InitlabError, match=r"^the model cannot run"):  # one model: no prefix
        initlab.compare(["default"], 1, model=build, model_args={"width": 16}, data=arrays())


def test_the_preflights_naming_keeps_the_errors_type_and_every_swept_keyword(tmp_path):
    """It re-raised type(exc)(message), a TypeError for UnknownNameError; a factory keyword
    named like a setting (activation) was hidden by the setting; init checks named no run."""
    from initlab.config import RunConfig
    from initlab.errors import UnknownNameError
    from initlab.sweep.preflight import preflight_configs

    base = dict(dataset="digits", epochs=1, limit_train=64)
    configs = [RunConfig(activation=a, **base) for a in ("relu", "tahn")]
    with pytest.raises(UnknownNameError, match=r"^runs with activation=tahn: unknown"):
        preflight_configs(configs)
    spec = f"{tmp_path}/acts.py:build"
    (tmp_path / "acts.py").write_text(
        "from torch import nn\n\n\ndef build(activation='relu', tie=False):\n"
        "    if activation == 'gelu':\n        raise ValueError('no gelu here')\n"
        "    head = nn.Linear(64, 10)\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), head)\n"
    )
    swept = [RunConfig(model=spec, model_args={"activation": a}, **base) for a in ("relu", "gelu")]
    with pytest.raises(InitlabError, match=r"^runs with model_args\.activation=gelu: the model"):
        preflight_configs(swept)
