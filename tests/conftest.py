"""Shared test settings.

Floating-point rule
-------------------
CI runs on whatever CPU the machine has (Intel AVX-512, AMD AVX-512 or AVX2-only), and
matrix products, reductions and vectorized elementwise kernels sum in a different order on
each, so a floating-point result computed along two code paths (two engines, a batched and
a single kernel, our code and torch's) is compared with a tolerance derived from the dtype
and the sizes involved, never bit for bit:

    atol = 50 · eps(dtype) · sqrt(n) · scale

with ``n`` the length of the longest reduction behind a value (a fan-in, a batch, a row)
and ``scale`` the magnitude of the values or of the terms summed — an absolute floor, so
values that should be 0 but hold rounding noise compare equal — plus a relative ``rtol``
where values span magnitudes. Statistical checks take tolerances from the sample size.
Exact comparisons (``==``, ``torch.equal``) stay only where the result is exact on every
CPU: the same computation repeated on the same path (determinism with a seed, a model left
untouched, a copy), integers and counts, values exact in any summation order (products
with identity or Dirac weights, relu), and constants read back. See CONTRIBUTING.md.

The fast suite trains tiny models: one torch thread per process is faster than two (two
threads only contend, badly so when pytest-xdist runs two workers on two cores), so every
test runs with one thread, except the slow end-to-end tests on real data, which get two.

The MKL override is enabled before torch is imported, as the ``initlab`` command does for
itself and its workers, so the tests run on the BLAS kernels command-line users get (MKL's
AVX-512 kernels on AMD CPUs that have them; elsewhere it does nothing: ``initlab.mkl_dispatch``).
``import initlab`` alone would not: it has no side effects.
"""

from initlab import mkl_dispatch  # isort: skip

mkl_dispatch.enable()  # before anything imports torch

import matplotlib  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _threads_for_slow_tests(request: pytest.FixtureRequest):
    if request.node.get_closest_marker("slow") is None:
        yield
        return
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> list:
    """Counts the runs actually trained in this process, by either engine: each config, in
    the order trained."""
    from types import SimpleNamespace

    from initlab import train
    from initlab.sweep import engine
    from initlab.train.run import run_config

    calls = []

    def counting(config, data=None, on_epoch=None, checkpoints=None):
        calls.append(config)
        return run_config(config, data, on_epoch, checkpoints)

    def counting_stack(configs, data=None, on_epoch=None, checkpoints=None):
        calls.extend(configs)
        return train.train_configs(configs, data, on_epoch=on_epoch, checkpoints=checkpoints)

    stacked = SimpleNamespace(group_configs=train.group_configs, train_configs=counting_stack)
    monkeypatch.setattr(engine, "run_config", counting)
    monkeypatch.setattr(engine, "batched_engine", lambda: stacked)
    return calls


@pytest.fixture
def interrupt_at(monkeypatch: pytest.MonkeyPatch):
    """``interrupt_at(n)``: the single engine trains runs until its ``n``-th, which raises
    ``KeyboardInterrupt`` (Ctrl-C part-way through a sweep)."""
    from initlab.sweep import engine
    from initlab.train.run import run_config

    def patch(call: int) -> None:
        calls = []

        def interrupted(config, data=None, on_epoch=None, checkpoints=None):
            calls.append(config)
            if len(calls) == call:
                raise KeyboardInterrupt
            return run_config(config, data, on_epoch)

        monkeypatch.setattr(engine, "run_config", interrupted)

    return patch


@pytest.fixture
def tiny_spec():
    """``tiny_spec(path, name, inits, seeds=1, hidden=16, lr=None)``: write a one-epoch sweep
    spec of small MLPs on the 8×8 digits to ``path`` (returned), sweeping ``inits``."""

    def write(path, name: str, inits: list[str], seeds: int = 1, hidden: int = 16, lr=None):
        lines = [f'name = "{name}"', *([f"seeds = {seeds}"] if seeds > 1 else [])]
        lines += ["[fixed]", 'dataset = "digits"', f"hidden = [{hidden}]", "epochs = 1"]
        lines += [f"lr = {lr}"] if lr is not None else []
        lines += ["[sweep]", "init = [" + ", ".join(f'"{i}"' for i in inits) + "]"]
        path.write_text("\n".join(lines) + "\n")
        return path

    return write
