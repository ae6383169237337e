"""A Ray address where no cluster listens is one line before the sweep starts: ray.init
retried it for minutes while the progress line said the sweep was running."""

from __future__ import annotations

import socket

import pytest

from initlab.cli import main
from initlab.errors import InitlabError
from initlab.sweep.ray_address import check_reachable, host_port

HERE = __file__


def test_the_host_and_port_of_the_address_forms_ray_takes():
    assert host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert host_port("ray://head.local:10001") == ("head.local", 10001)
    assert host_port("[::1]:6379") == ("::1", 6379)
    assert host_port("auto") is None and host_port("local") is None and host_port("x:y") is None


def _closed_port() -> int:
    """A port nothing listens on (bound, then closed: refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_listens_on_is_refused_and_one_that_listens_passes(monkeypatch):
    port = _closed_port()
    with pytest.raises(InitlabError, match=rf"127.0.0.1:{port}'?: no Ray cluster answers"):
        check_reachable(f"127.0.0.1:{port}")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(InitlabError, match=r"^RAY_ADDRESS=.*unset RAY_ADDRESS"):
        check_reachable(None)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")  # something answers: Ray's turn
    check_reachable("auto")  # Ray finds it, or says so


def test_a_sweep_on_an_unreachable_cluster_is_one_line_and_exit_2_before_the_store(
    tmp_path, capsys
):
    pytest.importorskip("ray")
    spec = tmp_path / "s.toml"
    spec.write_text('[fixed]\ndataset = "digits"\nepochs = 1\n[sweep]\ninit = ["he_normal"]\n')
    out = tmp_path / "out"
    argv = ["sweep", str(spec), "--out", str(out), "--backend", "ray"]
    assert main([*argv, "--address", f"127.0.0.1:{_closed_port()}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Ray cluster answers there" in err
    assert not out.exists()
