"""Light-Head R-CNN's small Xception-like backbone (Li et al. 2017, arXiv 1711.07264).

The "Xception" of the ShuffleNet v2 paper's detection comparison (Table 7 there), which
Light-Head R-CNN uses for its fast "setting S" detector; not the "Xception-like" structure
of the ShuffleNet v1 paper (ShuffleNet v1 with g=1, registered as ``xception_like_*``).

Light-Head R-CNN, Table 7 ("An efficient Xception like architecture for our fast
detector") gives the macro structure only: Conv1 3x3 stride 2 (24 channels), 3x3 max-pool
stride 2, then Stage2 / Stage3 / Stage4 of 1 + 3 / 1 + 7 / 1 + 3 units (the first one
stride 2) with 144 / 288 / 576 output channels, global pool, FC; 145 MFLOPs. The ShuffleNet v2
paper (Sec. 4, object detection) adds that its building blocks have a receptive field of 7
("7 vs. 3"), i.e. three stacked 3x3 depthwise convolutions, the Xception block.

The unit interior is this implementation's reading (neither paper spells it out and no
released code has it; the layout is ShuffleNet v1's, whose widths these are):

* main branch: three 3x3 depthwise-separable convs, each ``dw 3x3 + BN`` then
  ``pw 1x1 + BN (+ ReLU)``, from the input to a bottleneck of 1/4 of the branch's output,
  bottleneck to bottleneck, bottleneck to the branch's output (the Xception block of the
  authors' group, megvii-model/ShuffleNet-Series ``Shuffle_Xception`` / DetNAS ``xception``:
  three ``dw + pw`` pairs, in -> mid -> mid -> out); the first depthwise conv carries the
  stride; the last pointwise conv is linear;
* stride 1: identity shortcut, add, ReLU; stride 2: 3x3 average pool (stride 2) on the
  shortcut, concatenated with a main branch that outputs ``out - in`` channels, ReLU
  (ShuffleNet v1's unit).

This measures 148.5M MACs at 224x224 with the FC (paper 145M, +2.4%). A bottleneck of 1/4
of the *unit's* output in the stride-2 units too (ShuffleNet v1's rule) would measure 155.3M
(+7.1%); hence the bottleneck follows the branch's own output.

Width multipliers: every stage width times ``width_mult``, rounded to a multiple of 8; the
stem keeps 24 channels (as ShuffleNet v2 does). The registered widths put the network at the
ShuffleNet v2 paper's four complexity levels (40 / 140 / 300 / 500 MFLOPs): 0.45x, 1.0x
(Light-Head's own network), 1.45x and 1.9x.

Stages: ``stem`` (conv + max-pool, s4), ``stage2`` (s8), ``stage3`` (s16), ``stage4``
(s32), laid out by `backbones.shufflenet_v1.shufflenet_layout`; no final 1x1 conv (the
classifier pools ``stage4``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from torch import Tensor, nn

from .base import Backbone
from .layers import conv_bn, make_divisible
from .registry import PaperFigures, register_variant, width_tag
from .shufflenet_v1 import merge_with_shortcut, shufflenet_layout, unit_branch_width

__all__ = ["XceptionUnit", "SmallXception", "BASE_STAGE_WIDTHS", "STAGE_REPEATS", "STEM_WIDTH", "stage_widths"]

#: Light-Head R-CNN, Table 7: output channels of Stage2-4 at 1x, units per stage, stem width.
BASE_STAGE_WIDTHS: Tuple[int, int, int] = (144, 288, 576)
STAGE_REPEATS: Tuple[int, int, int] = (4, 8, 4)
STEM_WIDTH = 24
#: Every stage width is a multiple of this, so the bottlenecks (1/4 of a branch) are whole.
WIDTH_DIVISOR = 8


def stage_widths(width_mult: float) -> Tuple[int, int, int]:
    """Stage2-4 widths for ``width_mult`` (Table 7's times the multiplier, multiples of 8)."""
    if not width_mult > 0:
        raise ValueError(f"SmallXception: width_mult must be positive, got {width_mult}")
    return tuple(make_divisible(w * width_mult, WIDTH_DIVISOR) for w in BASE_STAGE_WIDTHS)  # type: ignore[return-value]


class XceptionUnit(nn.Module):
    """One unit: three depthwise-separable convs (receptive field 7) with a shortcut.

    ``branch_main`` is a flat ``nn.Sequential`` of conv / BN (/ ReLU) layers, three
    ``dw, pw`` pairs; ``branch_proj`` is the stride-2 average-pooled shortcut (None at
    stride 1). See the module docstring for the widths.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        branch_out = unit_branch_width(in_channels, out_channels, stride)
        if branch_out <= 0 or branch_out % 4:
            raise ValueError(
                f"XceptionUnit({in_channels}->{out_channels}, stride={stride}): the main branch's "
                f"{branch_out} output channels must be a positive multiple of 4"
            )
        mid = branch_out // 4
        self.stride = stride
        self.branch_main = nn.Sequential(
            *conv_bn(in_channels, in_channels, 3, stride, groups=in_channels, activation=None),  # dw
            *conv_bn(in_channels, mid, 1),  # pw
            *conv_bn(mid, mid, 3, groups=mid, activation=None),  # dw
            *conv_bn(mid, mid, 1),  # pw
            *conv_bn(mid, mid, 3, groups=mid, activation=None),  # dw
            *conv_bn(mid, branch_out, 1, activation=None),  # pw-linear
        )
        self.branch_proj = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None

    def forward(self, x: Tensor) -> Tensor:
        return merge_with_shortcut(x, self.branch_main(x), self.branch_proj)


class SmallXception(Backbone):
    """Light-Head R-CNN's small Xception-like network (see the module docstring).

    Args:
        width_mult: multiplies the stage widths (Table 7's at 1.0); the stem keeps 24.
        out_features, freeze_at: see `Backbone`.
        in_channels: input image channels.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        widths = stage_widths(width_mult)
        stages = shufflenet_layout(
            in_channels, STEM_WIDTH, widths, STAGE_REPEATS, lambda _, cin, cout, stride: XceptionUnit(cin, cout, stride)
        )
        self.width_mult = width_mult
        self._init_stages(stages, out_features, freeze_at)


# ----------------------------------------------------------------- registration
#: width multiplier -> the figure it is checked against: Light-Head R-CNN's own 145M for 1x;
#: the other widths are chosen here to sit at the complexity levels of the ShuffleNet v2
#: paper's Table 7 (which compares "Xception" at 40 / 140 / 300 / 500 MFLOPs).
_LEVEL = "ShuffleNet v2, Table 7 complexity level"
_PAPER: Dict[float, PaperFigures] = {
    0.45: PaperFigures(macs=40e6, source=f"{_LEVEL} (40 MFLOPs)"),
    1.0: PaperFigures(macs=145e6, source="Light-Head R-CNN, Table 7 (145 MFLOPs)"),
    1.45: PaperFigures(macs=300e6, source=f"{_LEVEL} (300 MFLOPs)"),
    1.9: PaperFigures(macs=500e6, source=f"{_LEVEL} (500 MFLOPs)"),
}

for _width, _paper in _PAPER.items():
    register_variant(
        f"small_xception_{width_tag(_width)}", SmallXception, family="small_xception", paper=_paper, width_mult=_width
    )
