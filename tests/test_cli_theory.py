import json

import pytest

from initlab.cli import main


def test_theory_json_has_the_documented_keys(capsys):
    assert (
        main(
            ["theory", "--activation", "tanh", "--sigma-b2", "0.05", "--sigma-w2", "1.5", "--json"]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    for key in ("q_star", "chi1", "xi_c", "critical_sigma_w2", "max_trainable_depth", "phase"):
        assert key in payload
    assert payload["critical_sigma_w2"] == pytest.approx(1.76, abs=0.01)
    assert payload["phase"] == "ordered" and payload["chi1"] < 1


def test_theory_json_writes_infinity_as_a_string(capsys):
    assert main(["theory", "--activation", "relu", "--sigma-w2", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["xi_c"] == "inf" and payload["phase"] == "critical"


def test_theory_scan_table_and_plot(tmp_path, capsys):
    path = tmp_path / "phase.png"
    assert main(["theory", "--activation", "tanh", "--depth", "4", "--plot", str(path)]) == 0
    out = capsys.readouterr().out
    assert "edge of chaos" in out and "ordered" in out and "chaotic" in out
    assert path.stat().st_size > 5_000


def test_theory_bad_input(capsys):
    assert main(["theory", "--activation", "tahn"]) == 2
    assert "did you mean 'tanh'" in capsys.readouterr().err
    assert main(["theory", "--sigma-w2", "-1"]) == 2
