"""The init doctor: recommend a scheme per layer for any model, explain why, apply it."""

from initlab.doctor.plan import Plan, PlanEntry, recommend, rule_for
from initlab.probe.trace import find_activations

__all__ = ["Plan", "PlanEntry", "find_activations", "recommend", "rule_for"]
