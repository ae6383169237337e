"""The banner of a run in this process names the threads torch really uses: it printed the
planned count (cores // workers) whatever OMP_NUM_THREADS or torch.set_num_threads said."""

import torch

from initlab.cli import main


def test_the_banner_names_the_threads_torch_uses(capsys, monkeypatch):
    monkeypatch.setattr("initlab.sweep.executor.available_cores", lambda: 8)  # plans 8
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ["compare", "--data", "digits", "--inits", "he_normal", "--seeds", "1"]
        assert main([*args, "--epochs", "1", "--hidden", "8", "--track", "off"]) == 0
    finally:
        torch.set_num_threads(before)
    assert "on 1 worker(s) × 1 thread(s)" in capsys.readouterr().err
