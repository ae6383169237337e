"""``initlab scaling`` end to end on small widths, and every bad input as one line, exit 2,
before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from argv import merged
from initlab.cli import main

FACTORIES = """
from torch import nn


def build(width=16, depth=2, classes=10):
    layers = [nn.Flatten(), nn.Linear(64, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, classes))


def no_width(size=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, size), nn.Linear(size, 10))


def width_only(width=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.Linear(width, 10))


def ignores_width(width=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def own_names(n_embd=16, n_layer=2):
    return build(width=n_embd, depth=n_layer)


def relu_net(width=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))


def nan_model(width=16):
    model = width_only(width)
    model[1].bias.data.fill_(float("nan"))
    return model
"""
FAST = ["--steps", "2", "--seeds", "2", "--batch-size", "32"]


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "factories.py").write_text(FACTORIES)
    return tmp_path


def test_writes_the_tidy_table_verdicts_and_figure(factories, capsys):
    out = factories / "sp"
    args = ["scaling", "--model", "factories.py:build", "--widths", "32,64,128", "--param", "sp"]
    assert main([*args, *FAST, "--optimizer", "adam", "--lr", "0.01", "--out", str(out)]) == 0
    coords = pd.read_csv(out / "coords.csv")
    assert list(coords.columns) == [
        "param",
        "width",
        "depth",
        "seed",
        "step",
        "module",
        "metric",
        "value",
        "optimizer",
        "lr",
    ]
    assert set(coords["optimizer"]) == {"adam"} and set(coords["lr"]) == {0.01}
    # SP: no zero-initialized readout, so no "aligned_out"
    assert set(coords["metric"]) == {"l1", "std", "update", "aligned"}
    assert set(coords["width"]) == {32, 64, 128} and set(coords["step"]) == {0, 1, 2}
    assert "(logits)" in set(coords["module"]) and (coords["depth"] == 2).all()
    document = json.loads((out / "verdicts.json").read_text())
    verdict = document["verdicts"][0]
    assert {"module", "step", "metric", "slope", "ci_low", "ci_high", "flagged"} <= set(verdict)
    assert document["kinds"]["1.weight"] == "input" and document["kinds"]["3.weight"] == "hidden"
    assert (out / "coords.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "module(s) move with width" in printed and "grows as width^" in printed


def test_depths_add_depth_fits(factories):
    out = factories / "depth"
    args = ["scaling", "--model", "factories.py:build", "--widths", "32,64", "--depths", "1,2,4"]
    assert main([*args, *FAST, "--out", str(out)]) == 0
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    assert {v["axis"] for v in verdicts} <= {"width", "depth", "log_depth"}
    depth_fits = [v for v in verdicts if v["axis"] != "width"]
    laws = {v["law"] for v in depth_fits}  # undetermined: a series both laws fit equally
    assert (
        depth_fits and laws <= {"exponential", "power", "undetermined"} and laws - {"undetermined"}
    )
    series = [(v["module"], v["step"], v["metric"], v["at"]) for v in depth_fits]
    assert len(series) == len(set(series))  # one law per series, not both
    assert {v["at"] for v in verdicts if v["axis"] == "width"} == {1, 2, 4}


def test_a_factory_with_its_own_names_for_width_and_depth(factories):
    """``--width-arg n_embd --depth-arg n_layer``: the same measurement as the factory that
    names them ``width`` and ``depth`` (same seeds: the same numbers up to rounding)."""
    tables = {}
    for name, extra in [
        ("build", []),
        ("own_names", ["--width-arg", "n_embd", "--depth-arg", "n_layer"]),
    ]:
        args = ["scaling", "--model", f"factories.py:{name}", "--widths", "32,64"]
        assert main([*args, "--depths", "1,2", *FAST, *extra, "--out", name]) == 0
        tables[name] = pd.read_csv(factories / name / "coords.csv")
    mine, theirs = tables["own_names"], tables["build"]
    assert mine.drop(columns="value").equals(theirs.drop(columns="value"))
    assert (mine["value"] - theirs["value"]).abs().max() <= 1e-4 * theirs["value"].abs().max()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--widths", "128,64"], "strictly increasing"),
        (["--widths", "64"], "at least two sizes"),
        (["--widths", "64,sixty"], "integers like"),
        (["--model", "factories.py:no_width"], "no 'width' keyword (it takes "),
        (["--model", "factories.py:ignores_width"], "no parameter's shape changes"),
        (["--model", "factories.py:width_only", "--depths", "2,4"], "no 'depth' keyword"),
        (["--steps", "0"], "--steps must be in [1, 10,000]"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--model", "factories.py:build", "--depths", "4,2"], "--depths must be strictly"),
        (["--param", "mu"], "unknown parametrization 'mu'"),
        (["--model", "resnet"], "scaling needs a factory with a 'width' keyword"),
        (["--model", "gpt", "--model-arg", "context=8"], "the model cannot run on the data"),
        (["--model-arg", "classes=5"], "width 64, depth 2: the model outputs 5 classes but"),
        (["--model", "factories.py:own_names", "--width-arg", "d"], "own_names() has no 'd'"),
        (["--width-arg", "depth"], "--width-arg depth: build() also has a 'width' keyword"),
        (
            ["--seeds", "1"],
            "--widths needs at least 3 widths with 1 seed (got 2), or use --seeds 2",
        ),
        (["--widths", "32,64,128", "--depths", "1,2", "--seeds", "1"], "at least 3 depths"),
        (
            ["--model-arg", "width=8"],
            "--model-arg width=8: the check sets 'width' itself from --widths; remove it",
        ),
        (["--depths", "1,2", "--model-arg", "depth=3"], "sets 'depth' itself from --depths"),
        (
            ["--model", "factories.py:width_only", "--depths", "2,4"],
            "name it with --depth-arg, else give the factory a 'depth' (def build(depth=2, ...))",
        ),
        (["--widths", "32,64.5"], "('64.5' is not an integer)"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(factories, capsys, args, message):
    out = factories / "never"
    base = ["scaling", "--model", "factories.py:build", "--widths", "32,64"]
    assert main(merged([*base, *FAST], args, ["--out", str(out)])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not out.exists()


def test_gpt_runs_on_its_token_data_and_says_what_muP_changed(tmp_path, capsys):
    out = tmp_path / "gpt"
    args = ["scaling", "--model", "gpt", "--widths", "16,32", "--param", "mup"]
    args += ["--model-arg", "depth=1", "--model-arg", "heads=2"]
    assert (
        main([*args, "--steps", "1", "--seeds", "2", "--batch-size", "4", "--out", str(out)]) == 0
    )
    document = json.loads((out / "verdicts.json").read_text())
    assert document["kinds"]["tok_emb.weight"] == "input"
    assert document["kinds"]["head.weight"] == "output"
    assert any("blocks.0.attn.attn_scale" in note for note in document["notes"])
    assert "attn_scale" in capsys.readouterr().out


def test_a_diverged_run_lists_the_fits_it_could_not_judge_and_claims_no_pass(factories, capsys):
    """SGD at lr 1e30: every value after step 0 is NaN or inf, so those fits cannot be made;
    the step-0 fits can. No green check: the output and verdicts.json list what is missing."""
    out = factories / "diverged"
    args = ["scaling", "--model", "factories.py:relu_net", "--widths", "16,32,64"]
    args += ["--seeds", "1", "--steps", "2", "--batch-size", "32", "--optimizer", "sgd"]
    args += ["--lr", "1e30"]
    assert main([*args, "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps lines
    assert "✔" not in printed and "nothing moves with width" not in printed
    assert "fit(s) could not be judged" in printed and "values not finite" in printed
    document = json.loads((out / "verdicts.json").read_text())
    assert {m["step"] for m in document["not_judged"]} == {1, 2}
    assert document["verdicts"]  # step 0 was judged


def test_a_run_with_nothing_to_fit_says_nothing_was_judged(factories, capsys):
    out = factories / "nan"
    args = ["scaling", "--model", "factories.py:nan_model", "--widths", "16,32,64"]
    assert main([*args, *FAST, "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps lines
    assert "✔" not in printed and "nothing judged" in printed
    assert json.loads((out / "verdicts.json").read_text())["verdicts"] == []


def test_task_is_an_option_where_the_targets_cannot_tell_it(factories, capsys):
    """Whole-number float targets [N, 2] (counts) are no task initlab can infer: scaling and
    plan asked for --task, which neither had."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 64)).astype(np.float32)
    y = rng.integers(0, 5, (300, 2)).astype(np.float32)
    np.savez("counts.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    base = ["--model", "factories.py:build", "--model-arg", "classes=2", "--data", "counts.npz"]
    scaling = ["scaling", *base, "--widths", "32,64", *FAST, "--out", "sc"]
    assert main(scaling) == 2 and "pass --task" in capsys.readouterr().err
    assert main([*scaling, "--task", "regression"]) == 0
    assert main(["plan", *base]) == 2 and "pass --task" in capsys.readouterr().err
    assert main(["plan", *base, "--task", "regression"]) == 0


def test_a_factory_checked_without_data_is_told_the_data_it_got(factories, capsys):
    """Without --data a user factory ran on digits and failed on its shapes, silently."""
    (factories / "wide.py").write_text(
        "from torch import nn\n\n\ndef build(width=16):\n"
        "    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 1))\n"
    )
    assert main(["scaling", "--model", "wide.py:build", "--widths", "16,32", *FAST]) == 2
    err = capsys.readouterr().err
    assert "no data given: the check ran on digits" in err and len(err.splitlines()) == 1


def test_the_no_data_hint_is_only_for_errors_about_the_data(factories, capsys):
    """A model that returns a tuple fails whatever the data: no hint about digits there."""
    (factories / "pair.py").write_text(
        "from torch import nn\n\n\nclass Pair(nn.Module):\n"
        "    def __init__(self, width):\n        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(),\n"
        "                                  nn.Linear(width, 10))\n\n"
        "    def forward(self, x):\n        return self.body(x), x\n\n\n"
        "def build(width=16):\n    return Pair(width)\n"
    )
    assert main(["scaling", "--model", "pair.py:build", "--widths", "16,32", *FAST]) == 2
    err = capsys.readouterr().err
    assert "returned a tuple, not a tensor" in err and "no data given" not in err
    assert "a factory that wraps it: see docs/your-model.md" in err  # as compare says it


def test_a_factory_that_raises_is_named_with_its_arguments(factories, capsys):
    (factories / "broken.py").write_text("def build(width=16):\n    raise RuntimeError('boom')\n")
    assert main(["scaling", "--model", "broken.py:build", "--widths", "16,32", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("raised RuntimeError: boom (called with width=32)")


def test_runs_that_cannot_bound_the_slopes_say_inconclusive_not_nothing_moves(factories, capsys):
    """Two widths and two seeds: update-slope CIs like 0.2–1.9, not flagged after Holm. That
    is no evidence of flatness: "inconclusive", in the output and in verdicts.json. The
    progress goes to stderr as lines (no carriage returns off a terminal)."""
    out = factories / "unsure"
    args = ["scaling", "--model", "factories.py:build", "--widths", "32,64", "--param", "sp"]
    assert main([*args, *FAST, "--optimizer", "adam", "--lr", "0.01", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = " ".join(captured.out.split())  # rich wraps lines
    assert "✔" not in printed and "nothing moves with width" not in printed
    assert "? inconclusive: " in printed and "neither flagged (Holm-adjusted p < 0.05" in printed
    document = json.loads((out / "verdicts.json").read_text())
    assert document["outcome"] == "inconclusive" and document["flat_bound"] == 0.5
    assert document["inconclusive"]
    for fit in document["inconclusive"]:
        assert fit["ci_low"] <= -0.5 or fit["ci_high"] >= 0.5
    assert (
        "measuring 4 model(s)" in captured.err
        and "measured 4 of 4; " in captured.err
        and "; 4/4 models" in captured.err
    )
    assert "\r" not in captured.err


def test_a_bounded_check_says_nothing_moves(factories, capsys):
    out = factories / "flat"
    args = ["scaling", "--model", "factories.py:build", "--widths", "32,64,128", "--param", "mup"]
    assert (
        main([*args, "--steps", "1", "--seeds", "3", "--batch-size", "32", "--out", str(out)]) == 0
    )
    printed = " ".join(capsys.readouterr().out.split())
    assert "✔ nothing moves with width" in printed and "inconclusive" not in printed
    document = json.loads((out / "verdicts.json").read_text())
    assert document["outcome"] == "flat" and document["inconclusive"] == []
    judged = [v for v in document["verdicts"] if v["metric"] in ("l1", "std", "update")]
    assert judged and all(v["ci_low"] > -0.5 and v["ci_high"] < 0.5 for v in judged)


def test_values_exploding_by_orders_of_magnitude_are_warned_about(factories, capsys):
    """SGD at lr 30: the logits' std goes from ~10 to ~1e4–1e8 between widths 32 and 64."""
    out = factories / "blown"
    args = ["scaling", "--model", "factories.py:relu_net", "--widths", "32,64", "--steps", "3"]
    args += ["--seeds", "2", "--batch-size", "32", "--optimizer", "sgd", "--lr", "30"]
    assert main([*args, "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "✔" not in printed and "! blow-up: " in printed and "grow ≥100-fold" in printed
    document = json.loads((out / "verdicts.json").read_text())
    widths = [b for b in document["blowups"] if b["across"] == "width"]
    assert widths and all(b["last"] >= 100 * b["first"] for b in widths)


def test_progress_is_a_bar_on_a_terminal_and_a_few_lines_elsewhere(monkeypatch):
    """Off a terminal: a start line, then a line at most every 10 s and the last (8 models
    in 40 s: 5 lines, not 8), no carriage return; on a terminal a bar that is gone when the
    check is done. The sweep's progress is the same display."""
    import io

    from rich.console import Console

    import initlab.progress_display as display
    from initlab.cli.scaling_cmd import CheckProgress

    clock = [0.0]
    monkeypatch.setattr(display.time, "perf_counter", lambda: clock[0])
    log = io.StringIO()
    progress = CheckProgress(Console(file=log, force_terminal=False, width=100))
    for done in range(9):
        clock[0] = 5.0 * done
        progress(done, 8)
    progress.stop()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("measuring 8 model(s)") and "\r" not in log.getvalue()
    assert [line.split(";")[0] for line in lines[1:]] == [
        f"measured {k} of 8" for k in (1, 3, 5, 7, 8)
    ]
    assert lines[-1].endswith("8/8 models, 0:00:40 elapsed, ETA 0:00:00")
    tty = io.StringIO()
    progress = CheckProgress(Console(file=tty, force_terminal=True, width=100))
    progress(0, 3)
    assert progress.shown.bar is not None
    for done in (1, 2, 3):
        progress(done, 3)
    assert progress.shown.bar.tasks[0].completed == 3
    progress.stop()
    assert progress.shown.bar is None


def test_widths_too_big_for_the_memory_are_refused_before_measuring(tmp_path, capsys, monkeypatch):
    """A width that fits when built but not when trained ran out of memory after the
    smaller widths were measured (a traceback; nothing kept)."""
    from initlab.sweep import footprint

    monkeypatch.setattr(footprint, "machine_memory", lambda device="auto": (10**6, "RAM"))
    args = ["scaling", "--model", "mlp", "--widths", "16,512", *FAST, "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: width 512") and "more than this machine's 1 MB of RAM" in err
    assert err.endswith("give smaller --widths") and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_memory_refusal_comes_before_any_model_is_built_at_that_width(monkeypatch):
    """The guard ran after the widest model had been built on the CPU (twice): on a real
    small machine the out-of-memory killer, or the allocator's C++ error, came first."""
    import torch

    from initlab.errors import InitlabError
    from initlab.scaling.check import coord_check
    from initlab.sweep import footprint

    built = []

    def factory(width: int = 16) -> torch.nn.Module:
        built.append((width, torch.empty(0).device.type))  # meta while shapes are read
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, width), torch.nn.ReLU(),
            torch.nn.Linear(width, 10),
        )  # fmt: skip

    monkeypatch.setattr(footprint, "machine_memory", lambda device="auto": (10**6, "RAM"))
    with pytest.raises(InitlabError, match=r"width 4096: .* more than this machine's 1 MB"):
        coord_check(factory, widths=[16, 4096], data="digits", steps=1, seeds=2)
    assert (4096, "cpu") not in built and (4096, "meta") in built
