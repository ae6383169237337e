"""Throughput of the one engine: a plain PyTorch loop vs initlab M = 1 vs initlab batched.

Three workloads, each on the same data for its three contenders:

(a) the seed MLP 784-300-100-10 (ReLU, SGD lr 0.01, batch 32) on Fashion-MNIST, 15 models;
(b) a small ResNet (conv stem, two residual blocks with BatchNorm2d, 16 channels) on 32x32
    RGB tensors (synthetic, class-dependent means), SGD momentum, batch 32, 8 models;
(c) a 2-layer transformer (``nn.TransformerEncoder``, d=64, 4 heads, causal mask) on token
    ids (a synthetic next-token task, vocabulary 64, length 32), Adam, batch 32, 8 models.

Contenders: **plain** — the loop a user writes (shuffle indices, slice the in-memory tensors,
``torch.optim``, a validation pass), one model after the other; **M = 1** — initlab's engine
with a stack of one (``train_stack([model], ...)``); **batched** — initlab's engine with all
models in one stack. Each is timed as CPU seconds of this process per model-epoch
(``time.process_time``; training + validation + test, the plain loop evaluates val and test
too), best of ``--repeats`` interleaved rounds. On a shared, overloaded machine CPU time is
far steadier than wall time (other jobs' time is not counted, though their cache pressure
is); with one thread (the default) it equals the wall time of an idle machine. "% peak" is
the useful FLOP rate (``torch.utils.flop_counter`` on one training step, times the steps,
plus the evaluation forward passes) over the fp32 matmul peak measured here (``torch.mm``).

    python benchmarks/bench_engine.py [--repeats 3] [--threads 1] [--limit-train 2000]
        [--limit-mlp 20000] [--batched auto|stacked|vmap|looped]
"""

from __future__ import annotations

from initlab import mkl_dispatch  # isort: skip

mkl_dispatch.enable()  # before torch, as the initlab command does (initlab.mkl_dispatch)

import argparse
import copy
import math
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from initlab.data import load
from initlab.train.engine import Member, Plan, StackTrainer
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


def cpu_model() -> str:
    """``lscpu``'s model name (``platform.processor()`` where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")]
    return names[0] if names else "unknown CPU"


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` ``torch.mm`` of two n x n float32 matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        torch.mm(a, b, out=out)
        best = min(best, time.process_time() - start)
    return 2 * n**3 / best


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
    n = limit // 2 + 1000
    labels = torch.randint(0, 10, (n,), generator=gen)
    images = torch.randn(n, 3, 32, 32, generator=gen) + 0.3 * labels.view(-1, 1, 1, 1) / 10
    tokens = torch.randint(0, 64, (n, 33), generator=gen)
    tokens[:, 1::2] = (tokens[:, 0::2][:, :16] * 7 + 3) % 64  # learnable odd positions
    return [
        Workload("seed MLP (Fashion-MNIST)", 15, seed_mlp, mlp, "classification", "sgd", 0.01),
        Workload("small ResNet (3x32x32)", 8, small_resnet,
                 splits(images, labels, "classification", 10, 500, 500), "classification",
                 "momentum", 0.01),
        Workload("2-layer transformer (tokens)", 8, TinyTransformer,
                 splits(tokens[:, :-1], tokens[:, 1:], "sequence", 64, 500, 500), "sequence",
                 "adam", 1e-3),
    ]  # fmt: skip


def plain_loop(w: Workload, model: nn.Module) -> None:
    """One epoch as a user writes it: shuffled indices, sliced tensors, torch.optim, eval."""
    d = w.data
    opt = {
        "sgd": lambda p: torch.optim.SGD(p, lr=w.lr),
        "momentum": lambda p: torch.optim.SGD(p, lr=w.lr, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=w.lr),
    }[w.optimizer](model.parameters())
    model.train()
    perm = torch.randperm(len(d.x_train))
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


def time_plain(w: Workload) -> float:
    torch.manual_seed(0)
    model = w.factory()
    start = time.process_time()
    plain_loop(w, model)
    return time.process_time() - start


def time_engine(w: Workload, models: int, strategy: str = "auto") -> tuple[float, str]:
    """Seconds per model-epoch of ``models`` models in one stack (all asserted ok) and the
    strategy the stack ran (``auto`` chooses by a timed step, initlab.train.stack)."""
    torch.manual_seed(0)
    built = [w.factory() for _ in range(models)]
    plan = Plan(task=w.task, optimizer=w.optimizer, batch_size=BATCH, epochs=1, strategy=strategy)
    members = [Member(seed=s, lr=w.lr) for s in range(models)]
    start = time.process_time()
    trainer = StackTrainer(built, w.data, plan, members)
    results = trainer.run()
    seconds = (time.process_time() - start) / models
    assert all(r.status in ("ok", "stuck") for r in results), [r.message for r in results]
    return seconds, trainer.stack.strategy


def epoch_flops(w: Workload) -> float:
    """Useful FLOPs of one model-epoch: a training step's (counted) times the steps, plus
    the evaluation forward passes (a third of a step per example)."""
    model = copy.deepcopy(w.factory())
    x, y = w.data.x_train[:BATCH], w.data.y_train[:BATCH]
    with FlopCounterMode(display=False) as counter:
        losses(w.task, model(x).unsqueeze(0), y.unsqueeze(0)).sum().backward()
    per_example = counter.get_total_flops() / BATCH
    n_eval = len(w.data.x_val) + len(w.data.x_test)
    return per_example * (len(w.data.x_train) + n_eval / 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-train", type=int, default=2000, help="ResNet, transformer")
    parser.add_argument("--limit-mlp", type=int, default=20000, help="the MLP's training set")
    parser.add_argument("--batched", default="auto", help="the batched stack's strategy")
    parser.add_argument("--only", default="", help="run the workloads whose name contains this")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads")
    peak = max(matmul_peak() for _ in range(3))
    print(f"fp32 matmul peak (torch.mm 2048^2): {peak / 1e9:.1f} GFLOP/s\n")
    print("| workload | models | plain s/model-epoch | initlab M=1 | initlab batched "
          "| batched vs plain | M=1 vs plain | batched % peak | strategy |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for w in workloads(args.limit_train, args.limit_mlp):
        if args.only.lower() not in w.name.lower():
            continue
        time_plain(w)  # warm-up: first calls pay one-time costs (allocations, kernels)
        plain = single = batched = math.inf
        chosen = set()
        for _ in range(args.repeats):
            plain = min(plain, time_plain(w))
            single = min(single, time_engine(w, 1)[0])
            seconds, strategy = time_engine(w, w.models, args.batched)
            batched, chosen = min(batched, seconds), chosen | {strategy}
        share = epoch_flops(w) / batched / peak
        print(
            f"| {w.name} | {w.models} | {plain:.3f} | {single:.3f} | {batched:.3f} "
            f"| {plain / batched:.2f}x | {plain / single:.2f}x | {100 * share:.0f}% "
            f"| {', '.join(sorted(chosen))} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
