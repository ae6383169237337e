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


def test_a_sigma_w2_beyond_what_the_computation_resolves_is_refused(capsys):
    """1e20 read as q* = inf, chi1 = 0, 'ordered', where 1e12 is deeply chaotic."""
    from initlab.errors import InitlabError
    from initlab.theory import analyze

    assert analyze("tanh", 1e10)["phase"] == "chaotic"
    with pytest.raises(InitlabError, match="beyond what the mean-field computation resolves"):
        analyze("tanh", 1e20)
    assert main(["theory", "--sigma-w2", "1e20"]) == 2
    assert "give at most 1e+11" in capsys.readouterr().err


def test_a_depth_beyond_what_can_be_printed_is_one_line(capsys):
    """--depth 10**20 was a ValueError traceback; 10**8 ran for minutes printing nothing."""
    from initlab.cli import main

    for depth in ("99999999999999999999", "100000000", "0"):
        assert main(["theory", "--depth", depth]) == 2
        assert capsys.readouterr().err.startswith("error: --depth must be in [1, 10,000]")


def test_a_bias_variance_with_no_edge_to_scan_around_names_the_bias(capsys):
    """--sigma-b2 1e9 said 'sigma_w2 must be finite, got inf': the user gave no sigma_w2."""
    from initlab.theory import critical_sigma_w2

    assert critical_sigma_w2("tanh", 1e9) == float("inf")  # the premise: no edge up to 1e4
    assert main(["theory", "--sigma-b2", "1e9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: tanh at sigma_b² = 1e+09 has no edge of chaos")
    assert "--sigma-w2 to evaluate one point" in err and "sigma_w2 must be" not in err
    assert main(["theory", "--sigma-b2", "1e9", "--sigma-w2", "2", "--json"]) == 0
