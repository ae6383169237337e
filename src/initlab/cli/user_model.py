"""Models the user brings (``--model module:function``) and the probe batch commands share."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from initlab.apply import initialize
from initlab.config import RunConfig
from initlab.errors import InitlabError, UnknownNameError
from initlab.train.seeding import derive_seed, make_generator


def probe_batch(x: Tensor, y: Tensor, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``size`` training examples drawn without replacement from the ``"probe"`` stream."""
    idx = torch.randperm(len(x), generator=make_generator(seed, "probe"))[:size]
    return x[idx], y[idx]


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    """Let ``--model mymodule:build`` find ``mymodule.py`` in the current directory."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def load_factory(spec: str) -> object:
    """The callable named by ``module:function``; clear errors for every way it can fail."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name.strip() or not func_name.strip():
        raise InitlabError(f"--model takes module:function (e.g. mymodels:build), got '{spec}'")
    with _cwd_on_path():
        try:
            module = importlib.import_module(module_name.strip())
        except (ImportError, SyntaxError) as exc:
            raise InitlabError(f"cannot import module '{module_name}' for --model: {exc}") from None
    factory = getattr(module, func_name.strip(), None)
    if factory is None:
        public = [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])]
        raise UnknownNameError(f"function in module '{module_name}'", func_name, public)
    if not callable(factory):
        raise InitlabError(
            f"--model {spec}: '{func_name}' is a {type(factory).__name__}, not a function"
        )
    return factory


def user_model(spec: str, config: RunConfig | None) -> nn.Module:
    """Call the factory (global RNG seeded from ``--seed``, then restored); apply ``--init``."""
    factory = load_factory(spec)
    seed = config.seed if config is not None else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "construct"))
        try:
            built = factory()  # type: ignore[operator]
        except TypeError as exc:
            raise InitlabError(
                f"--model {spec} must be callable with no arguments: {exc}"
            ) from None
    if not isinstance(built, nn.Module):
        raise InitlabError(
            f"--model {spec} returned a {type(built).__name__}, not a torch.nn.Module"
        )
    if config is not None:
        initialize(
            built,
            config.init,
            bias=config.bias,
            output_layer=config.output_init,
            generator=make_generator(config.seed, "init"),
        )
    return built
