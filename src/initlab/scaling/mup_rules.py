"""muP's per-layer rules in words, by parameter kind and optimizer (Tensor Programs V,
Table 3): what a scaling verdict's sentence says muP does about a module that moves with
width (:func:`initlab.scaling.sentences.cause`)."""

from __future__ import annotations

NAMES = {
    "sp": "SP",
    "ntk": "NTK",
    "mup": "muP",
    "default": "the factory's own init (default)",
    "sgd": "SGD",
    "adam": "Adam",
}
MUP_FIX = {
    ("input", "sgd"): "muP scales this layer's learning rate by width",
    ("input", "adam"): "muP keeps this layer's learning rate (η) and init",
    ("hidden", "sgd"): "muP keeps this layer's SGD learning rate (η) and scales the output "
    "layer's by 1/width",
    ("hidden", "adam"): "muP scales this layer's learning rate by 1/width",
    ("output", "sgd"): "muP scales this layer's learning rate by 1/width",
    ("output", "adam"): "muP scales this layer's learning rate by 1/width",
    ("logits", "sgd"): "muP scales the output layer's learning rate by 1/width and "
    "zero-initializes it",
    ("logits", "adam"): "muP scales the output layer's learning rate by 1/width and "
    "zero-initializes it",
}


MUP_LOWERS = {("hidden", "adam"), ("output", "sgd"), ("output", "adam")} | {
    ("logits", o) for o in ("sgd", "adam")
}
"""``(kind, optimizer)`` where muP lowers the layer's learning rate (by 1/width)."""
MUP_KEEPS = {("input", "adam")}
"""``(kind, optimizer)`` where muP keeps the layer's learning rate and init as SP has them
(hidden layers under SGD: kept too, but muP's output layer changes what reaches them)."""
