"""The ETA of the progress display (bar and log lines): the pace since the start applied to
what is left, so a stack of models finishing an epoch together (6 of 60 model-epochs at
once) does not show ``ETA 0:00:06`` for minutes; the heartbeat line in a log; run labels
that tell apart runs differing only in a setting the label leaves out (the residual rule)."""

import io
import threading
import time
from types import SimpleNamespace

import pytest
import typer
from rich.console import Console

import initlab.progress_display as display
from initlab.config import RunConfig
from initlab.progress_display import CountedProgress
from initlab.sweep import ui
from initlab.sweep.progress import RichProgress, run_label, varying_settings
from initlab.sweep.report import SweepInterrupted, SweepPlan, SweepReport
from initlab.sweep.spec import Spec


@pytest.fixture
def clock(monkeypatch):
    """A fake ``time.perf_counter``: set ``clock[0]``."""
    now = [0.0]
    monkeypatch.setattr(display.time, "perf_counter", lambda: now[0])
    return now


def _bar_text(shown: CountedProgress) -> str:
    """The bar's line as it is drawn now."""
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(
        shown.bar.make_tasks_table(shown.bar.tasks)
    )
    return out.getvalue()


def _log() -> tuple[io.StringIO, Console]:
    out = io.StringIO()
    return out, Console(file=out, force_terminal=False, width=100)


def test_the_bar_eta_is_the_pace_since_the_start_and_grows_while_nothing_completes(clock):
    """6 of 60 units at once at 53 s: 53 × 54 / 6 = 477 s left, not the 6 s an instantaneous
    speed gives; at 95 s with nothing more done it has grown (95 × 54 / 6 = 855 s)."""
    shown = CountedProgress(
        Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None),
        "model-epochs",
    )
    shown.start(60)
    try:
        clock[0] = 10.0
        assert "ETA -:--:--" in _bar_text(shown)  # nothing done yet: unknown
        clock[0] = 53.0
        shown.advance(6, "default/lm/seed0")
        text = _bar_text(shown)
        assert "6/60 model-epochs" in text and "0:00:53" in text and "ETA 0:07:57" in text
        clock[0] = 95.0
        assert "ETA 0:14:15" in _bar_text(shown)  # recomputed at each refresh
        clock[0] = 530.0
        shown.advance(54)
        assert "ETA 0:00:00" in _bar_text(shown)
    finally:
        shown.stop()


def test_eta_seconds_is_unknown_before_the_first_unit():
    assert display.eta_seconds(53.0, 0, 60) is None
    assert display.eta_text(53.0, 0, 60) == "-:--:--"
    assert display.eta_seconds(53.0, 6, 60) == pytest.approx(477.0)
    assert display.eta_seconds(95.0, 6, 60) > display.eta_seconds(53.0, 6, 60)
    assert display.eta_seconds(530.0, 60, 60) == 0.0


def test_log_lines_give_the_same_eta_and_a_heartbeat_when_no_line_came(clock):
    """In a log: the line of a finished piece of work has the ETA of the pace since the
    start; with no line for HEARTBEAT s while work runs, a line says how far it is (ETA
    grown); none after the work is stopped; never a carriage return."""
    out, console = _log()
    shown = CountedProgress(console, "model-epochs")
    shown.start(60)
    try:
        clock[0] = 29.0
        assert not shown.heartbeat()
        clock[0] = 30.0
        assert shown.heartbeat()  # the first epoch of a stack is slow: still a sign of life
        clock[0] = 53.0
        shown.advance(6, finished="epoch 1 of a 6-model stack")
        clock[0] = 82.0
        assert not shown.heartbeat()  # a line 29 s ago
        clock[0] = 95.0
        assert shown.heartbeat()
    finally:
        shown.stop()
    clock[0] = 500.0
    assert not shown.heartbeat()  # stopped: nothing more
    lines = out.getvalue().splitlines()
    assert lines == [
        "still running; 0/60 model-epochs, 0:00:30 elapsed, ETA -:--:--",
        "epoch 1 of a 6-model stack; 6/60 model-epochs, 0:00:53 elapsed, ETA 0:07:57",
        "still running; 6/60 model-epochs, 0:01:35 elapsed, ETA 0:14:15",
    ]
    assert "\r" not in out.getvalue()


def test_a_log_line_after_skipped_ones_counts_them(clock):
    """Lines are rate-limited (one every LOG_EVERY s): 'run 1 of 8' then 'run 5 of 8' read
    as if runs 2-4 were lost."""
    out, console = _log()
    shown = CountedProgress(console, "models")
    shown.start(8)
    try:
        for run in range(1, 6):
            clock[0] = run * 0.1 + (display.LOG_EVERY if run == 5 else 0.0)
            shown.advance(1, finished=f"run {run} of 8 finished")
    finally:
        shown.stop()
    lines = [line.split(";")[:2] for line in out.getvalue().splitlines()]
    assert [line[0] for line in lines] == ["run 1 of 8 finished", "run 5 of 8 finished"]
    assert lines[1][1] == " 3 more since the last line" and "more since" not in lines[0][1]


def test_runs_that_finish_after_the_last_unit_are_rate_limited_too(clock):
    """A stack's epochs all end before its runs are stored: every one of runs 13-16 printed
    its own line at the same second (the 'last' rule held for each once the units were
    done); now only the run that is last says so."""
    out, console = _log()
    shown = CountedProgress(console, "model-epochs")
    shown.start(4)
    try:
        shown.advance(4)  # the stack's epochs: every unit done, no run stored yet
        for run in range(1, 5):
            clock[0] = run * 0.1
            shown.advance(0, finished=f"run {run} of 4 finished", last=run == 4)
    finally:
        shown.stop()
    lines = [line.split(";")[0] for line in out.getvalue().splitlines()]
    assert lines == ["run 1 of 4 finished", "run 4 of 4 finished"]


def _wait_for(condition, seconds: float = 5.0) -> bool:
    """Poll ``condition`` (no timing asserted: a generous bound only, so a slow machine
    does not hang the test)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _beating(monkeypatch, total: int) -> tuple[io.StringIO, CountedProgress, threading.Thread]:
    """A log progress of ``total`` units started with a heartbeat every 0.02 s."""
    monkeypatch.setattr(display, "HEARTBEAT", 0.02)
    out, console = _log()
    shown = CountedProgress(console, "models")
    shown.start(total)
    return out, shown, shown._beat


def test_the_heartbeat_thread_prints_while_work_runs_and_stops_with_stop(monkeypatch):
    out, shown, beat = _beating(monkeypatch, 10)
    assert beat is not None and beat.daemon  # never keeps the process alive
    try:
        assert _wait_for(lambda: "still running; 0/10 models" in out.getvalue())
    finally:
        shown.stop()
    assert not beat.is_alive()
    printed = out.getvalue()
    time.sleep(0.1)  # five heartbeats' worth: none comes after stop
    assert out.getvalue() == printed and "\r" not in printed


def test_the_heartbeat_thread_ends_with_the_last_unit(monkeypatch):
    out, shown, beat = _beating(monkeypatch, 2)
    shown.advance(2, finished="measured 2 of 2")
    beat.join(timeout=5.0)
    assert not beat.is_alive()
    printed = out.getvalue()
    time.sleep(0.1)
    assert out.getvalue() == printed
    shown.stop()
    assert out.getvalue().splitlines()[-1].startswith("measured 2 of 2; 2/2 models")


def test_no_heartbeat_thread_on_a_terminal_or_without_work(monkeypatch):
    monkeypatch.setattr(display, "HEARTBEAT", 0.02)
    tty = CountedProgress(Console(file=io.StringIO(), force_terminal=True), "models")
    tty.start(3)
    assert tty._beat is None
    tty.stop()
    _, console = _log()
    empty = CountedProgress(console, "models")
    empty.start(0)
    assert empty._beat is None
    empty.stop()


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError, "interrupted"])
def test_the_sweep_stops_the_heartbeat_when_it_fails_or_is_interrupted(monkeypatch, failure):
    """``initlab sweep``/``compare`` in a pipe: an exception, Ctrl-C or an interrupted sweep
    leave no heartbeat thread behind."""
    monkeypatch.setattr(display, "HEARTBEAT", 0.02)
    threads: list[threading.Thread] = []
    configs = [RunConfig(epochs=2, hidden=(8,), seed=s) for s in range(2)]

    def run_sweep(configs, store, study, *, progress, **options):
        progress.start(SweepPlan(2, 0, configs, "local", "single", 1, 1))
        threads.append(progress.shown._beat)
        if failure == "interrupted":
            raise SweepInterrupted(SweepReport(study.study_id, 2, 0))
        raise failure("boom")

    monkeypatch.setattr(ui, "run_sweep", run_sweep)
    out, err = _log()
    with pytest.raises((KeyboardInterrupt, RuntimeError, typer.Exit)):
        ui.run_and_report(Spec("t"), configs, None, title="t", console=err, err=err)
    assert threads and threads[0] is not None and not threads[0].is_alive()
    printed = out.getvalue()
    time.sleep(0.1)
    assert out.getvalue() == printed and "still running" not in printed


def _outcome(config: RunConfig, status: str = "ok") -> SimpleNamespace:
    return SimpleNamespace(result=SimpleNamespace(config=config, status=status))


def test_labels_name_the_settings_that_differ_among_the_runs(clock):
    """``--residual-init none,fixup``: runs 1 and 2 were both ``he_normal/relu/8/seed0``."""
    configs = [
        RunConfig(hidden=(8,), epochs=1, residual=True, residual_init=rule, lr=0.1)
        for rule in ("none", "fixup")
    ]
    assert varying_settings(configs) == ("residual_init",)
    assert [run_label(c, ("residual_init",)) for c in configs] == [
        "he_normal/relu/8/res=none/seed0",
        "he_normal/relu/8/res=fixup/seed0",
    ]
    assert varying_settings(configs[:1]) == () and run_label(configs[0]) == configs[0].label
    clipped = [RunConfig(hidden=(8,), clip_norm=c) for c in (None, 1.0)]  # a spec's "none"
    assert [run_label(c, ("clip_norm",)) for c in clipped] == [
        "he_normal/relu/8/clip=none/seed0",
        "he_normal/relu/8/clip=1/seed0",
    ]
    out, console = _log()
    shown = RichProgress(console)
    shown.start(SweepPlan(2, 0, configs, "local", "single", 1, 1))
    for at, config in zip((20.0, 40.0), configs, strict=True):
        clock[0] = at
        shown.finished(_outcome(config))
    shown.stop()
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("run 1 of 2 finished (he_normal/relu/8/res=none/seed0); 1/2")
    assert lines[2].startswith("run 2 of 2 finished (he_normal/relu/8/res=fixup/seed0); 2/2")


def test_labels_show_several_differing_settings_briefly():
    configs = [
        RunConfig(hidden=(8,), lr=0.1, output_init=None, weight_decay=0.0),
        RunConfig(hidden=(8,), lr=0.01, output_init="glorot_uniform", weight_decay=1e-4),
    ]
    settings = varying_settings(configs)
    assert settings == ("output_init", "lr", "weight_decay")
    assert run_label(configs[0], settings) == "he_normal/relu/8/out=same/lr=0.1/wd=0/seed0"
    assert run_label(configs[1], settings).endswith("/out=glorot_uniform/lr=0.01/wd=0.0001/seed0")


def test_an_interrupted_sweep_says_what_its_unfinished_runs_had_trained(monkeypatch):
    """Ctrl-C during the first epochs of a 6-model stack lost 70 s of training, and the
    lines said only '0 of 6 runs done'."""
    configs = [RunConfig(epochs=5, hidden=(8,), seed=s) for s in range(3)]

    def run_sweep(configs, store, study, *, progress, **options):
        progress.start(SweepPlan(3, 0, configs, "local", "single", 1, 1))
        for config in configs[:2]:  # two runs of a stack, two epochs each; the third waits
            progress.epoch(config, {})
            progress.epoch(config, {})
        raise SweepInterrupted(SweepReport(study.study_id, 3, 0))

    monkeypatch.setattr(ui, "run_sweep", run_sweep)
    out, err = _log()
    with pytest.raises(typer.Exit):
        ui.run_and_report(Spec("t"), configs, None, title="t", console=err, err=err)
    said = " ".join(out.getvalue().split())
    assert "2 unfinished run(s) had trained 4 epoch(s) between them; not kept" in said
    assert "checkpoint" not in said  # a store in memory has none
