"""Winograd F(4x4, 3x3) convolution for dense 3x3 stride-1 convs at inference.

A 3x3 conv computes 9 multiply-adds per output and input channel; Winograd's minimal
filtering (Lavin & Gray, 2016) computes a 4x4 output tile from a 6x6 input tile with 36
element-wise products per channel pair, 2.25 per output instead of 9. The products
become 36 independent GEMMs (tiles x C_in) @ (C_in x C_out), one batched `bmm`; the tile
transforms are two small GEMMs. Interpolation points 0, +-1, +-2 (and infinity) keep the
fp32 rounding error around 1e-6 relative, so the result equals the direct convolution
within the fused models' tolerance. Worth it where the channel counts are large (the RPN's
3x3 conv 232 -> 256 on the stride-16 map); depthwise and strided convs stay as they are.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .inference import InferenceModule

__all__ = ["WinogradConv3x3", "winograd_filter", "winograd_conv3x3", "supports_winograd", "winograd_if_wide",
           "WINOGRAD_MIN_CHANNELS"]

#: narrower 3x3 convs stay direct: the Winograd tile transforms would outweigh the saving
WINOGRAD_MIN_CHANNELS = 64

TILE = 4  # output tile side (m); input tile side m + 2
_BT = [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
]
_G = [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
]
_AT = [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
]


def _kron(m: list) -> Tensor:
    """2-d transform ``M X M^T`` of a flattened square tile as one matrix (float64)."""
    t = torch.tensor(m, dtype=torch.float64)
    return torch.kron(t, t)


_TRANSFORMS: dict = {}


def _transform(m: list, like: Tensor) -> Tensor:
    """``_kron(m)`` in ``like``'s dtype and device, built once per combination."""
    key = (id(m), like.dtype, like.device)
    if key not in _TRANSFORMS:
        _TRANSFORMS[key] = _kron(m).to(dtype=like.dtype, device=like.device)
    return _TRANSFORMS[key]


def winograd_filter(weight: Tensor) -> Tensor:
    """``(C_out, C_in, 3, 3)`` weights -> ``(36, C_in, C_out)``: ``G g G^T`` per channel pair,
    computed in float64 and stored in ``weight``'s dtype."""
    c_out, c_in, kh, kw = weight.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"Winograd F(4x4, 3x3) needs 3x3 kernels, got {kh}x{kw}")
    g = weight.detach().to(torch.float64).reshape(c_out * c_in, 9)
    u = _kron(_G).to(g.device) @ g.t()  # (36, C_out * C_in)
    return u.reshape(36, c_out, c_in).transpose(1, 2).contiguous().to(weight.dtype)


def winograd_conv3x3(x: Tensor, filt: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``conv2d(x, w, bias, stride=1, padding=1)`` with ``filt = winograd_filter(w)``.

    ``x`` is ``(N, C_in, H, W)`` in any memory format; the result is channels-last.
    """
    n, c_in, h, w = x.shape
    if filt.shape[:2] != (36, c_in):
        raise ValueError(f"Winograd filter of shape {tuple(filt.shape)} does not match {c_in} input channels")
    c_out = filt.shape[2]
    th, tw = -(-h // TILE), -(-w // TILE)
    # pad 1 for the conv, and up to whole tiles at the bottom / right (NHWC, so a tile row is contiguous)
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, TILE * tw + 1 - w, 1, TILE * th + 1 - h))
    tiles = xp.unfold(1, TILE + 2, TILE).unfold(2, TILE + 2, TILE)  # (N, th, tw, C, 6, 6)
    tiles = tiles.permute(4, 5, 0, 1, 2, 3).reshape(36, n * th * tw * c_in)
    bt = _transform(_BT, x)
    v = torch.mm(bt, tiles).view(36, n * th * tw, c_in)
    m = torch.bmm(v, filt)  # (36, tiles, C_out)
    y = torch.mm(_transform(_AT, x), m.view(36, -1))  # (16, tiles * C_out)
    y = y.view(TILE, TILE, n, th, tw, c_out).permute(2, 3, 0, 4, 1, 5).reshape(n, TILE * th, TILE * tw, c_out)
    out = y.new_empty((n, h, w, c_out))  # NHWC: one pass untiles, crops (and adds the bias)
    if bias is not None:
        torch.add(y[:, :h, :w], bias, out=out)
    else:
        out.copy_(y[:, :h, :w])
    return out.permute(0, 3, 1, 2)


class WinogradConv3x3(InferenceModule):
    """Inference-only replacement of a dense 3x3, stride-1, padding-1 `nn.Conv2d`."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not supports_winograd(conv):
            raise ValueError(f"{conv} is not a dense 3x3 stride-1 padding-1 convolution")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.register_buffer("filt", winograd_filter(conv.weight))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return winograd_conv3x3(x, self.filt, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, F(4x4, 3x3)"


def supports_winograd(conv: nn.Module) -> bool:
    """Whether ``conv`` is a dense 3x3, stride-1, padding-1 (zeros), undilated `nn.Conv2d`."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def winograd_if_wide(conv: nn.Conv2d, min_channels: int = WINOGRAD_MIN_CHANNELS) -> nn.Module:
    """`WinogradConv3x3` of a dense 3x3 stride-1 CPU conv with at least ``min_channels``
    input and output channels, ``conv`` itself otherwise (on CUDA cuDNN picks its own kernels)."""
    if supports_winograd(conv) and min(conv.in_channels, conv.out_channels) >= min_channels and conv.weight.is_cpu:
        return WinogradConv3x3(conv).eval()
    return conv
