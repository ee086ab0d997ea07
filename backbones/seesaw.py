"""SeesawNet (Zhang, 2019): MobileNet v2's macro structure with *uneven* group 1x1 convs.

The Seesaw block replaces both dense 1x1 convs of an inverted residual by two-group convs
whose groups are split unevenly instead of 1:1. Cross-group information flow comes either
from a 2-group channel shuffle between the expansion and the depthwise conv (Seesaw-shuffle),
or, with no permutation at all, from a *mirrored* second split (Seesaw-share): the
projection groups are cut big:small while the expansion groups were cut small:big, so the
group boundaries no longer line up and the big projection reads the whole small expansion
group and part of the big one.

The two networks differ in more than the wiring (`SEESAW_SHUFFLE`, `SEESAW_SHARE`):

* Seesaw-shuffleNet splits 1:3 and uses even 2-group convs in blocks whose input has 160 or
  more channels ("even-block" in Table 2 of the paper); widths are Table 2's.
* Seesaw-shareNet (Sec. 6.1): "minimum modification to super parameters (e.g. channels) of
  Seesaw-shuffleNet so that all channels of point-wise convolutions could be divided into 2
  partitions in a ratio of 1:2". All its pointwise convs are split 1:2 (no even blocks), and
  its widths are multiples of 3: stem 33, then 15, 24, 33, 63, 96, 162, 318. The paper gives
  only CIFAR figures for it (Tables 3-4, "v1"); this table reproduces them (181.4M MACs,
  2.42M params at 32x32 for 1.0D, paper 181M / 2.4M; 108.3M / 1.48M for 0.5D, paper 108M /
  1.5M). The authors' code has no Seesaw-share at all; the same widths with even blocks kept
  for 160+ input channels give the paper's "v0" figures (174.2M / 2.31M, paper 175M / 2.3M),
  which is what pins 160 -> 162 and 320 -> 318 rather than the nearer 159 / 321.

Wiring of one block (``C`` in, ``C'`` out, hidden ``h = t*C``, split ``small:big``), as the
project reference (``architectures.md``, SeesawNet section, which follows the authors' public
code) states it for 1:3::

    x --split [small | big]--> pw groups (-> t*small | t*big) --concat--> BN        (no ReLU)
      --[shuffle: channel_shuffle(., 2)]--> 3x3 dw (stride) + BN + ReLU6
      --split [small | big] (shuffle)  or  [big | small] (share, mirrored)-->
      pw-linear groups (-> small' | big') --concat [small' | big']--> BN  (+ x if stride 1 and C == C')

The projection outputs are always concatenated in the canonical ``[small | big]`` layout
(the layout the next block splits), so in Seesaw-share the *small* output group is
computed from the last part of the hidden features, which come from the big input
group: with the identity shortcut this crosses groups even in even (1:1) blocks.

Channel counts not divisible by ``1 + ratio`` (only reachable when `SeesawBlock` is used on
its own or with a width multiplier; `SeesawNet` rounds every width to a multiple of the
network's divisor, 8 for shuffle and 3 for share): the small group gets
``max(1, C // (1 + ratio))`` channels and the big one the rest, for inputs, hidden features and
outputs alike; even blocks give the first group ``C // 2``. Seesaw-shuffle needs an even
hidden width (a 2-group shuffle) and says so otherwise.

The paper's Table 2 expansion for the first block is t=1; unlike MobileNet v2 (which
drops the expansion conv when t=1), the Seesaw block keeps its 1x1 uneven expansion
(Table 1 has no special case). That is what reproduces the reference figures
(361.0M MACs / 3.64M params for Seesaw-shuffleNet 1.0D; dropping it would give 352.9M).

``downsampling=4`` builds the authors' CIFAR network (cvtower/SeesawNet_pytorch,
cifar_test/79.26_seesaw_shuffle_1.0d/seesaw_shuffle_1.0d.py: ``downsampling == 4`` sets the
first conv and the c=24 row to stride 1, and that file keeps the c=160 row at stride 1), the
setting of the paper's CIFAR tables; it reproduces Seesaw-shuffleNet's CIFAR-10 figures
(181.1M / 2.38M for 1.0D, paper 181M / 2.4M).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .base import Backbone, Stage
from .fast.fold import BatchNorm, bn_scale_shift, fuse_conv_affine
from .layers import channel_shuffle, conv_bn, make_divisible
from .registry import PaperFigures, register_variant

__all__ = [
    "SeesawBlock",
    "SeesawNet",
    "SeesawSpec",
    "SEESAW_SETTING",
    "SEESAW_SHUFFLE",
    "SEESAW_SHARE",
    "CIFAR_FIGURES",
    "seesaw_split",
    "EVEN_BLOCK_MIN_CHANNELS",
]

#: (t, c, n for 1.0D, n for 0.5D, s) rows of Table 2 of the paper.
SEESAW_SETTING: Tuple[Tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 1, 1),
    (6, 24, 4, 2, 2),
    (6, 32, 6, 3, 2),
    (6, 64, 8, 4, 2),
    (6, 96, 6, 3, 1),
    (6, 160, 6, 3, 2),
    (6, 320, 1, 1, 1),
)
#: Seesaw-shuffleNet: blocks whose *input* has at least this many channels use even 2-group 1x1 convs.
EVEN_BLOCK_MIN_CHANNELS = 160


@dataclass(frozen=True)
class SeesawSpec:
    """What distinguishes the two networks besides the block wiring (see the module docstring).

    ``stem`` and ``channels`` (the c column of Table 2, one per row) are the 1.0 widths;
    ``divisor`` is what every width is rounded to under a width multiplier; ``ratio`` is
    big:small of the uneven splits; blocks whose input has ``even_block_min_channels`` or
    more channels use even 1:1 groups (``None``: no even blocks).
    """

    stem: int
    channels: Tuple[int, ...]
    divisor: int
    ratio: int
    even_block_min_channels: Optional[int]


SEESAW_SHUFFLE = SeesawSpec(32, tuple(row[1] for row in SEESAW_SETTING), 8, 3, EVEN_BLOCK_MIN_CHANNELS)
SEESAW_SHARE = SeesawSpec(33, (15, 24, 33, 63, 96, 162, 318), 3, 2, None)
_SPECS = {"shuffle": SEESAW_SHUFFLE, "share": SEESAW_SHARE}
#: Which rows of the table make up each stage after the stem (the stem holds row 0), as
#: in `backbones.mobilenet_v2` so both families expose the same stage names and strides.
_STAGE_ROWS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("stage2", (1,)),
    ("stage3", (2,)),
    ("stage4", (3, 4)),
    ("stage5", (5, 6)),
)
_DEPTHS = {"1.0d": 2, "0.5d": 3}  # column of SEESAW_SETTING holding n
#: ``downsampling`` -> strides of (stem conv, c=24 row, c=160 row); the other rows keep Table 2's.
_ROW_STRIDES = {32: (2, 2, 2), 4: (1, 1, 1)}


def seesaw_split(channels: int, even: bool = False, ratio: int = 3) -> Tuple[int, int]:
    """Sizes ``(small, big)`` of a ``1:ratio`` split (1:1 when ``even``).

    Exact for multiples of ``1 + ratio`` (2); otherwise the small group gets the floor, at
    least one channel, so neither group is ever empty.
    """
    if channels < 2:
        raise ValueError(f"a Seesaw split needs at least 2 channels, got {channels}")
    if ratio < 1:
        raise ValueError(f"a Seesaw split ratio must be at least 1, got {ratio}")
    small = channels // 2 if even else max(1, channels // (1 + ratio))
    return small, channels - small


class _GroupedPointwise(nn.Module):
    """Two independent 1x1 convs on the two parts of a channel split, concatenated.

    An uneven split cannot be expressed with ``nn.Conv2d(groups=2)`` (which needs equal
    groups), so each group is its own conv. ``in_split``/``out_split`` list the channel
    counts consumed/produced by group 0 then group 1; ``out_order`` says in which order
    the outputs are concatenated (``(0, 1)`` or ``(1, 0)``).
    """

    def __init__(self, in_split: Tuple[int, int], out_split: Tuple[int, int], out_order: Tuple[int, int] = (0, 1)) -> None:
        super().__init__()
        self.in_split = tuple(in_split)
        self.out_order = tuple(out_order)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 1, bias=False) for i, o in zip(in_split, out_split))

    def forward(self, x: Tensor) -> Tensor:
        parts = torch.split(x, list(self.in_split), dim=1)
        outs = [conv(p) for conv, p in zip(self.convs, parts)]
        return torch.cat([outs[i] for i in self.out_order], dim=1)

    def fold_bn(self, bn: BatchNorm) -> None:
        """Fold the BN applied to this module's concatenated output into its convs."""
        scale, shift = bn_scale_shift(bn)
        start = 0
        for i in self.out_order:
            n = self.convs[i].out_channels
            self.convs[i] = fuse_conv_affine(self.convs[i], scale[start : start + n], shift[start : start + n])
            start += n

    def extra_repr(self) -> str:
        return f"in_split={self.in_split}, out_order={self.out_order}"


class SeesawBlock(nn.Module):
    """One Seesaw block (uneven ``1:ratio``, or even 1:1 when ``even``).

    Args:
        in_channels, out_channels: block widths.
        stride: stride of the depthwise conv (1 or 2).
        expand_ratio: t; hidden width is ``round(in_channels * t)``.
        mode: ``"shuffle"`` (2-group channel shuffle after the expansion) or ``"share"``
            (no shuffle, mirrored second split).
        even: use 1:1 groups (the paper's "even-block", for 160+ input channels).
        ratio: big:small of the uneven splits (3 for Seesaw-shuffleNet, 2 for Seesaw-shareNet).

    Attributes ``in_split``, ``hidden_split`` and ``out_split`` record the group sizes
    (small, big); ``proj_in_split`` the hidden channels fed to the small and the big
    projection in the order they are sliced.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        mode: str = "shuffle",
        even: bool = False,
        ratio: int = 3,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if mode not in ("shuffle", "share"):
            raise ValueError(f"mode must be 'shuffle' or 'share', got {mode!r}")
        hidden = int(round(in_channels * expand_ratio))
        if mode == "shuffle" and hidden % 2:
            raise ValueError(
                f"Seesaw-shuffle needs an even hidden width for its 2-group shuffle; "
                f"{in_channels} x {expand_ratio} = {hidden}"
            )
        self.mode = mode
        self.even = even
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.ratio = ratio
        self.in_split = seesaw_split(in_channels, even, ratio)
        self.hidden_split = seesaw_split(hidden, even, ratio)
        self.out_split = seesaw_split(out_channels, even, ratio)
        # shuffle: hidden [small | big] -> projections (small, big), concatenated as is.
        # share: hidden sliced [big | small] (mirrored), outputs re-ordered to [small | big].
        if mode == "shuffle":
            self.proj_in_split = self.hidden_split
            proj_in, proj_out, order = self.hidden_split, self.out_split, (0, 1)
        else:
            small_h, big_h = self.hidden_split
            self.proj_in_split = (big_h, small_h)
            proj_in, proj_out, order = (big_h, small_h), (self.out_split[1], self.out_split[0]), (1, 0)

        self.expand = _GroupedPointwise(self.in_split, self.hidden_split)  # pw (uneven groups)
        self.expand_bn = nn.BatchNorm2d(hidden)  # linear: no ReLU (IGCV3 / paper Table 2 caption)
        self.dw = conv_bn(hidden, hidden, 3, stride=stride, groups=hidden, activation=nn.ReLU6)  # dw
        self.project = _GroupedPointwise(proj_in, proj_out, order)  # pw-linear (uneven groups)
        self.project_bn = nn.BatchNorm2d(out_channels)

    #: conv -> BN pairs that `backbones.fast.fold_batchnorms` folds for inference
    conv_bn_pairs = (("expand", "expand_bn"), ("project", "project_bn"))

    def forward(self, x: Tensor) -> Tensor:
        out = self.expand_bn(self.expand(x))
        if self.mode == "shuffle":
            out = channel_shuffle(out, 2)
        out = self.project_bn(self.project(self.dw(out)))
        if self.use_res_connect:
            out = out + x
        return out

    def extra_repr(self) -> str:
        split = "1:1" if self.even else f"1:{self.ratio}"
        return f"mode={self.mode}, split={split}, stride={self.stride}, residual={self.use_res_connect}"


class SeesawNet(Backbone):
    """SeesawNet backbone (Seesaw-shuffleNet / Seesaw-shareNet).

    Args:
        depth: ``"1.0d"`` (n = 1,4,6,8,6,6,1) or ``"0.5d"`` (n = 1,2,3,4,3,3,1).
        mode: ``"shuffle"`` (Seesaw-shuffleNet, `SEESAW_SHUFFLE`) or ``"share"``
            (Seesaw-shareNet, `SEESAW_SHARE`); see `SeesawBlock` and the module docstring.
        width_mult: scales every width (rounded to a multiple of the network's divisor, as
            MobileNet v2 rounds to 8); the paper only uses 1.0. The last 1x1 conv keeps 1280
            channels unless width > 1.
        downsampling: 32 (ImageNet, Table 2's strides) or 4 (the authors' CIFAR network).
        out_features, freeze_at: see `Backbone`.
        in_channels: input image channels.

    Stages: ``stem`` (s2: first conv + the t=1 block), ``stage2`` (s4), ``stage3`` (s8),
    ``stage4`` (s16: the c=64 and c=96 blocks), ``stage5`` (s32: c=160 and c=320 blocks),
    ``conv_last`` (1x1 -> 1280, s32), exactly as `backbones.mobilenet_v2` (strides 1, 1, 2,
    4, 4, 4 with ``downsampling=4``).
    """

    def __init__(
        self,
        depth: str = "1.0d",
        mode: str = "shuffle",
        width_mult: float = 1.0,
        downsampling: int = 32,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth.lower() not in _DEPTHS:
            raise ValueError(f"depth must be one of {sorted(_DEPTHS)}, got {depth!r}")
        if mode not in _SPECS:
            raise ValueError(f"mode must be one of {sorted(_SPECS)}, got {mode!r}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        if downsampling not in _ROW_STRIDES:
            raise ValueError(f"downsampling must be one of {sorted(_ROW_STRIDES)}, got {downsampling}")

        spec = _SPECS[mode]
        n_col = _DEPTHS[depth.lower()]
        stem_stride, row1_stride, row5_stride = _ROW_STRIDES[downsampling]
        strides = [row[4] for row in SEESAW_SETTING]
        strides[1], strides[5] = row1_stride, row5_stride
        stem_width = make_divisible(spec.stem * width_mult, spec.divisor)
        last = make_divisible(1280 * max(1.0, width_mult), 8)

        def even(cin: int) -> bool:
            return spec.even_block_min_channels is not None and cin >= spec.even_block_min_channels

        def blocks(r: int, in_ch: int) -> Tuple[List[nn.Module], int]:
            t, n, s = SEESAW_SETTING[r][0], SEESAW_SETTING[r][n_col], strides[r]
            out = make_divisible(spec.channels[r] * width_mult, spec.divisor)
            mods: List[nn.Module] = []
            for i in range(n):
                cin = in_ch if i == 0 else out
                mods.append(SeesawBlock(cin, out, s if i == 0 else 1, t, mode, even=even(cin), ratio=spec.ratio))
            return mods, out

        first, width = blocks(0, stem_width)
        stem = nn.Sequential(conv_bn(in_channels, stem_width, 3, stride=stem_stride, activation=nn.ReLU6), *first)
        stride = stem_stride * strides[0]
        stages = [Stage("stem", stem, width, stride)]
        for name, rows in _STAGE_ROWS:
            mods: List[nn.Module] = []
            for r in rows:
                row_blocks, width = blocks(r, width)
                mods += row_blocks
                stride *= strides[r]
            stages.append(Stage(name, nn.Sequential(*mods), width, stride))
        stages.append(Stage("conv_last", conv_bn(width, last, 1, activation=nn.ReLU6), last, stride))
        self.depth = depth.lower()
        self.mode = mode
        self._init_stages(stages, out_features, freeze_at)
        self._init_weights()

    def _init_weights(self) -> None:
        """MobileNet v2-style initialisation (Kaiming fan-out convs, unit BN)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


# ----------------------------------------------------------------- registration
_SOURCE = "SeesawNet (Zhang 2019), Table 5"
for _mode in ("shuffle", "share"):
    for _depth in ("0.5d", "1.0d"):
        _paper = None
        if _mode == "shuffle" and _depth == "1.0d":
            _paper = PaperFigures(macs=361e6, params=3.6e6, top1_error=27.1, source=_SOURCE)
        register_variant(
            f"seesaw_{_mode}_{_depth}",
            SeesawNet,
            family="seesaw",
            paper=_paper,
            depth=_depth,
            mode=_mode,
        )

#: The paper's CIFAR figures (32x32 input, ``downsampling=4``), the only ones it gives for
#: Seesaw-shareNet: variant -> {number of classes: figures}. Tables 3 (CIFAR-10) and 4
#: (CIFAR-100), rows "Seesaw-shuffleNet" and "Seesaw-shareNet(v1 ...)"; error = 100 - top-1.
CIFAR_FIGURES: Dict[str, Dict[int, PaperFigures]] = {
    name: {
        10: PaperFigures(macs=macs, params=p10, top1_error=round(100 - acc10, 2), source="SeesawNet, Table 3 (CIFAR-10)"),
        100: PaperFigures(macs=macs, params=p100, top1_error=round(100 - acc100, 2), source="SeesawNet, Table 4 (CIFAR-100)"),
    }
    for name, (macs, p10, acc10, p100, acc100) in {
        "seesaw_shuffle_1.0d": (181e6, 2.4e6, 95.28, 2.5e6, 79.26),
        "seesaw_shuffle_0.5d": (108e6, 1.5e6, 95.10, 1.6e6, 77.82),
        "seesaw_share_1.0d": (181e6, 2.4e6, 95.20, 2.5e6, 78.73),
        "seesaw_share_0.5d": (108e6, 1.5e6, 94.80, 1.6e6, 77.84),
    }.items()
}
#: Input side and ``downsampling`` of the CIFAR networks those figures are for.
CIFAR_INPUT_SIZE = 32
CIFAR_DOWNSAMPLING = 4
