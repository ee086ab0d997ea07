"""ShuffleNet v2 (Ma et al., ECCV 2018) and its SE, residual and v2* (detection) variants.

Module names follow torchvision's ``ShuffleNetV2`` (``branch1``/``branch2`` Sequentials,
``conv5``), so torchvision checkpoints map by a prefix rename (see `backbones.weights`).

``ShuffleNetV2(shortcut_keeps_input=True)`` builds the network of the authors'
ShuffleNet-Series release (megvii-model/ShuffleNet-Series) instead: there the shortcut of a
stride-2 unit keeps its input width, which differs from torchvision's ``out/2`` only in the
first unit of stage2 at 1.0x/1.5x/2.0x (24 shortcut channels, e.g. 24 + 92 = 116 at 1.0x).
The registered variants use torchvision's layout; pass the option as a build keyword,
``build_backbone("shufflenet_v2_1.0x", shortcut_keeps_input=True)``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from .base import Backbone, Stage
from .layers import SqueezeExcite, conv_bn, interleave_channels
from .registry import PaperFigures, register_variant

__all__ = ["ShuffleV2Block", "ShuffleNetV2", "STAGE_OUT_CHANNELS", "release_channel_order"]

#: Table 5 of the paper: output widths of stem, stage2-4 and conv5, per width multiplier.
STAGE_OUT_CHANNELS: Dict[float, Sequence[int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}
STAGE_REPEATS = (4, 8, 4)


def release_channel_order(channels: int) -> List[int]:
    """Recursive de-interleave of ``range(channels)``: odd positions go to the back half,
    even ones to the front, and the front is de-interleaved again (``[0, 1, 2, 3]`` ->
    ``[0, 2, 1, 3]``).

    The release's stride-1 unit sends the odd channels of its input to the main branch and
    moves the even ones to the front; ours sends the back half. So a channel at position
    ``i = 2**k * (2t + 1)`` of the release's stage is consumed by the ``k+1``-th stride-1
    unit, and so is a channel at position ``order.index(i)`` of ours. A stride-2 unit with
    an uneven split emits ``cat(shortcut, main)[:, order]`` so that each of its channels
    reaches the same later unit as in the release (`backbones.weights` relies on this).
    """
    order = list(range(channels))

    def deinterleave(xs: List[int]) -> List[int]:
        return xs if len(xs) <= 1 else deinterleave(xs[0::2]) + xs[1::2]

    return deinterleave(order)


class ShuffleV2Block(nn.Module):
    """One ShuffleNet v2 unit.

    stride 1: split channels in half; one half passes through, the other goes
    1x1 conv-BN-ReLU, 3x3 depthwise-BN, 1x1 conv-BN-ReLU; concat; shuffle (2 groups).
    stride 2: both branches see the whole input and the width doubles.

    ``extra_dw`` (ShuffleNet v2*) puts a 3x3 depthwise conv + BN before the first 1x1
    of the main branch, enlarging the receptive field for detection. ``use_se`` gates the
    main branch with Squeeze-and-Excitation. ``residual`` (the paper's variant for very deep
    networks) adds the branch input to its output in stride-1 units, as the authors'
    ShuffleNetV2.Large: the branch ends with its last 1x1 conv + BN (no ReLU), SE if any,
    then the add, then a ReLU (the paper's "residual add-ReLUs").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        extra_dw: bool = False,
        use_se: bool = False,
        residual: bool = False,
        shortcut_channels: Optional[int] = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if out_channels % 2:
            raise ValueError(f"out_channels must be even, got {out_channels}")
        branch_channels = out_channels // 2
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"stride-1 unit needs in == out channels, got {in_channels} -> {out_channels}")
        if shortcut_channels is not None:
            if stride != 2:
                raise ValueError(f"shortcut_channels is for stride-2 units only (stride {stride})")
            if not 0 < shortcut_channels < out_channels:
                raise ValueError(f"shortcut_channels must be in (0, {out_channels}), got {shortcut_channels}")
        self.stride = stride
        self.residual = residual and stride == 1
        main_in = in_channels if stride == 2 else branch_channels
        short = branch_channels if shortcut_channels is None else shortcut_channels
        main_out = out_channels - short if stride == 2 else branch_channels
        self.shortcut_channels = short if stride == 2 else 0
        order = release_channel_order(out_channels) if stride == 2 and short != branch_channels else None
        self.register_buffer(
            "channel_order", None if order is None else torch.tensor(order, dtype=torch.long), persistent=False
        )

        if stride == 2:
            self.branch1 = nn.Sequential(
                # dw
                nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                # pw
                nn.Conv2d(in_channels, short, 1, bias=False),
                nn.BatchNorm2d(short),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()

        layers = []
        if extra_dw:
            layers += [
                # dw (v2*: larger receptive field)
                nn.Conv2d(main_in, main_in, 3, 1, 1, groups=main_in, bias=False),
                nn.BatchNorm2d(main_in),
            ]
        layers += [
            # pw
            nn.Conv2d(main_in, branch_channels, 1, bias=False),
            nn.BatchNorm2d(branch_channels),
            nn.ReLU(inplace=True),
            # dw
            nn.Conv2d(branch_channels, branch_channels, 3, stride, 1, groups=branch_channels, bias=False),
            nn.BatchNorm2d(branch_channels),
            # pw-linear; its ReLU (the paper's Figure 3) comes after the add in residual units
            nn.Conv2d(branch_channels, main_out, 1, bias=False),
            nn.BatchNorm2d(main_out),
        ]
        if not self.residual:
            layers.append(nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(*layers)
        self.se = SqueezeExcite(main_out) if use_se else None

    def _main(self, x: Tensor) -> Tensor:
        out = self.branch2(x)
        if self.se is not None:
            out = self.se(out)
        if self.residual:
            out = torch.relu(out + x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            parts = (x1, self._main(x2))
        else:
            parts = (self.branch1(x), self._main(x))
        if self.channel_order is not None:
            return torch.cat(parts, dim=1).index_select(1, self.channel_order)
        return interleave_channels(*parts)  # concat + channel shuffle in one copy


class ShuffleNetV2(Backbone):
    """ShuffleNet v2 backbone. Stages: ``stem`` (s4), ``stage2`` (s8), ``stage3`` (s16),
    ``stage4`` (s32), ``conv5`` (the final 1x1 conv, s32).

    ``shortcut_keeps_input=True`` builds the authors' ShuffleNet-Series release: the shortcut
    of every stride-2 unit keeps its input width (``shortcut_channels=in_channels``, see
    `ShuffleV2Block`). Only stage2's first unit changes, and only at 1.0x/1.5x/2.0x (24
    shortcut channels instead of ``out/2``); at 0.5x and in stages 3-4 the input is already
    ``out/2``. Needed to load those widths' official checkpoints (`backbones.weights`);
    module names are unchanged.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        extra_dw: bool = False,
        use_se: bool = False,
        residual: bool = False,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        in_channels: int = 3,
        shortcut_keeps_input: bool = False,
    ) -> None:
        super().__init__()
        if width_mult not in STAGE_OUT_CHANNELS:
            raise ValueError(f"width_mult must be one of {sorted(STAGE_OUT_CHANNELS)}, got {width_mult}")
        widths = STAGE_OUT_CHANNELS[width_mult]
        self.width_mult = width_mult
        self.shortcut_keeps_input = shortcut_keeps_input
        stem = nn.Sequential(
            OrderedDict(
                conv1=conv_bn(in_channels, widths[0], 3, stride=2),
                maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )
        stages = [Stage("stem", stem, widths[0], 4)]
        prev, stride = widths[0], 4
        for i, (repeats, width) in enumerate(zip(STAGE_REPEATS, widths[1:4])):
            stride *= 2
            shortcut = prev if shortcut_keeps_input else None
            units = [ShuffleV2Block(prev, width, 2, extra_dw, use_se, residual, shortcut_channels=shortcut)]
            units += [ShuffleV2Block(width, width, 1, extra_dw, use_se, residual) for _ in range(repeats - 1)]
            stages.append(Stage(f"stage{i + 2}", nn.Sequential(*units), width, stride))
            prev = width
        stages.append(Stage("conv5", conv_bn(prev, widths[4], 1), widths[4], stride))
        self._init_stages(stages, out_features, freeze_at)


# ----------------------------------------------------------------- registration
_PAPER = {  # Table 5 / Table 8 of the ShuffleNet v2 paper (MACs, params, top-1 error)
    0.5: (41e6, 1.4e6, 39.7),
    1.0: (146e6, 2.3e6, 30.6),
    1.5: (299e6, 3.5e6, 27.4),
    2.0: (591e6, 7.4e6, 25.1),
}

for _width, (_macs, _params, _err) in _PAPER.items():
    _tag = f"{_width:.1f}x"
    register_variant(
        f"shufflenet_v2_{_tag}",
        ShuffleNetV2,
        family="shufflenet_v2",
        paper=PaperFigures(macs=_macs, params=_params, top1_error=_err, source="ShuffleNet v2, Table 5"),
        width_mult=_width,
    )
    register_variant(f"shufflenet_v2_se_{_tag}", ShuffleNetV2, family="shufflenet_v2", width_mult=_width, use_se=True)
    register_variant(f"shufflenet_v2_res_{_tag}", ShuffleNetV2, family="shufflenet_v2", width_mult=_width, residual=True)
    register_variant(f"shufflenet_v2star_{_tag}", ShuffleNetV2, family="shufflenet_v2", width_mult=_width, extra_dw=True)
