"""Small building blocks shared by the backbones."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

__all__ = ["channel_shuffle", "interleave_channels", "conv_bn", "SqueezeExcite", "make_divisible"]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's channel shuffle: reshape channels to (g, n), transpose, flatten."""
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels not divisible by {groups} groups")
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def interleave_channels(a: Tensor, b: Tensor) -> Tensor:
    """``channel_shuffle(torch.cat((a, b), 1), 2)`` as one copy: ``a[i]`` goes to channel
    ``2i`` and ``b[i]`` to ``2i + 1``. Channels-last data (channels vary fastest in memory,
    channel slices of such a map included) gives a channels-last result, for the next
    convolution; anything else a contiguous one."""
    if a.shape != b.shape:
        raise ValueError(f"interleave_channels needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.stride(1) < a.stride(3):
        return torch.stack((a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)), dim=-1).flatten(-2).permute(0, 3, 1, 2)
    return torch.stack((a, b), dim=2).flatten(1, 2)


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    stride: int = 1,
    groups: int = 1,
    activation: Optional[Callable[[], nn.Module]] = nn.ReLU,
) -> nn.Sequential:
    """conv (no bias) + BN (+ activation): indices 0/1/2 as in torchvision and the
    authors' code, so their checkpoints map key for key."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation is not None:
        layers.append(activation(inplace=True) if activation in (nn.ReLU, nn.ReLU6) else activation())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al.): global pool, bottleneck FC pair, sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = torch.mean(x, dim=(2, 3), keepdim=True)
        s = self.fc2(self.relu(self.fc1(s)))
        return x * torch.sigmoid(s)


def make_divisible(value: float, divisor: int, min_value: Optional[int] = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without losing >10% (MobileNet v2 rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new
