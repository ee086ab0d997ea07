"""The ShuffleNet v2 unit for channels-last inference, built from a trained `ShuffleV2Block`.

``channel_shuffle(cat(a, b), 2)`` puts ``a[i]`` at channel ``2i`` and ``b[i]`` at ``2i + 1``:
one interleaving copy (``stack`` next to the channel axis) replaces the concat and the
shuffle copies, and the next unit's split becomes a free channel slice. On NHWC data a
dense 1x1 conv is one GEMM over the (pixels x channels) matrix, which reads that slice in
place (row stride = the full width): no ``contiguous``, no cat-then-slice.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..shufflenet_v2 import ShuffleV2Block
from .fold import fold_batchnorms
from .inference import InferenceModule

__all__ = ["FusedShuffleV2Block", "NHWCConvChain"]


def _nhwc(x: Tensor) -> Tensor:
    """NCHW-indexed tensor -> NHWC-indexed view (a contiguous one if ``x`` is channels-last)."""
    return x.permute(0, 2, 3, 1)


def _nchw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2)


def _is_pointwise(conv: nn.Conv2d) -> bool:
    return conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1


class NHWCConvChain(InferenceModule):
    """Convs (BN folded), each optionally followed by a ReLU, on NHWC-indexed data.

    Dense 1x1 stride-1 convs run as ``addmm`` over the (pixels x channels) matrix, the
    ReLU applied in place to its fresh output; the others as convolutions of the NCHW view.
    """

    def __init__(self, convs: Sequence[nn.Conv2d], relu_after: Sequence[bool]) -> None:
        super().__init__()
        if len(convs) != len(relu_after):
            raise ValueError(f"{len(convs)} convs but {len(relu_after)} ReLU flags")
        self.convs = nn.ModuleList(convs)
        self.relu_after = tuple(relu_after)
        self.as_gemm = tuple(_is_pointwise(c) for c in convs)

    @classmethod
    def from_sequential(cls, layers: nn.Sequential) -> "NHWCConvChain":
        """The chain of a trained conv / BN / ReLU `nn.Sequential` (BN folded into a copy)."""
        convs: List[nn.Conv2d] = []
        relu_after: List[bool] = []
        for layer in fold_batchnorms(copy.deepcopy(layers)):
            if isinstance(layer, nn.Conv2d):
                convs.append(layer)
                relu_after.append(False)
            elif isinstance(layer, nn.ReLU) and convs and not relu_after[-1]:
                relu_after[-1] = True
            elif not isinstance(layer, nn.Identity):  # a folded BN
                raise ValueError(f"cannot run {type(layer).__name__} in a fused conv chain: {layers}")
        return cls(convs, relu_after).eval()

    def forward(self, x: Tensor) -> Tensor:
        for conv, relu, gemm in zip(self.convs, self.relu_after, self.as_gemm):
            if gemm:
                n, h, w, c = x.shape
                rows = x.reshape(n * h * w, c)  # a view for channel slices of a contiguous NHWC tensor
                out = torch.addmm(conv.bias, rows, conv.weight.flatten(1).t())
                x = out.view(n, h, w, -1)
            else:
                x = _nhwc(conv(_nchw(x)))
            if relu:
                x = torch.relu_(x)  # a conv's fresh output, never the caller's tensor
        return x

    def extra_repr(self) -> str:
        return f"relu_after={self.relu_after}"


class FusedShuffleV2Block(InferenceModule):
    """`ShuffleV2Block` for inference on channels-last data: BN folded, the branches run
    as `NHWCConvChain`, concat + shuffle as one interleaving copy. Same outputs as the
    trained block up to float rounding, for any memory format of the input."""

    def __init__(
        self,
        shortcut: Optional[NHWCConvChain],
        main: NHWCConvChain,
        se: Optional[nn.Module] = None,
        residual: bool = False,
        channel_order: Optional[Tensor] = None,
    ) -> None:
        super().__init__()
        self.branch1 = shortcut  # None: stride 1, the shortcut is the input's first half
        self.branch2 = main
        self.se = se
        self.residual = residual
        self.register_buffer("channel_order", channel_order, persistent=False)

    @classmethod
    def from_block(cls, block: ShuffleV2Block) -> "FusedShuffleV2Block":
        return cls(
            NHWCConvChain.from_sequential(block.branch1) if block.stride == 2 else None,
            NHWCConvChain.from_sequential(block.branch2),
            copy.deepcopy(block.se),
            block.residual,
            block.channel_order,
        ).eval()

    def forward(self, x: Tensor) -> Tensor:
        xh = _nhwc(x)
        if self.branch1 is None:
            half = xh.shape[-1] // 2
            short, main_in = xh[..., :half], xh[..., half:]
        else:
            short, main_in = self.branch1(xh), xh
        main = self.branch2(main_in)
        if self.se is not None:
            main = _nhwc(self.se(_nchw(main)))
        if self.residual:
            main = main + main_in
        if self.channel_order is not None:  # uneven stride-2 split: the release's channel order
            return _nchw(torch.cat((short, main), dim=-1).index_select(-1, self.channel_order))
        return _nchw(torch.stack((short, main), dim=-1).flatten(-2))

    def extra_repr(self) -> str:
        return f"stride={1 if self.branch1 is None else 2}, residual={self.residual}"
