"""The sweep's progress on stderr: a bar on a terminal, lines in a log (a bar there was drawn
once, at the end, squeezed to 80 columns: "1… model-epochs 0:00:… ETA 8:13:41")."""

import io
from types import SimpleNamespace

from rich.console import Console

import initlab.progress_display as progress_module
from initlab.config import RunConfig
from initlab.sweep.progress import RichProgress
from initlab.sweep.report import SweepPlan


def _outcome(config: RunConfig, status: str = "ok") -> SimpleNamespace:
    return SimpleNamespace(result=SimpleNamespace(config=config, status=status))


def test_a_log_gets_a_line_per_finished_run_at_most_every_ten_seconds(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    shown = RichProgress(Console(file=out, width=80))  # not a terminal
    configs = [RunConfig(init="he_normal", seed=s, epochs=2, hidden=(16,)) for s in range(3)]
    shown.start(SweepPlan(3, 0, configs, "local", "single", 1, 2))
    for at, config in zip((4.0, 8.0, 30.0), configs, strict=True):
        clock[0] = at
        shown.epoch(config, {})
        shown.finished(_outcome(config, "diverged" if config.seed == 2 else "ok"))
    shown.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "running 3 run(s) on 1 worker(s) × 2 thread(s) (local, single engine)"
    assert lines[1].startswith("run 1 of 3 finished (he_normal/relu/16/seed0); 2/6 model-epochs")
    assert lines[1].endswith("0:00:04 elapsed, ETA 0:00:08")  # 4 s for 2 of 6
    # run 2 came 4 s later: no line; the last run always gets one, with its status
    assert lines[2].startswith(
        "run 3 of 3 finished (he_normal/relu/16/seed2 diverged); 1 more since the last line; 6/6"
    )
    assert len(lines) == 3 and "\r" not in out.getvalue()


def test_on_a_terminal_a_long_label_is_cut_not_the_counts():
    out = io.StringIO()
    shown = RichProgress(Console(file=out, width=100, force_terminal=True, color_system=None))
    config = RunConfig(init="orthogonal(gain=1.4142135623730951)", epochs=1, hidden=(512, 256))
    shown.start(SweepPlan(1, 0, [config], "local", "single", 1, 2))
    shown.finished(_outcome(config))
    shown.stop()
    assert "1/1 model-epochs" in out.getvalue()
