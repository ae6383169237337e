"""Loading user data: one note when the training inputs are far from unit scale (0..255
pixels), none for scaled data, token ids or the built-in datasets; and the loader's one-line
errors that say the right thing (float32 overflow, string labels)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab.cli import main
from initlab.data import from_value, load
from initlab.data.scale import RMS_LIMIT, input_scale
from initlab.notes import InitlabNote

N, FEATURES, CLASSES = 240, 64, 4


def pixels() -> np.ndarray:
    """``N`` digits-sized 8x8 one-channel uint8 images, pixels 0..255."""
    return np.random.default_rng(0).integers(0, 256, size=(N, 1, 8, 8)).astype(np.uint8)


def split(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)``: 200 / 40 examples, labels 0..3."""
    y = np.arange(len(x)) % CLASSES
    return x[:200], y[:200], x[200:], y[200:]


def images() -> tuple[np.ndarray, ...]:
    """:func:`pixels`, split."""
    return split(pixels())


def scale_notes(value, **kwargs) -> list[str]:
    """The scale notes that :func:`from_value` gives for ``value``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_value(value, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, InitlabNote)]


def test_uint8_pixels_are_noted_once_with_what_was_measured():
    notes = scale_notes(images())
    assert len(notes) == 1
    x = torch.from_numpy(images()[0]).float()
    mean, std = f"{float(x.mean()):.3g}", f"{float(x.std(correction=0)):.3g}"
    assert notes[0].startswith(f"x_train ranges 0..255 (mean {mean}, std {std}): initlab trains")
    assert "divide by 255" in notes[0] and "unit-variance" in notes[0]


def test_large_float_inputs_are_noted_an_offset_too():
    """The rule is the root-mean-square: features around 1000 are as unscaled as a spread."""
    rng = np.random.default_rng(1)
    x = (1000 + rng.standard_normal((N, 5))).astype(np.float32)
    (note,) = scale_notes(split(x))
    assert "(mean 1000, std 0.986)" in note and "standardize it" in note
    assert "divide by 255" not in note


@pytest.mark.parametrize(
    "value",
    [
        (np.random.default_rng(2).standard_normal((N, 1, 8, 8)).astype(np.float32),),  # standard
        (pixels() / np.float32(255),),  # pixels in [0, 1]
        (np.random.default_rng(3).integers(0, 50_000, (N, 8)),),  # int64 token ids
    ],
    ids=["standardized", "unit-pixels", "token-ids"],
)
def test_scaled_inputs_and_token_ids_are_not_noted(value):
    assert scale_notes(split(value[0])) == []


def test_token_sequences_are_not_noted():
    ids = np.random.default_rng(4).integers(0, 5000, (N, 12))
    data = (ids[:200], ids[:200], ids[200:], ids[200:])
    assert scale_notes(data, task="sequence") == []


def test_the_rule_is_root_mean_square_above_the_limit():
    x = torch.full((10, 3), RMS_LIMIT)
    assert input_scale(x)[4] == pytest.approx(RMS_LIMIT)
    assert scale_notes((x.numpy(), np.arange(10) % 2, x.numpy(), np.arange(10) % 2)) == []


def test_tiny_inputs_and_unscaled_regression_targets_are_noted():
    """sklearn's diabetes: features of root-mean-square 0.048 (each column scaled to norm 1)
    and targets 25..346: every init ended at R² ≈ -2.6, 'stuck', with no word on scale."""
    rng = np.random.default_rng(5)
    x = (0.05 * rng.standard_normal((N, 10))).astype(np.float32)
    y = (150 + 75 * rng.standard_normal(N)).astype(np.float32)
    notes = scale_notes((x[:200], y[:200], x[200:], y[200:]), task="regression")
    assert len(notes) == 2
    assert notes[0].startswith("x_train ranges") and "standardize it" in notes[0]
    assert notes[1].startswith("the regression targets range") and "standardize them" in notes[1]
    assert "R² is unchanged" in notes[1]
    unit = rng.standard_normal(N).astype(np.float32)  # standardized targets: no note
    assert scale_notes((x[:200] * 20, unit[:200], x[200:] * 20, unit[200:])) == []


def test_the_rule_is_root_mean_square_below_the_inverse_limit():
    x = torch.full((10, 3), 1.01 / RMS_LIMIT)  # off the boundary: float32 sums may round
    assert scale_notes((x.numpy(), np.arange(10) % 2, x.numpy(), np.arange(10) % 2)) == []
    x = torch.full((10, 3), 0.99 / RMS_LIMIT)
    assert len(scale_notes((x.numpy(), np.arange(10) % 2, x.numpy(), np.arange(10) % 2))) == 1


def test_train_and_test_at_different_scales_are_noted():
    """uint8 pixels for training and standardized floats for testing trained with only the
    pixels' note: the test split was scored on inputs unlike any seen in training."""
    x = pixels()
    standardized = ((x - x.mean()) / x.std()).astype(np.float32)
    y = np.arange(N) % CLASSES
    notes = scale_notes((x[:200], y[:200], standardized[200:], y[200:]))
    assert len(notes) == 2 and notes[1].startswith("x_train and x_test differ in scale")
    same = (standardized[:200], y[:200], standardized[200:], y[200:])
    assert scale_notes(same) == []


def test_built_in_datasets_are_not_noted():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load("digits")
    assert not [w for w in caught if "ranges" in str(w.message)]


def test_compare_notes_the_scale_once_not_per_run(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y, x_test, y_test = images()
    np.savez("u8.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    args = ["compare", "--data", "u8.npz", "--inits", "default,he_normal", "--seeds", "2"]
    args += ["--epochs", "1", "--hidden", "8", "--limit-train", "64", "--out", "out"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("note: x_train ranges 0..255") == 1


def one_line_exit_2(tmp_path: Path, capsys, **arrays) -> str:
    """``initlab compare`` on an npz of ``arrays`` exits 2 with one ``error:`` line."""
    np.savez(tmp_path / "bad.npz", **arrays)
    assert main(["compare", "--data", str(tmp_path / "bad.npz"), "--out", "out"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_float32_overflow_is_named_as_such(tmp_path: Path, capsys, monkeypatch):
    """1e300 in float64 inputs was reported as '1 NaN/inf values ... remove or impute them'."""
    monkeypatch.chdir(tmp_path)
    x, y, x_test, y_test = (a.astype(np.float64) / 255 if a.ndim > 1 else a for a in images())
    x[3, 0, 2, 2] = 1e300
    err = one_line_exit_2(tmp_path, capsys, x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    assert "x_train has 1 value beyond float32's range" in err and "1e+300" in err
    assert "NaN" not in err


def test_string_labels_say_how_to_map_them(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y, x_test, y_test = images()
    names = np.array([f"class {k}" for k in y])
    err = one_line_exit_2(tmp_path, capsys, x_train=x, y_train=names, x_test=x_test, y_test=y_test)
    assert "y_train is a ndarray that is not a numeric array" in err
    assert "map the labels to integers 0..K-1" in err and "numpy.unique" in err


@pytest.mark.parametrize(
    ("mean", "std", "noted"),
    [
        (5.0, 0.08, True),  # a log-price: rms 5, but a signal 60x below its offset (all stuck)
        (0.0, 0.03, True),  # a tiny signal around 0: rms 0.03
        (0.0, 30.0, True),  # rms 30
        (3.0, 1.0, False),  # offset 3 std: near enough
        (0.0, 1.0, False),  # standardized
    ],
)
def test_regression_targets_far_from_unit_scale_are_noted_by_offset_spread_or_size(
    mean, std, noted
):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((N, 10)).astype(np.float32)
    y = (mean + std * rng.standard_normal(N)).astype(np.float32)
    notes = scale_notes((x[:200], y[:200], x[200:], y[200:]), task="regression")
    assert [n.startswith("the regression targets range") for n in notes] == (
        [True] if noted else []
    )
