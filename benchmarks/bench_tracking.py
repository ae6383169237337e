"""Overhead of per-layer tracking during training: track="off" vs track="epoch".

The protocol is `initlab compare`'s default: Fashion-MNIST (55,000 training images), a
784-300-100-10 ReLU MLP (he_normal, output glorot_uniform), SGD lr 0.01, batch 32, one epoch.
With track="epoch" the probe runs twice (step 0 and after the epoch) on the fixed probe batch
(the first 256 training images). Runs are interleaved and the best of N is kept for each
setting. On a shared machine the end-to-end difference drowns in run-to-run noise, so two
load-robust measures are reported too: the share of a tracked run's own training time spent
inside the probes (timed in the same run), and the median time of one probe.

    python benchmarks/bench_tracking.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

from initlab import mkl_dispatch  # isort: skip

mkl_dispatch.enable()  # before torch, as the initlab command does (initlab.mkl_dispatch)

import argparse
import statistics
import time

import machine
import torch

from initlab.config import RunConfig
from initlab.data import load
from initlab.probe import Tracker
from initlab.train import train_model
from initlab.train.run import build_initialized_model, run_config


class TimedTracker(Tracker):
    """A tracker that also adds up the time spent probing."""

    seconds = 0.0

    def record(self, model, epoch, step):
        start = time.perf_counter()
        super().record(model, epoch, step)
        self.seconds += time.perf_counter() - start


def in_run_share(data) -> float:
    """Seconds spent in the probes / training seconds, within one tracked 1-epoch run."""
    config = RunConfig(init="he_normal", epochs=1, seed=0)
    model = build_initialized_model(config, data.input_shape, data.num_classes)
    tracker = TimedTracker.for_data("epoch", data)
    result = train_model(model, data, epochs=1, seed=0, track=tracker)
    return tracker.seconds / (result.train_seconds - tracker.seconds)


def train_seconds(data, track: str) -> tuple[float, int]:
    """Training time of one epoch (``RunResult.train_seconds``) and the rows recorded."""
    result = run_config(RunConfig(init="he_normal", epochs=1, seed=0, track=track), data)
    return result.train_seconds, len(result.layer_stats)


def probe_seconds(data, repeats: int = 20) -> float:
    """Median time of one tracking probe on the seed protocol's model."""
    config = RunConfig(init="he_normal", epochs=1, seed=0)
    model = build_initialized_model(config, data.input_shape, data.num_classes)
    tracker = Tracker.for_data("epoch", data)
    times = []
    for step in range(repeats):
        start = time.perf_counter()
        tracker.record(model, 0, step)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine.header(args.threads), flush=True)
    data = load("fashion-mnist")
    best = {"off": float("inf"), "epoch": float("inf")}
    rows = {}
    for _ in range(args.repeats):  # interleaved, best of N
        for track in best:
            seconds, rows[track] = train_seconds(data, track)
            best[track] = min(best[track], seconds)
    probe = probe_seconds(data)
    shares = sorted(in_run_share(data) for _ in range(args.repeats))
    overhead = best["epoch"] / best["off"] - 1
    print(f"threads={args.threads} repeats={args.repeats} (best of repeats, 1 epoch)")
    print(f"track=off    {best['off']:.3f} s/epoch   ({rows['off']} rows)")
    print(f"track=epoch  {best['epoch']:.3f} s/epoch   ({rows['epoch']} rows)")
    print(f"overhead     {overhead:+.2%} end to end (limit +5%; noise on a shared machine)")
    print(
        f"in-run share {shares[len(shares) // 2]:.2%} median (min {shares[0]:.2%}, max "
        f"{shares[-1]:.2%}) of a tracked run's training time spent in its two probes"
    )
    print(
        f"one probe    {probe * 1e3:.1f} ms (median of 20) = {2 * probe / best['off']:.2%} "
        "of an epoch for the two probes of a 1-epoch run"
    )


if __name__ == "__main__":
    main()
