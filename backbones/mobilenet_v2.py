"""MobileNet v2 (Sandler et al., CVPR 2018), exactly as torchvision defines it.

Same t/c/n/s table, ``make_divisible(.., 8)`` rounding, ReLU6, linear bottlenecks and a
last 1x1 conv of 1280 channels that only grows with the width multiplier (``width > 1``),
as torchvision does. Module names inside each inverted residual (``conv.0`` .. ``conv.3``)
and inside every conv-BN-ReLU6 (``0``/``1``/``2``) are torchvision's, so a torchvision
checkpoint maps onto this backbone by renaming ``features.N`` to the stage that holds block
N (see `FEATURE_TO_STAGE` and `backbones.weights`); no tensor is reshaped or permuted.

Stages (cumulative stride): ``stem`` (s2: first conv + the t=1 block), ``stage2`` (s4),
``stage3`` (s8), ``stage4`` (s16: the c=64 and c=96 blocks), ``stage5`` (s32: c=160 and
c=320 blocks), ``conv_last`` (1x1 -> 1280, s32).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from torch import Tensor, nn

from .base import Backbone, Stage
from .layers import conv_bn, make_divisible
from .registry import PaperFigures, register_variant, width_tag

__all__ = ["InvertedResidual", "MobileNetV2", "INVERTED_RESIDUAL_SETTING", "FEATURE_TO_STAGE", "feature_stage_layout"]

#: (t, c, n, s) rows of Table 2 of the paper (= torchvision's ``inverted_residual_setting``).
INVERTED_RESIDUAL_SETTING: Tuple[Tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: Which rows of the table make up each stage after the stem (the stem holds row 0).
_STAGE_ROWS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("stage2", (1,)),
    ("stage3", (2,)),
    ("stage4", (3, 4)),
    ("stage5", (5, 6)),
)


def feature_stage_layout(
    setting: Sequence[Tuple[int, int, int, int]] = INVERTED_RESIDUAL_SETTING,
) -> Dict[int, Tuple[str, int]]:
    """Map torchvision's ``features.N`` index to ``(stage name, index inside the stage)``.

    Index 0 is the first conv and the t=1 block is index 1 (both in ``stem``); the last
    index is the final 1x1 conv, which *is* the ``conv_last`` stage (index -1 here,
    meaning "the stage module itself, no sub-index").
    """
    layout: Dict[int, Tuple[str, int]] = {0: ("stem", 0), 1: ("stem", 1)}
    n_blocks = [row[2] for row in setting]
    feature = 1 + n_blocks[0]
    for stage, rows in _STAGE_ROWS:
        local = 0
        for r in rows:
            for _ in range(n_blocks[r]):
                layout[feature] = (stage, local)
                feature += 1
                local += 1
    layout[feature] = ("conv_last", -1)
    return layout


#: ``features.N`` -> (stage, index) for the standard table (depth does not change with width).
FEATURE_TO_STAGE: Dict[int, Tuple[str, int]] = feature_stage_layout()


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (torchvision's block, same module names).

    1x1 expansion (t != 1 only) -> 3x3 depthwise (carries the stride) -> 1x1 linear
    projection; identity shortcut when the stride is 1 and the widths match. No ReLU after
    the projection: the paper shows a ReLU in the low-dimensional bottleneck destroys
    information.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn(in_channels, hidden, 1, activation=nn.ReLU6))  # pw
        layers += [
            conv_bn(hidden, hidden, 3, stride=stride, groups=hidden, activation=nn.ReLU6),  # dw
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # pw-linear
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(Backbone):
    """MobileNet v2 backbone (torchvision's definition, split into detection stages).

    Args:
        width_mult: multiplies every width (rounded to a multiple of 8); the final 1x1
            conv keeps 1280 channels for ``width_mult <= 1`` as in the paper/torchvision.
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
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        divisor = 8
        setting = INVERTED_RESIDUAL_SETTING
        prev = make_divisible(32 * width_mult, divisor)
        last = make_divisible(1280 * max(1.0, width_mult), divisor)

        def blocks(row: Tuple[int, int, int, int], in_ch: int) -> Tuple[List[nn.Module], int]:
            t, c, n, s = row
            out = make_divisible(c * width_mult, divisor)
            mods = [InvertedResidual(in_ch if i == 0 else out, out, s if i == 0 else 1, t) for i in range(n)]
            return mods, out

        first, width = blocks(setting[0], prev)
        stem = nn.Sequential(conv_bn(in_channels, prev, 3, stride=2, activation=nn.ReLU6), *first)
        stages = [Stage("stem", stem, width, 2)]
        stride = 2
        for name, rows in _STAGE_ROWS:
            mods: List[nn.Module] = []
            for r in rows:
                row_blocks, width = blocks(setting[r], width)
                mods += row_blocks
                stride *= setting[r][3]
            stages.append(Stage(name, nn.Sequential(*mods), width, stride))
        stages.append(Stage("conv_last", conv_bn(width, last, 1, activation=nn.ReLU6), last, stride))
        self._init_stages(stages, out_features, freeze_at)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation (Kaiming fan-out convs, unit BN), so a model
        trained from scratch here starts where a torchvision one would."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


# ----------------------------------------------------------------- registration
_SOURCE = "MobileNet v2 (Sandler et al. 2018) / torchvision's definition (reference: Baselines)"
#: The ShuffleNet v2 paper's Table 7 compares MobileNet v2 at four complexity levels; 1.0x is
#: the 300 MFLOPs one, the other widths are chosen here with torchvision's rounding (every
#: width to a multiple of 8): 1.3x measures 509.4M (500 level), 0.56x 146.7M (140 level; 0.55x
#: gives 106.7M). Nothing reaches 40M within 5%: 0.27x measures 37.8M, and 0.28x jumps to
#: 55.8M because the c=32 row rounds up from 8 to 16 channels (the 10% rule), so 0.27x is the
#: closest (a documented deviation in tests/backbones/test_fidelity.py).
_LEVEL = "ShuffleNet v2, Table 7 complexity level"
_PAPER = {  # (MACs, params, top-1 error, source) at 224, classifier included; None where no source gives it
    0.27: (40e6, None, None, f"{_LEVEL} (40 MFLOPs)"),
    0.5: (97e6, None, None, _SOURCE),
    0.56: (140e6, None, None, f"{_LEVEL} (140 MFLOPs)"),
    0.75: (209e6, None, None, _SOURCE),
    1.0: (300.8e6, 3.50e6, 28.0, _SOURCE),  # top-1 72.0% (MobileNet v2 paper, repeated in SeesawNet Table 5)
    1.3: (500e6, None, None, f"{_LEVEL} (500 MFLOPs)"),
    1.4: (582e6, 6.1e6, None, _SOURCE),
}

for _width, (_macs, _params, _err, _source) in _PAPER.items():
    register_variant(
        f"mobilenet_v2_{width_tag(_width)}",
        MobileNetV2,
        family="mobilenet_v2",
        paper=PaperFigures(macs=_macs, params=_params, top1_error=_err, source=_source),
        width_mult=_width,
    )
