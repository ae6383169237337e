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
