"""ShuffleNet v1 (Zhang et al., CVPR 2018), its SE variant and the "Xception-like" g=1 baseline.

Module names follow the authors' released code (megvii-model/ShuffleNet-Series,
``ShuffleNetV1``): each unit has ``branch_main_1`` (pw, BN, ReLU, dw, BN), ``branch_main_2``
(pw-linear, BN) and, when it downsamples, ``branch_proj`` (the average-pooled shortcut);
the stem is ``first_conv`` + ``maxpool``. Their ``first_conv.*`` / ``features.<i>.*`` keys
therefore map onto ``stages.stem.first_conv.*`` / ``stages.stage<k>.<j>.*`` by renaming alone.

The channel shuffle is applied where and how the released code applies it (after the
depthwise conv, viewing the channels as ``(C/g, g)`` before transposing), not literally as the
paper words it (before the depthwise conv, viewing them as ``(g, C/g)``). Depthwise conv and BN
act per channel, so the position only relabels their channels; the two views are inverse
permutations, both of which interleave the groups. Layers, parameters and MACs are identical;
only the released code's variant lets its checkpoints load key for key *and* compute the
function they were trained as.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .base import Backbone, Stage
from .layers import SqueezeExcite, channel_shuffle, conv_bn
from .registry import PaperFigures, register_variant, width_tag

__all__ = [
    "ShuffleV1Block",
    "ShuffleNetV1",
    "stage_widths",
    "shufflenet_layout",
    "unit_branch_width",
    "merge_with_shortcut",
    "BASE_STAGE_WIDTHS",
    "STEM_WIDTHS",
]

#: Table 1 of the paper: output widths of Stage2-4 at 1x, per number of groups g.
BASE_STAGE_WIDTHS: Dict[int, Tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
#: Stem width per width multiplier. The paper keeps 24; the released code (whose widths
#: reproduce the paper's MFLOPs) scales it to 12 at 0.5x and 48 at 2x but keeps 24 at 1.5x.
#: 0.25x continues the halving. `stage_widths` then rounds it up to a multiple of g.
STEM_WIDTHS: Dict[float, int] = {0.25: 6, 0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
STAGE_REPEATS = (4, 8, 4)
#: Squeeze-and-Excitation reduction. SENet's r=16 gives the paper's 2x+SE cost (527 vs
#: 524 MFLOPs, measured 526.5M); r=4 would measure 533.8M.
SE_REDUCTION = 16


def _round_to_multiple(value: float, divisor: int) -> int:
    """Nearest multiple of ``divisor`` (ties upward, never below ``divisor``)."""
    return max(divisor, int(value / divisor + 0.5) * divisor)


def stage_widths(groups: int, width_mult: float) -> Tuple[int, int, int, int]:
    """Widths of (stem, stage2, stage3, stage4) for ``groups`` and ``width_mult``.

    Stage widths are the paper's Table 1 times ``width_mult``, rounded to the nearest
    multiple of ``4 * groups``: the bottleneck (1/4 of the width) must split into ``groups``
    equal groups. The stem is rounded *up* to a multiple of ``groups``, because the first
    unit's pw-linear outputs ``stage2 - stem`` channels in ``groups`` groups (this is what
    makes the released code use a 16-channel stem for 0.5x g=8).
    """
    if groups not in BASE_STAGE_WIDTHS:
        raise ValueError(f"ShuffleNet v1: groups must be one of {sorted(BASE_STAGE_WIDTHS)}, got {groups}")
    if width_mult not in STEM_WIDTHS:
        raise ValueError(f"ShuffleNet v1: width_mult must be one of {sorted(STEM_WIDTHS)}, got {width_mult}")
    stem = -(-STEM_WIDTHS[width_mult] // groups) * groups
    s2, s3, s4 = (_round_to_multiple(w * width_mult, 4 * groups) for w in BASE_STAGE_WIDTHS[groups])
    return stem, s2, s3, s4


def shufflenet_layout(
    in_channels: int,
    stem_width: int,
    widths: Sequence[int],
    repeats: Sequence[int],
    make_unit: Callable[[int, int, int, int], nn.Module],
) -> List[Stage]:
    """The ShuffleNet macro structure: a ``stem`` of ``first_conv`` (3x3 conv stride 2 + BN +
    ReLU) and a 3x3 stride-2 ``maxpool`` (stride 4), then ``stage2``, ``stage3``, ... with one
    width each (stride 8, 16, ...), of ``repeats`` units whose first has stride 2.
    ``make_unit(stage_index, in_channels, out_channels, stride)`` builds a unit."""
    stem = nn.Sequential(
        OrderedDict(
            first_conv=conv_bn(in_channels, stem_width, 3, stride=2),
            maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
    )
    stages = [Stage("stem", stem, stem_width, 4)]
    prev, stride = stem_width, 4
    for i, (count, width) in enumerate(zip(repeats, widths)):
        stride *= 2
        units = [make_unit(i, prev, width, 2)] + [make_unit(i, width, width, 1) for _ in range(count - 1)]
        stages.append(Stage(f"stage{i + 2}", nn.Sequential(*units), width, stride))
        prev = width
    return stages


def unit_branch_width(in_channels: int, out_channels: int, stride: int) -> int:
    """Output width of a ShuffleNet v1-style unit's main branch: ``out_channels`` at stride 1
    (added to the input), ``out_channels - in_channels`` at stride 2 (concatenated with the
    pooled input). Raises ValueError for another stride or unequal stride-1 widths."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    if stride == 1 and in_channels != out_channels:
        raise ValueError(f"stride-1 unit needs in == out channels, got {in_channels} -> {out_channels}")
    return out_channels - in_channels if stride == 2 else out_channels


def merge_with_shortcut(x: Tensor, branch: Tensor, pool: Optional[nn.Module]) -> Tensor:
    """ReLU of the main ``branch`` plus the input ``x`` (no ``pool``: stride 1), or of the
    stride-2 ``pool(x)`` concatenated with it."""
    if pool is None:
        return torch.relu(branch + x)
    return torch.relu(torch.cat((pool(x), branch), dim=1))


class ShuffleV1Block(nn.Module):
    """One ShuffleNet unit (Figure 2b/c of the paper).

    Residual branch: 1x1 group conv (to ``out_channels // 4``) + BN + ReLU, 3x3 depthwise
    (carries the stride) + BN without ReLU (following Xception), channel shuffle, 1x1 group
    conv + BN, optional SE. Stride 1: add the input, then ReLU. Stride 2: the shortcut is a
    3x3 average pool, the branch only produces ``out_channels - in_channels`` channels, and the
    two are concatenated, then ReLU -- widening costs almost nothing.

    ``dense_first_pw=True`` makes the first 1x1 conv ungrouped: the paper does this for the
    first Stage2 unit, whose input (the stem) is too narrow to split into groups. (The
    released code calls this flag ``first_group``.)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        groups: int,
        dense_first_pw: bool = False,
        use_se: bool = False,
    ) -> None:
        super().__init__()
        branch_out = unit_branch_width(in_channels, out_channels, stride)
        mid = out_channels // 4
        pw_groups = 1 if dense_first_pw else groups
        for what, n, div in (
            ("bottleneck width (out_channels / 4)", mid, groups),
            ("residual-branch width", branch_out, groups),
            ("in_channels", in_channels, pw_groups),
        ):
            if n <= 0 or n % div:
                raise ValueError(
                    f"ShuffleV1Block({in_channels}->{out_channels}, stride={stride}, groups={groups}): "
                    f"{what} = {n} must be a positive multiple of {div}"
                )
        self.stride = stride
        self.groups = groups

        self.branch_main_1 = nn.Sequential(
            # pw
            nn.Conv2d(in_channels, mid, 1, bias=False, groups=pw_groups),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            # dw
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
        )
        self.branch_main_2 = nn.Sequential(
            # pw-linear
            nn.Conv2d(mid, branch_out, 1, bias=False, groups=groups),
            nn.BatchNorm2d(branch_out),
        )
        self.se = SqueezeExcite(branch_out, reduction=SE_REDUCTION) if use_se else None
        self.branch_proj = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch_main_1(x)
        if self.groups > 1:
            # The released code's shuffle: channels viewed as (C/g, g), transposed. With
            # layers.channel_shuffle that is a shuffle "in C/g groups" (see module docstring).
            out = channel_shuffle(out, out.shape[1] // self.groups)
        out = self.branch_main_2(out)
        if self.se is not None:
            out = self.se(out)
        return merge_with_shortcut(x, out, self.branch_proj)


class ShuffleNetV1(Backbone):
    """ShuffleNet v1 backbone. Stages: ``stem`` (conv 3x3 s2 + max-pool, s4), ``stage2`` (s8),
    ``stage3`` (s16), ``stage4`` (s32). There is no final 1x1 conv: the classifier pools
    ``stage4`` directly.

    Args:
        groups: groups of the pointwise convs (1, 2, 3, 4 or 8). ``groups=1`` is the paper's
            "Xception-like" baseline (no group conv, no shuffle).
        width_mult: the paper's scale factor s (0.25, 0.5, 1.0, 1.5 or 2.0).
        use_se: gate each unit's residual branch with Squeeze-and-Excitation.
    """

    def __init__(
        self,
        groups: int = 3,
        width_mult: float = 1.0,
        use_se: bool = False,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        stem_width, *widths = stage_widths(groups, width_mult)
        self.groups = groups

        def unit(stage: int, cin: int, cout: int, stride: int) -> ShuffleV1Block:
            dense_first_pw = stage == 0 and stride == 2
            return ShuffleV1Block(cin, cout, stride, groups, dense_first_pw=dense_first_pw, use_se=use_se)

        stages = shufflenet_layout(in_channels, stem_width, widths, STAGE_REPEATS, unit)
        self._init_stages(stages, out_features, freeze_at)


# ----------------------------------------------------------------- registration
_SOURCE = "ShuffleNet v1"
#: Table 1 (1x complexity per g) and Tables 2/5 (g=3 errors; 2x+SE): MACs, top-1 error.
_PAPER: Dict[Tuple[int, float, bool], PaperFigures] = {
    (1, 1.0, False): PaperFigures(macs=143e6, source=f"{_SOURCE}, Table 1"),
    (2, 1.0, False): PaperFigures(macs=140e6, source=f"{_SOURCE}, Table 1"),
    (3, 1.0, False): PaperFigures(macs=137e6, top1_error=32.6, source=f"{_SOURCE}, Tables 1-2"),
    (4, 1.0, False): PaperFigures(macs=133e6, source=f"{_SOURCE}, Table 1"),
    (8, 1.0, False): PaperFigures(macs=137e6, source=f"{_SOURCE}, Table 1"),
    (3, 0.25, False): PaperFigures(top1_error=55.0, source=f"{_SOURCE}, Table 2"),
    (3, 0.5, False): PaperFigures(macs=38e6, top1_error=43.2, source=f"{_SOURCE}, Tables 2, 5"),
    (3, 1.5, False): PaperFigures(macs=292e6, top1_error=28.5, source=f"{_SOURCE}, Table 5"),
    (3, 2.0, False): PaperFigures(macs=524e6, top1_error=26.3, source=f"{_SOURCE}, Table 5"),
    (3, 2.0, True): PaperFigures(macs=527e6, top1_error=24.7, source=f"{_SOURCE}, Table 5 (with SE)"),
}

for _groups in BASE_STAGE_WIDTHS:
    for _width in STEM_WIDTHS:
        for _se in (False, True):
            _name = f"shufflenet_v1_g{_groups}_{width_tag(_width)}" + ("_se" if _se else "")
            _paper = _PAPER.get((_groups, _width, _se))
            _kwargs = dict(groups=_groups, width_mult=_width, use_se=_se)
            register_variant(_name, ShuffleNetV1, family="shufflenet_v1", paper=_paper, **_kwargs)
            if _groups == 1 and not _se:
                register_variant(
                    f"xception_like_{width_tag(_width)}",
                    ShuffleNetV1,
                    family="shufflenet_v1",
                    paper=_paper,
                    alias_of=_name,
                    **_kwargs,
                )
