"""``initlab.trials``: ``initlab doctor --trials`` in Python, with compare's keywords for the
model, data and device; every mistake one InitlabError before anything trains."""

import json

import pytest
from torch import nn

import initlab
from initlab.config import RunConfig
from initlab.doctor import trials as trial_module
from initlab.doctor.evidence import Evidence
from initlab.errors import InitlabError


def tanh_net() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10)
    )


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """Every config the trials train (the timing trial included), in order."""
    calls: list[RunConfig] = []
    real = trial_module.train_configs

    def counting(configs, data, on_epoch=None):
        calls.extend(configs)
        return real(configs, data, on_epoch=on_epoch)

    monkeypatch.setattr(trial_module, "train_configs", counting)
    return calls


def test_trials_train_the_candidates_on_the_given_model_and_write_the_evidence(tmp_path, trained):
    with pytest.warns(initlab.InitlabNote) as notes:
        evidence = initlab.trials(
            model=tanh_net, data="digits", trials=2, budget=6, candidates="plan,he_normal",
            optimizer="adam", lr=0.003, batch_size=16, out=tmp_path / "evidence",
        )  # fmt: skip
    assert isinstance(evidence, Evidence)
    said = [str(n.message) for n in notes]
    assert any("2 init seed(s)" in n for n in said)  # the test's power, before training
    assert any(n.startswith("12 runs × ") and "with adam, lr 0.003" in n for n in said)
    assert {c.name for c in evidence.candidates} == {"default", "plan", "he_normal"}
    assert {(c.optimizer, c.lr, c.batch_size, c.device) for c in trained} == {
        ("adam", 0.003, 16, "auto")
    }
    assert len(evidence.results) == 3 * 4 and evidence.verdict["reference"] == "default"
    assert evidence.winner.name in {"default", "plan", "he_normal"}
    assert evidence.verdict["message"] in str(evidence)
    # a notebook cell ending in `evidence` showed the dataclass repr: every run's epochs
    assert repr(evidence) == str(evidence) and len(repr(evidence)) < 2000
    assert "<table" in evidence._repr_html_() and "epochs" not in evidence._repr_html_()
    assert [e.layer for e in evidence.plan.entries] == ["1", "3", "5"]
    written = sorted(p.name for p in (tmp_path / "evidence").iterdir())
    assert written == ["curves.png", "init_snippet.py", "recommendation.json", "trials.csv"]
    found = json.loads((tmp_path / "evidence" / "recommendation.json").read_text())
    assert found["verdict"] == json.loads(json.dumps(evidence.verdict, default=str))
    assert (tmp_path / "evidence" / "init_snippet.py").read_text() == evidence.snippet
    assert f"({evidence.winner.name})" in evidence.snippet.splitlines()[0]
    assert "chosen by `initlab.trials(...)`" in evidence.snippet  # not the command's name


BAD = [
    (dict(trials=0), r"number of seeds in \[1, 100\]"),
    (dict(trials=2.5), r"number of seeds in \[1, 100\]"),
    (dict(trials=10**9), r"N² runs per candidate\), got 1000000000"),  # filled 24 GB
    (dict(on_epoch=3), r"on_epoch takes a function called as on_epoch\(config, epoch_record\)"),
    (dict(on_epoch=lambda: None), "2 positional arguments"),  # every run failed, then
    (dict(out=3), r"out takes a directory \(str or Path\), got int"),
    (dict(budget=-3), "budget takes seconds"),
    (dict(budget="soon"), "positive time"),
    (dict(candidates=5), "candidates takes 'auto' or names"),
    (dict(candidates=["he_normall"]), "he_normal"),
    (dict(optimizer="sgdd"), "sgd"),
    (dict(lr=-1.0), "lr"),
    (dict(epochs_of_fun=3), "setting"),
    (dict(device="tpu"), "tpu"),
    (dict(model=nn.Linear), "needs 'in_features'"),
]


BAD_IDS = [f"{i}-{','.join(k)}" for i, (k, _) in enumerate(BAD)]  # a lambda's repr varies


@pytest.mark.parametrize(("keywords", "message"), BAD, ids=BAD_IDS)
def test_a_mistake_is_one_line_before_anything_trains(keywords, message, trained, tmp_path):
    given = dict(model=tanh_net, data="digits", trials=2, budget=5, out=tmp_path / "o")
    with pytest.raises(InitlabError, match=message) as caught:
        initlab.trials(**{**given, **keywords})
    assert "\n" not in str(caught.value) and not trained and not (tmp_path / "o").exists()


def test_out_that_is_a_file_is_refused(tmp_path, trained):
    (tmp_path / "o").write_text("mine")
    with pytest.raises(InitlabError, match="a file is there"):
        initlab.trials(model=tanh_net, data="digits", budget=5, out=tmp_path / "o")
    assert (tmp_path / "o").read_text() == "mine" and not trained
