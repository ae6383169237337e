"""Shared test settings: one torch thread per test worker, deterministic algorithms."""

import os

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
