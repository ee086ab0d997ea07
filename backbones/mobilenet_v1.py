"""MobileNet v1 (Howard et al., 2017), the baseline of the ShuffleNet and FD-MobileNet papers.

Also home of `DepthwiseSeparableNet`, the "stem conv + stacked depthwise-separable blocks"
skeleton that FD-MobileNet (`backbones.fd_mobilenet`) shares: the two networks differ only in
where they downsample, so each is a table of ``(channels, stride)`` per stage.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence, Tuple

from torch import nn

from .base import Backbone, Stage
from .layers import conv_bn
from .registry import PaperFigures, register_variant, width_tag

__all__ = [
    "DepthwiseSeparable",
    "DepthwiseSeparableNet",
    "MobileNetV1",
    "MOBILENET_V1_STAGES",
    "StageSpec",
    "scale_width",
]

#: ``(stage name, ((out channels, stride), ...))``; the stem conv is prepended to the first stage.
StageSpec = Sequence[Tuple[str, Sequence[Tuple[int, int]]]]

#: Table 1 of the MobileNet paper. The stride-1 64-channel block runs at the stem's
#: resolution, so it belongs to the ``stem`` stage (stride 2).
MOBILENET_V1_STAGES: StageSpec = (
    ("stem", ((64, 1),)),
    ("stage2", ((128, 2), (128, 1))),
    ("stage3", ((256, 2), (256, 1))),
    ("stage4", ((512, 2),) + ((512, 1),) * 5),
    ("stage5", ((1024, 2), (1024, 1))),
)


def scale_width(channels: int, width_mult: float, min_channels: int = 8) -> int:
    """``channels * width_mult`` truncated, at least ``min_channels``.

    The TF-slim reference (``depth = max(int(d * depth_multiplier), 8)``) rounds this way;
    every width the papers use (0.25x-1x) gives whole numbers anyway.
    """
    return max(min_channels, int(channels * width_mult))


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv + BN + ReLU (carries the stride), then 1x1 conv + BN + ReLU.

    Children are ``dw`` and ``pw``, each a `conv_bn` triple (conv ``.0``, BN ``.1``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        super().__init__(
            OrderedDict(
                dw=conv_bn(in_channels, in_channels, 3, stride, groups=in_channels),  # dw
                pw=conv_bn(in_channels, out_channels, 1),  # pw
            )
        )
        self.stride = stride


class DepthwiseSeparableNet(Backbone):
    """A 3x3 stride-2 stem conv followed by `DepthwiseSeparable` blocks grouped into stages.

    Every stage is an ``nn.Sequential``; the first one starts with the stem conv (index 0).
    ``width_mult`` scales every layer, the stem included, with `scale_width` (no layer
    narrower than ``min_channels``).
    """

    def __init__(
        self,
        stage_specs: StageSpec,
        stem_channels: int = 32,
        width_mult: float = 1.0,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        in_channels: int = 3,
        min_channels: int = 8,
    ) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"{type(self).__name__}: width_mult must be positive, got {width_mult}")
        if min_channels < 1:
            raise ValueError(f"{type(self).__name__}: min_channels must be at least 1, got {min_channels}")
        prev = scale_width(stem_channels, width_mult, min_channels)
        stride = 2
        layers = [conv_bn(in_channels, prev, 3, stride=2)]
        stages = []
        for name, blocks in stage_specs:
            for channels, block_stride in blocks:
                out = scale_width(channels, width_mult, min_channels)
                layers.append(DepthwiseSeparable(prev, out, block_stride))
                prev, stride = out, stride * block_stride
            stages.append(Stage(name, nn.Sequential(*layers), prev, stride))
            layers = []
        self._init_stages(stages, out_features, freeze_at)


class MobileNetV1(DepthwiseSeparableNet):
    """MobileNet v1. Stages: ``stem`` (stem conv + first block, s2), ``stage2`` (s4),
    ``stage3`` (s8), ``stage4`` (s16), ``stage5`` (s32).

    ``min_channels``: the narrowest layer; TF-slim's 8 by default. Only below 0.25x does it
    matter: the FD-MobileNet authors' 0.125x baseline truncates without a floor (stem 4).
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        in_channels: int = 3,
        min_channels: int = 8,
    ) -> None:
        super().__init__(MOBILENET_V1_STAGES, 32, width_mult, out_features, freeze_at, in_channels, min_channels)


# ----------------------------------------------------------------- registration
#: MobileNet paper, Table 7 (multiply-adds; only the 1.0 parameter count is matched within 5%
#: by the definition, the rounded smaller ones are not). Top-1 errors from the same table.
_PAPER = {
    1.0: PaperFigures(macs=569e6, params=4.2e6, top1_error=29.4, source="MobileNet v1, Table 7"),
    0.75: PaperFigures(macs=325e6, top1_error=31.6, source="MobileNet v1, Table 7"),
    0.5: PaperFigures(macs=149e6, top1_error=36.3, source="MobileNet v1, Table 7"),
    0.25: PaperFigures(macs=41e6, top1_error=49.4, source="MobileNet v1, Table 7"),
}

for _width, _paper in _PAPER.items():
    register_variant(
        f"mobilenet_v1_{width_tag(_width)}", MobileNetV1, family="mobilenet_v1", paper=_paper, width_mult=_width
    )

#: The FD-MobileNet paper's 12-MFLOP baseline (Table 2: 12 MFLOPs, 39.6% top-1; Table 3: 29.1
#: VOC07 mAP), which it re-implemented. Widths as the authors' code computes them
#: (qinzheng93/FD-MobileNet, pyvision/models/ImageNet/MobileNet.py lines 62-63:
#: ``int(32 * width_mul)``, ``int(x * width_mul)``, no floor): stem 4 channels. TF-slim's
#: floor of 8 would give 14.3M MACs instead of 12.1M.
register_variant(
    "mobilenet_v1_0.125x",
    MobileNetV1,
    family="mobilenet_v1",
    paper=PaperFigures(macs=12e6, top1_error=60.4, source="FD-MobileNet, Table 2"),
    width_mult=0.125,
    min_channels=1,
)
