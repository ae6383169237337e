"""The one hint for images in the wrong layout: what a convolution that failed on the
inputs themselves says about their axes (channels last, or no channel axis)."""

from __future__ import annotations

from torch import Tensor, nn


def layout_hint(model: nn.Module, failed: str, x: Tensor) -> str:
    """``"; the examples look channels-last [H, W, C] ..."`` when the module ``failed`` is
    ``model``'s first convolution (the one that reads the inputs ``x``; a deeper one's input
    is another tensor) and ``x``'s last axis has its ``in_channels`` while axis 1 does not
    (a numpy/PIL image batch ``[N, H, W, C]``; PyTorch's layers take ``[N, C, H, W]``), or it
    takes one input channel and ``x`` is ``[N, H, W]`` (no channel axis); else ``""``."""
    convs = (n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd))
    if not failed or failed != next(convs, None):
        return ""
    module = model.get_submodule(failed)
    spatial, channels = len(module.kernel_size), module.in_channels
    if x.dim() == spatial + 2 and x.shape[-1] == channels and x.shape[1] != channels:
        axes = ", ".join(["0", str(spatial + 1), *map(str, range(1, spatial + 1))])
        return (
            f"; the examples look channels-last ({list(x.shape[1:])}, {channels} "
            f"channel{'s' * (channels != 1)} last) while {type(module).__name__} takes "
            f"channels first: transpose them, x.transpose({axes}) (numpy) or "
            f"x.permute({axes}) (torch)"
        )
    if x.dim() == spatial + 1 and channels == 1:
        return "; the examples have no channel axis: add one, x[:, None] (one channel)"
    return ""
