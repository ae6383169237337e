"""Ctrl-C (and a raising progress callback) where runs were already trained: a stack's
outcomes being recorded, the results being read at the end of a comparison without a
store. Nothing trained may be lost."""

import os
import signal
import threading

import pytest

import initlab
from initlab.interrupts import interrupts_deferred
from initlab.notes import InitlabNote
from initlab.store import Store
from initlab.sweep import SweepInterrupted

TINY = dict(dataset="digits", hidden=(16,), epochs=1, lr=0.1, track="off")
INITS = ["he_normal", "zeros", "glorot_uniform"]


@pytest.fixture(autouse=True)
def interactive_sigint():
    """Python's own Ctrl-C handler, as a terminal session has it: a job started in the
    background (``make test &``, nohup) inherits SIGINT ignored, which initlab rightly
    leaves alone, and these tests would send Ctrl-Cs nothing hears."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_a_held_ctrl_c_lets_the_block_finish_then_raises_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    finished = False
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        ctrl_c()
        finished = True  # reached: the signal waited for the block
    assert finished and signal.getsignal(signal.SIGINT) is before
    with interrupts_deferred():  # no Ctrl-C: nothing raised
        pass


def test_outside_the_main_thread_nothing_is_held():
    seen = []

    def body():
        with interrupts_deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


def test_ctrl_c_while_a_stack_is_recorded_keeps_every_run_of_it(monkeypatch):
    """The stack's three runs were trained together; a Ctrl-C while the first was being
    written kept none of them (with out=None: nowhere else)."""
    record = Store.record
    calls = []

    def interrupted_record(self, outcome):
        calls.append(outcome)
        if len(calls) == 1:
            ctrl_c()
        return record(self, outcome)

    monkeypatch.setattr(Store, "record", interrupted_record)
    with pytest.raises(SweepInterrupted) as stop:
        initlab.compare(INITS, seeds=1, engine="batched", **TINY)
    assert len(stop.value.results.runs) == 3


def test_ctrl_c_while_the_results_are_read_hands_them_over(monkeypatch):
    """Every run trained and recorded in memory; a Ctrl-C while compare read them back
    closed the store with them."""
    results = Store.results
    calls = []

    def interrupted_results(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            ctrl_c()
        return results(self, *args, **kwargs)

    monkeypatch.setattr(Store, "results", interrupted_results)
    with pytest.raises(SweepInterrupted) as stop:
        initlab.compare(INITS[:2], seeds=1, engine="batched", **TINY)
    assert len(stop.value.results.runs) == 2


def test_a_progress_callback_that_raises_is_dropped_with_a_note_and_no_run_fails():
    """Raised inside training, it failed every run of the stack; after a run, it ended the
    comparison and lost the runs trained."""
    calls = []

    def broken(config, record, result):
        calls.append(1)
        raise ValueError("my bug")

    with pytest.warns(InitlabNote, match="progress callback raised ValueError: my bug"):
        results = initlab.compare(INITS[:2], seeds=1, progress=broken, **TINY)
    assert len(calls) == 1
    assert set(results.runs["status"]) <= {"ok", "stuck"} and len(results.runs) == 2


def test_a_sigterm_the_command_line_handles_as_ctrl_c_is_held_too():
    def as_ctrl_c(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, as_ctrl_c)
    finished = False
    try:
        with pytest.raises(KeyboardInterrupt), interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            finished = True
        assert finished and signal.getsignal(signal.SIGTERM) is as_ctrl_c
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_second_ctrl_c_while_an_interrupted_sweeps_results_are_read_keeps_them(monkeypatch):
    """The held second Ctrl-C was delivered in the except block: a bare KeyboardInterrupt
    replaced SweepInterrupted, and with out=None every trained run was gone."""
    results = Store.results

    def reading_interrupted(self, *args, **kwargs):
        ctrl_c()  # held until the read ends
        return results(self, *args, **kwargs)

    def progress(config, record, result):
        if result is not None:
            monkeypatch.setattr(Store, "results", reading_interrupted)
            raise KeyboardInterrupt  # the first Ctrl-C, after a run finished

    with pytest.raises(SweepInterrupted) as stop:
        initlab.compare(INITS[:2], seeds=1, engine="single", progress=progress, **TINY)
    assert len(stop.value.results.runs) >= 1


def test_the_interruption_says_where_the_runs_are_and_what_the_same_call_does(tmp_path):
    def stop_after_first(config, record, result):
        if result is not None:
            raise KeyboardInterrupt

    for out in (None, tmp_path / "out"):
        with pytest.raises(SweepInterrupted) as stop:
            initlab.compare(
                INITS, seeds=1, engine="single", progress=stop_after_first, out=out, **TINY
            )
        said = str(stop.value)
        if out is None:
            assert "their only copy: out=None keeps no store" in said
        else:
            assert str(out) in said and "the same call trains the other 2" in said
