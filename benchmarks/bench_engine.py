"""Throughput of the one engine: a plain PyTorch loop vs initlab M = 1 vs initlab batched.

Three workloads, each on the same data for its three contenders:

(a) the seed MLP 784-300-100-10 (ReLU, SGD lr 0.01, batch 32) on Fashion-MNIST, 15 models;
(b) a small ResNet (conv stem, two residual blocks with BatchNorm2d, 16 channels) on 32x32
    RGB tensors (synthetic, class-dependent means), SGD momentum, batch 32, 8 models;
(c) a 2-layer transformer (``nn.TransformerEncoder``, d=64, 4 heads, causal mask) on token
    ids (a synthetic next-token task, vocabulary 64, length 32), Adam, batch 32, 8 models.

(b) and (c) train on ``--limit-train`` examples (4,000 by default; 1,000 before 2026-12-02
evening, when one epoch was 32 steps and validation plus test, 1,000 examples, weighed as
much as the training) and evaluate on 500 validation and 500 test examples.

Contenders: **plain** — the loop a user writes (shuffle indices, slice the in-memory tensors,
``torch.optim``, a validation pass), one model after the other, in this process with
``--threads`` threads; **M = 1** — initlab's engine with a stack of one
(``StackTrainer([model], ...)``); **batched** — initlab's engine with all models in one
stack (``--chunked``: in stacks of the size ``initlab compare`` uses,
``initlab.train.memory.chunk_size``); **workers** (``--workers N``) — N processes of one
thread each sharing the models in stacks of compare's size, which is how ``initlab compare``
and ``initlab sweep`` use a multi-core CPU (initlab.sweep.executor), timed from a barrier
once every worker has loaded the data. Each cell is seconds per model-epoch (training +
validation + test; the plain loop evaluates val and test too), best of ``--repeats``
interleaved rounds, by ``--clock``: ``wall`` (the default: what a user waits; needs an
otherwise idle machine, the load average is printed before and after) or ``cpu`` (this
process's CPU time: steadier on a shared machine, but it counts every thread's time, and
worker processes' own CPU time). "% peak" is the useful FLOP rate of the fastest batched
contender (``torch.utils.flop_counter`` on one training step, times the steps, plus the
evaluation forward passes; no FLOPs for the first layer's input gradient, which is never
computed) over the fp32 matmul peak measured here with the same clock and threads
(``torch.mm``). The seed MLP has a second row with ``--many`` models (default 60), and with
``--workers`` a line after the table with its bound: its matrix products alone, in stacks of
compare's size on that many processes at once (benchmarks/bench_ceiling.py). The output
starts with the CPU (family, model, ISA), the kernels MKL and ATen use and the load.

``--device cuda`` (or ``cuda:N``) runs every contender on that GPU: the data is moved there
once, the plain loop's model and index permutations live there as a user would put them,
every timing waits for the GPU (``torch.cuda.synchronize``), "% peak" is over the GPU's fp32
``torch.mm`` peak (8192², TF32 as torch's default leaves it: off for matrix products), and
``--workers`` does not apply. ``--many 64`` gives the GPU table of issue #12.

    python benchmarks/bench_engine.py [--repeats 3] [--threads 2] [--workers 2]
        [--clock wall|cpu] [--chunked] [--many 60] [--limit-train 4000]
        [--limit-mlp 20000] [--batched auto|stacked|vmap|looped] [--only MLP]
        [--device cpu|cuda|cuda:N]
"""

from __future__ import annotations

from initlab import mkl_dispatch  # isort: skip

mkl_dispatch.enable()  # before torch, as the initlab command does (initlab.mkl_dispatch)

import argparse
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import bench_ceiling
import machine
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from initlab.data import load
from initlab.train import memory
from initlab.train.engine import StackTrainer
from initlab.train.schedule import CPU, Member, StackSettings
from initlab.train.tasks import losses

BATCH = 32


@dataclass
class Workload:
    name: str
    models: int
    factory: Callable[[], nn.Module]
    data: SimpleNamespace
    task: str
    optimizer: str
    lr: float


def splits(x, y, task: str, classes: int, n_val: int, n_test: int) -> SimpleNamespace:
    n = len(x) - n_val - n_test
    return SimpleNamespace(
        x_train=x[:n], y_train=y[:n], x_val=x[n : n + n_val], y_val=y[n : n + n_val],
        x_test=x[n + n_val :], y_test=y[n + n_val :], task=task, num_classes=classes,
    )  # fmt: skip


def seed_mlp() -> nn.Module:
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )  # fmt: skip
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return model


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def small_resnet(width: int = 16) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        Block(width), Block(width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    )  # fmt: skip


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 64, length: int = 32, d: int = 64) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, d), nn.Parameter(torch.zeros(length, d))
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos, mask=self.mask, is_causal=True)
        return self.out(h)


def workloads(limit: int, limit_mlp: int) -> list[Workload]:
    fm = load("fashion-mnist", limit_train=limit_mlp, val_size=1000)
    mlp = SimpleNamespace(
        x_train=fm.x_train, y_train=fm.y_train, x_val=fm.x_val, y_val=fm.y_val,
        x_test=fm.x_test[:2000], y_test=fm.y_test[:2000], task="classification", num_classes=10,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    n = limit + 1000  # `limit` training examples, 500 validation, 500 test
    labels = torch.randint(0, 10, (n,), generator=gen)
    images = torch.randn(n, 3, 32, 32, generator=gen) + 0.3 * labels.view(-1, 1, 1, 1) / 10
    tokens = torch.randint(0, 64, (n, 33), generator=gen)
    tokens[:, 1::2] = (tokens[:, 0::2][:, :16] * 7 + 3) % 64  # learnable odd positions
    resnet_data = splits(images, labels, "classification", 10, 500, 500)
    token_data = splits(tokens[:, :-1], tokens[:, 1:], "sequence", 64, 500, 500)
    mlp, resnet_data, token_data = (on_device(d) for d in (mlp, resnet_data, token_data))
    return [
        Workload("seed MLP (Fashion-MNIST)", 15, seed_mlp, mlp, "classification", "sgd", 0.01),
        Workload("small ResNet (3x32x32)", 8, small_resnet, resnet_data, "classification",
                 "momentum", 0.01),
        Workload("2-layer transformer (tokens)", 8, TinyTransformer, token_data, "sequence",
                 "adam", 1e-3),
    ]  # fmt: skip


def on_device(data: SimpleNamespace) -> SimpleNamespace:
    """``data`` with every tensor moved to ``device`` once (as initlab's engine does)."""
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(data).items()}
    return SimpleNamespace(**moved)


def plain_loop(w: Workload, model: nn.Module) -> None:
    """One epoch as a user writes it: shuffled indices, sliced tensors, torch.optim, eval."""
    d = w.data
    opt = {
        "sgd": lambda p: torch.optim.SGD(p, lr=w.lr),
        "momentum": lambda p: torch.optim.SGD(p, lr=w.lr, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=w.lr),
    }[w.optimizer](model.parameters())
    model.train()
    perm = torch.randperm(len(d.x_train), device=d.x_train.device)
    for i in range(0, len(perm), BATCH):
        idx = perm[i : i + BATCH]
        out = model(d.x_train[idx])
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), d.y_train[idx].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for x in (d.x_val, d.x_test):
            for i in range(0, len(x), 1024):
                model(x[i : i + 1024])


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter
"""The clock of every timing (``--clock``): wall time, or this process's CPU time."""
device = CPU
"""Where every contender trains (``--device``)."""


def synchronized(base: Callable[[], float]) -> Callable[[], float]:
    """``base`` read after the GPU has finished everything queued (a GPU clock)."""

    def read() -> float:
        torch.cuda.synchronize(device)
        return base()

    return read


def time_plain(w: Workload) -> float:
    torch.manual_seed(0)
    model = w.factory().to(device)
    start = clock()
    plain_loop(w, model)
    return clock() - start


def time_engine(w: Workload, models: int, strategy: str = "auto") -> tuple[float, str]:
    """Seconds per model-epoch of ``models`` models in one stack (all asserted ok) and the
    strategy the stack ran (``auto`` chooses by a timed step, initlab.train.stack)."""
    seconds, strategies = train_models(w, range(models), strategy)
    return seconds / models, strategies


def train_models(w: Workload, seeds, strategy: str = "auto", chunk: int = 0) -> tuple[float, str]:
    """Seconds to train one model per seed in stacks of ``chunk`` models (0: one stack),
    one stack after the other, and the strategies the stacks ran."""
    seeds = list(seeds)
    chunks = memory.split_evenly(seeds, chunk or len(seeds))
    shared = StackSettings(
        task=w.task,
        optimizer=w.optimizer,
        batch_size=BATCH,
        epochs=1,
        strategy=strategy,
        device=device,
    )
    total, chosen = 0.0, set()
    for part in chunks:
        torch.manual_seed(part[0])
        built = [w.factory() for _ in part]
        start = clock()
        trainer = StackTrainer(built, w.data, shared, [Member(seed=s, lr=w.lr) for s in part])
        results = trainer.run()
        total += clock() - start
        assert all(r.status in ("ok", "stuck") for r in results), [r.message for r in results]
        chosen.add(trainer.stack.strategy)
    return total, ", ".join(sorted(chosen))


def product_chunk(w: Workload) -> int:
    """Models per stack as ``initlab compare`` sizes them (initlab.train.memory)."""
    model = w.factory()
    acts = memory.activations_per_example(model, w.data.x_train[:2].cpu())
    return memory.chunk_size(
        memory.parameter_count(model), acts, w.optimizer, BATCH, len(w.data.x_train), device
    )


def _worker(args: tuple) -> tuple[float, str]:
    """One worker process of :func:`time_workers`: 1 thread, its share of the seeds, timed
    from the moment every worker is ready (the barrier)."""
    name, seeds, chunk, limit, limit_mlp, clock_name = args
    global clock
    clock = CLOCKS[clock_name]
    torch.set_num_threads(1)
    w = next(w for w in workloads(limit, limit_mlp) if w.name == name)
    train_models(w, seeds[:1], chunk=1)  # warm-up (one-time kernel and allocator costs)
    machine.all_ready()
    return train_models(w, seeds, chunk=chunk)


def time_workers(w: Workload, models: int, workers: int, args) -> tuple[float, str]:
    """Seconds per model-epoch when ``workers`` processes of one thread each share the
    models (stacks of the product's chunk size), as ``initlab compare`` trains on a
    multi-core CPU: the slowest worker's time over all models."""
    chunk = product_chunk(w)
    shares = [list(range(models))[i::workers] for i in range(workers)]
    jobs = [(w.name, s, chunk, args.limit_train, args.limit_mlp, args.clock) for s in shares]
    out = machine.at_once(_worker, jobs)
    return max(t for t, _ in out) / models, ", ".join(sorted({s for _, s in out}))


def epoch_flops(w: Workload, evaluation: bool = True) -> float:
    """Useful FLOPs of one model-epoch: a training step's (counted) times the steps, plus
    the evaluation forward passes (a third of a step per example) unless not ``evaluation``."""
    model = copy.deepcopy(w.factory())
    x, y = w.data.x_train[:BATCH].cpu(), w.data.y_train[:BATCH].cpu()
    with FlopCounterMode(display=False) as counter:
        losses(w.task, model(x).unsqueeze(0), y.unsqueeze(0)).sum().backward()
    per_example = counter.get_total_flops() / BATCH
    n_eval = (len(w.data.x_val) + len(w.data.x_test)) if evaluation else 0
    return per_example * (len(w.data.x_train) + n_eval / 3)


def product_bound(w: Workload, workers: int, plain: float, peak: float) -> str:
    """A line on the seed MLP's bound (benchmarks/bench_ceiling.py): its matrix products alone,
    in stacks of compare's size, ``workers`` processes at once."""
    chunk = product_chunk(w)
    bound = bench_ceiling.seconds_per_model_epoch(chunk, workers, len(w.data.x_train))
    return (
        f"{w.name}: its matrix products alone ({chunk} models per stack, {workers} workers "
        f"x 1 thread at once) take {bound:.3f} s per model-epoch of training: at most "
        f"{plain / bound:.2f}x the plain loop, {100 * epoch_flops(w, False) / bound / peak:.0f}% "
        "of the peak (benchmarks/bench_ceiling.py)"
    )


def measure(w: Workload, models: int, args) -> dict:
    """Best of ``--repeats`` interleaved rounds of every contender for ``models`` models."""
    time_plain(w)  # warm-up: first calls pay one-time costs (allocations, kernels)
    best = dict(plain=math.inf, single=math.inf, batched=math.inf, workers=math.inf)
    chosen: set[str] = set()
    chunk = product_chunk(w) if args.chunked else 0
    for _ in range(args.repeats):
        if models == w.models:  # the per-model loops do not depend on how many models
            best["plain"] = min(best["plain"], time_plain(w))
            best["single"] = min(best["single"], time_engine(w, 1)[0])
        seconds, strategy = train_models(w, range(models), args.batched, chunk)
        best["batched"], chosen = min(best["batched"], seconds / models), chosen | {strategy}
        if args.workers > 1:
            best["workers"] = min(best["workers"], time_workers(w, models, args.workers, args)[0])
    best["strategy"] = ", ".join(sorted(chosen))
    return best


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring); refuses CUDA where there is none and
    ``--workers`` with a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also time N processes x 1 thread sharing the models (as compare)",
    )
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument(
        "--chunked",
        action="store_true",
        help="batched in stacks of compare's chunk size, not one stack",
    )
    parser.add_argument("--many", type=int, default=60, help="models of the seed MLP's 2nd row")
    parser.add_argument(
        "--limit-train", type=int, default=4000, help="training examples: ResNet, transformer"
    )
    parser.add_argument("--limit-mlp", type=int, default=20000, help="the MLP's training set")
    parser.add_argument("--batched", default="auto", help="the batched stack's strategy")
    parser.add_argument("--only", default="", help="run the workloads whose name contains this")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()  # fmt: skip
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    if args.device.startswith("cuda") and args.workers > 1:
        parser.error("--workers times CPU processes; with --device cuda leave it out")
    return args


def main() -> None:
    args = parse_args()
    global clock, device
    device = torch.device(args.device)
    clock = CLOCKS[args.clock] if device.type == "cpu" else synchronized(CLOCKS[args.clock])
    torch.set_num_threads(args.threads)
    print(f"{machine.header(args.threads, device)}\nclock: {args.clock}")
    size = 2048 if device.type == "cpu" else 8192
    peak = max(machine.matmul_peak(clock, size, device) for _ in range(3))
    where = f"{args.threads} threads" if device.type == "cpu" else str(device)
    print(f"fp32 matmul peak (torch.mm {size}^2, {where}): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'one stack' if not args.chunked else 'stacks of compare'} per batched run; "
          f"workers: {args.workers or 'not timed'}\n")  # fmt: skip
    workers = f" batched, {args.workers} workers x 1 thread |" if args.workers > 1 else ""
    print("| workload | models | plain s/model-epoch | initlab M=1 | initlab batched |"
          f"{workers} best vs plain | M=1 vs plain | best % peak | strategy |")  # fmt: skip
    print("|---" * (9 + bool(workers)) + "|")
    notes = []
    for w in workloads(args.limit_train, args.limit_mlp):
        if args.only.lower() not in w.name.lower():
            continue
        counts = [w.models] + ([args.many] if "MLP" in w.name and args.many else [])
        plain = single = math.inf
        for models in counts:
            r = measure(w, models, args)
            plain, single = min(plain, r["plain"]), min(single, r["single"])
            fastest = min(r["batched"], r["workers"])
            share = epoch_flops(w) / fastest / peak
            timed = f" {r['workers']:.3f} |" if workers else ""
            print(
                f"| {w.name} | {models} | {plain:.3f} | {single:.3f} | {r['batched']:.3f} |"
                f"{timed} {plain / fastest:.2f}x | {plain / single:.2f}x "
                f"| {100 * share:.0f}% | {r['strategy']} |",
                flush=True,
            )
        if "MLP" in w.name and args.workers > 1:
            notes.append(product_bound(w, args.workers, plain, peak))
    print("\n".join(["", *notes, f"load average at the end: {machine.load_average()}"]))


if __name__ == "__main__":
    main()
