"""See inside a network: per-layer statistics at init and during training.

* :func:`diagnose` — one forward/backward pass → :class:`Diagnosis` (table, findings, plots);
* :mod:`~initlab.probe.metrics` — the statistics as pure functions of tensors
  (:func:`layer_metrics`, :data:`METRICS`), shared with other engines;
* :mod:`~initlab.probe.trace` — the activation tracer (one forward pass), shared with the
  doctor;
* :mod:`~initlab.probe.hooks` — collecting the tensors and gradients, leaving the model as
  it was;
* :mod:`~initlab.probe.findings` — the verdicts and their thresholds;
* :mod:`~initlab.probe.tracking` — :class:`Tracker`, the probe during training.

See ``docs/diagnosis.md``.
"""

from initlab.probe.diagnosis import Diagnosis, diagnose, measure
from initlab.probe.findings import FINDINGS, Finding
from initlab.probe.metrics import METRICS, layer_metrics
from initlab.probe.tracking import Tracker

__all__ = [
    "FINDINGS",
    "METRICS",
    "Diagnosis",
    "Finding",
    "Tracker",
    "diagnose",
    "layer_metrics",
    "measure",
]
