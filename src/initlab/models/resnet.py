"""A CIFAR-style residual network (He et al. 2016, §4.2): depth ``6n + 2``.

``conv3x3(in_channels → width) → [BN] → ReLU → 3 stages × n BasicBlocks (widths w, 2w, 4w;
stride 2 at the start of stages 2 and 3) → global average pool → Linear(num_classes)``.

A BasicBlock computes ``relu(branch(x) + skip(x))`` with ``branch = conv3x3 → [BN] → ReLU →
conv3x3 → [BN]`` and ``skip`` the identity, or ``conv1x1(stride) → [BN]`` where the shape
changes (torchvision's option B). ``norm=False`` drops every batch norm (the setting of
Fixup and SkipInit), and the convolutions then get biases. Layer names follow torchvision
(``conv1``, ``bn1``, ``conv2``, ``bn2``, ``shortcut``) so the zero-init folklore reads the
same: the last norm of each branch is ``bn2``.
"""

from __future__ import annotations

from torch import Tensor, nn

from initlab.errors import InitlabError, check_positive


def _norm(channels: int, norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if norm else nn.Identity()


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: bool) -> None:
        super().__init__()
        bias = not norm
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = _norm(out_ch, norm)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias)
        self.bn2 = _norm(out_ch, norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=bias), _norm(out_ch, norm)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """The CIFAR ResNet of depth ``6n + 2`` (see the module docstring)."""

    def __init__(
        self, depth: int, width: int, num_classes: int, norm: bool, in_channels: int
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise InitlabError(
                f"a CIFAR ResNet has depth 6n+2 (8, 14, 20, 32, 44, 56, 110...), got {depth}"
            )
        for name, value in (("width", width), ("num_classes", num_classes)):
            check_positive(name, value)
        check_positive("in_channels", in_channels)
        n = (depth - 2) // 6
        self.depth, self.norm = depth, norm
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=not norm)
        self.bn1 = _norm(width, norm)
        self.relu = nn.ReLU()
        stages, in_ch = [], width
        for stage, out_ch in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_ch, out_ch, stride, norm))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.fc(self.flatten(self.pool(h)))


def resnet(
    depth: int = 20,
    width: int = 16,
    num_classes: int = 10,
    norm: bool = True,
    in_channels: int = 3,
) -> ResNet:
    """A CIFAR-style ResNet: ``(depth - 2) / 6`` BasicBlocks per stage, 3 stages, so
    ``L = (depth - 2) / 2`` residual branches of ``m = 2`` convolutions each. ``norm=False``:
    no batch norm anywhere. Usable as ``--model initlab.models.resnet:resnet``."""
    return ResNet(int(depth), int(width), int(num_classes), bool(norm), int(in_channels))
