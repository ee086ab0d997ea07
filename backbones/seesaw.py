"""SeesawNet (Zhang, 2019): MobileNet v2's macro structure with *uneven* group 1x1 convs.

The Seesaw block replaces both dense 1x1 convs of an inverted residual by two-group convs
whose groups are split 1:3 instead of 1:1. Cross-group information flow comes either from
a 2-group channel shuffle between the expansion and the depthwise conv (Seesaw-shuffle),
or, with no permutation at all, from a *mirrored* second split (Seesaw-share): the
projection groups are cut 3:1 while the expansion groups were cut 1:3, so the group
boundaries no longer line up: the 3/4 projection reads the whole small expansion group
and two thirds of the big one. Blocks whose input has 160 or more channels use even 2-group convs
("even-block" in Table 2 of the paper).

Wiring of one block (``C`` in, ``C'`` out, hidden ``h = t*C``), as the project reference
(``architectures.md``, SeesawNet section, which follows the authors' public code) states it::

    x --split [C/4 | 3C/4]--> pw groups (-> t*C/4 | 3t*C/4) --concat--> BN        (no ReLU)
      --[shuffle: channel_shuffle(., 2)]--> 3x3 dw (stride) + BN + ReLU6
      --split [h/4 | 3h/4] (shuffle)  or  [3h/4 | h/4] (share, mirrored)-->
      pw-linear groups (-> C'/4 | 3C'/4) --concat [C'/4 | 3C'/4]--> BN  (+ x if stride 1 and C == C')

The projection outputs are always concatenated in the canonical ``[small | big]`` layout
(the layout the next block splits), so in Seesaw-share the *small* output group is
computed from the last quarter of the hidden features, which come from the big input
group: with the identity shortcut this crosses groups even in even (1:1) blocks.

Channel counts not divisible by 4 (only reachable when `SeesawBlock` is used on its own;
`SeesawNet` rounds every width, ``width_mult`` included, to a multiple of 8): the small group gets ``max(1, C // 4)`` channels and the
big one the rest, for inputs, hidden features and outputs alike; even blocks give the
first group ``C // 2``. Seesaw-shuffle needs an even hidden width (a 2-group shuffle)
and says so otherwise.

The paper's Table 2 expansion for the first block is t=1; unlike MobileNet v2 (which
drops the expansion conv when t=1), the Seesaw block keeps its 1x1 uneven expansion
(Table 1 has no special case). That is what reproduces the reference figures
(361.0M MACs / 3.64M params for Seesaw-shuffleNet 1.0D; dropping it would give 352.9M).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .base import Backbone, Stage
from .fast.fold import BatchNorm, bn_scale_shift, fuse_conv_affine
from .layers import channel_shuffle, conv_bn, make_divisible
from .registry import PaperFigures, register_variant

__all__ = ["SeesawBlock", "SeesawNet", "SEESAW_SETTING", "seesaw_split", "EVEN_BLOCK_MIN_CHANNELS"]

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
#: Blocks whose *input* has at least this many channels use even 2-group 1x1 convs.
EVEN_BLOCK_MIN_CHANNELS = 160
#: Which rows of the table make up each stage after the stem (the stem holds row 0), as
#: in `backbones.mobilenet_v2` so both families expose the same stage names and strides.
_STAGE_ROWS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("stage2", (1,)),
    ("stage3", (2,)),
    ("stage4", (3, 4)),
    ("stage5", (5, 6)),
)
_DEPTHS = {"1.0d": 2, "0.5d": 3}  # column of SEESAW_SETTING holding n


def seesaw_split(channels: int, even: bool = False) -> Tuple[int, int]:
    """Sizes ``(small, big)`` of a 1:3 split (1:1 when ``even``).

    Exact for multiples of 4 (2); otherwise the small group gets the floor, at least one
    channel, so neither group is ever empty.
    """
    if channels < 2:
        raise ValueError(f"a Seesaw split needs at least 2 channels, got {channels}")
    small = channels // 2 if even else max(1, channels // 4)
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
    """One Seesaw block (uneven 1:3, or even 1:1 when ``even``).

    Args:
        in_channels, out_channels: block widths.
        stride: stride of the depthwise conv (1 or 2).
        expand_ratio: t; hidden width is ``round(in_channels * t)``.
        mode: ``"shuffle"`` (2-group channel shuffle after the expansion) or ``"share"``
            (no shuffle, mirrored second split).
        even: use 1:1 groups (the paper's "even-block", for 160+ input channels).

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
        self.in_split = seesaw_split(in_channels, even)
        self.hidden_split = seesaw_split(hidden, even)
        self.out_split = seesaw_split(out_channels, even)
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
        return f"mode={self.mode}, even={self.even}, stride={self.stride}, residual={self.use_res_connect}"


class SeesawNet(Backbone):
    """SeesawNet backbone (Seesaw-shuffleNet / Seesaw-shareNet).

    Args:
        depth: ``"1.0d"`` (n = 1,4,6,8,6,6,1) or ``"0.5d"`` (n = 1,2,3,4,3,3,1).
        mode: ``"shuffle"`` or ``"share"`` (see `SeesawBlock`).
        width_mult: scales every width (rounded to a multiple of 8, as MobileNet v2); the
            paper only uses 1.0. The last 1x1 conv keeps 1280 channels unless width > 1.
        out_features, freeze_at: see `Backbone`.
        in_channels: input image channels.

    Stages: ``stem`` (s2: first conv + the t=1 block), ``stage2`` (s4), ``stage3`` (s8),
    ``stage4`` (s16: the c=64 and c=96 blocks), ``stage5`` (s32: c=160 and c=320 blocks),
    ``conv_last`` (1x1 -> 1280, s32), exactly as `backbones.mobilenet_v2`.
    """

    def __init__(
        self,
        depth: str = "1.0d",
        mode: str = "shuffle",
        width_mult: float = 1.0,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth.lower() not in _DEPTHS:
            raise ValueError(f"depth must be one of {sorted(_DEPTHS)}, got {depth!r}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        n_col = _DEPTHS[depth.lower()]
        setting = SEESAW_SETTING
        stem_width = make_divisible(32 * width_mult, 8)
        last = make_divisible(1280 * max(1.0, width_mult), 8)

        def blocks(r: int, in_ch: int) -> Tuple[List[nn.Module], int]:
            row = setting[r]
            t, c, n, s = row[0], row[1], row[n_col], row[4]
            out = make_divisible(c * width_mult, 8)
            mods: List[nn.Module] = []
            for i in range(n):
                cin = in_ch if i == 0 else out
                mods.append(SeesawBlock(cin, out, s if i == 0 else 1, t, mode, even=cin >= EVEN_BLOCK_MIN_CHANNELS))
            return mods, out

        first, width = blocks(0, stem_width)
        stem = nn.Sequential(conv_bn(in_channels, stem_width, 3, stride=2, activation=nn.ReLU6), *first)
        stages = [Stage("stem", stem, width, 2 * setting[0][4])]
        stride = 2 * setting[0][4]
        for name, rows in _STAGE_ROWS:
            mods: List[nn.Module] = []
            for r in rows:
                row_blocks, width = blocks(r, width)
                mods += row_blocks
                stride *= setting[r][4]
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
