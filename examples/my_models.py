"""Example model factories for ``initlab --model examples/my_models.py:NAME`` (see
docs/your-model.md). Each is an ordinary function returning an ``nn.Module``; keyword
arguments come from ``--model-arg key=value`` (or ``model_args`` in a spec / the API).

- :func:`resnet`: a small ResNet with batch norm for image tensors ``[N, C, H, W]``;
- :func:`regression_mlp`: an MLP with one output per target, for regression;
- :func:`tiny_transformer`: a causal transformer over token ids ``[N, T]`` that returns
  next-token logits ``[N, T, vocab]``;
- :func:`lstm_classifier`: an embedding and an LSTM over token ids ``[N, T]`` whose last
  state is classified.

The layers are built with PyTorch's own initialization, which is what the init ``default``
compares against the schemes under study.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))``: a basic residual block, same width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


def resnet(
    in_channels: int = 1, width: int = 16, blocks: int = 2, num_classes: int = 10
) -> nn.Module:
    """Stem conv → ``blocks`` residual blocks → global average pool → linear classifier.
    Works on any image size (``[N, in_channels, H, W]``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        *[Block(width) for _ in range(blocks)],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


def regression_mlp(inputs: int = 8, width: int = 64, depth: int = 2, outputs: int = 1) -> nn.Module:
    """``depth`` hidden tanh layers of ``width`` units, then ``outputs`` linear outputs."""
    layers: list[nn.Module] = []
    fan_in = inputs
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.Tanh()]
        fan_in = width
    layers.append(nn.Linear(fan_in, outputs))
    return nn.Sequential(*layers)


class TinyTransformer(nn.Module):
    """Token + position embeddings → ``layers`` causal pre-norm encoder layers → logits."""

    def __init__(self, vocab: int, dim: int, heads: int, layers: int, context: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(context, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        steps = tokens.shape[1]
        h = self.embed(tokens) + self.position(torch.arange(steps, device=tokens.device))
        mask = nn.Transformer.generate_square_subsequent_mask(steps, device=tokens.device)
        return self.head(self.norm(self.encoder(h, mask=mask, is_causal=True)))


def tiny_transformer(
    vocab: int = 16, dim: int = 32, heads: int = 2, layers: int = 2, context: int = 16
) -> nn.Module:
    """A 2-layer causal transformer for next-token prediction on sequences of up to
    ``context`` token ids below ``vocab``."""
    return TinyTransformer(vocab, dim, heads, layers, context)


class LSTMClassifier(nn.Module):
    """Embedding → one LSTM layer → a Linear head on the last step's hidden state."""

    def __init__(self, vocab: int, dim: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(self.embed(tokens))
        return self.head(states[:, -1])


def lstm_classifier(vocab: int = 8, dim: int = 16, hidden: int = 32, classes: int = 3) -> nn.Module:
    """An LSTM sequence classifier over token ids below ``vocab``."""
    return LSTMClassifier(vocab, dim, hidden, classes)
