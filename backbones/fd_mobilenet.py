"""FD-MobileNet (Qin et al., "FD-MobileNet: Improved MobileNet with a Fast Downsampling
Strategy", ICIP 2018).

MobileNet's blocks with the downsampling moved forward: 32x within the first 12 layers, so the
budget buys width at 7x7 instead of resolution early on. The skeleton is MobileNet v1's
`DepthwiseSeparableNet`; only the stage table differs.
"""
from __future__ import annotations

from typing import Optional, Sequence

from .mobilenet_v1 import DepthwiseSeparableNet, StageSpec
from .registry import PaperFigures, register_variant, width_tag

__all__ = ["FDMobileNet", "FD_MOBILENET_STAGES"]

#: Table 1 of the paper: 11 depthwise-separable blocks. The stem conv alone is the ``stem``
#: stage (stride 2); each later stage starts with its stride-2 block.
FD_MOBILENET_STAGES: StageSpec = (
    ("stem", ()),
    ("stage2", ((64, 2),)),
    ("stage3", ((128, 2), (128, 1))),
    ("stage4", ((256, 2), (256, 1))),
    ("stage5", ((512, 2),) + ((512, 1),) * 4 + ((1024, 1),)),
)


class FDMobileNet(DepthwiseSeparableNet):
    """FD-MobileNet. Stages: ``stem`` (s2), ``stage2`` (s4), ``stage3`` (s8), ``stage4`` (s16),
    ``stage5`` (s32, six blocks ending in the 1024-wide one)."""

    def __init__(
        self,
        width_mult: float = 1.0,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        in_channels: int = 3,
    ) -> None:
        super().__init__(FD_MOBILENET_STAGES, 32, width_mult, out_features, freeze_at, in_channels)


# ----------------------------------------------------------------- registration
#: Table 2 of the paper: MFLOPs (multiply-adds) and top-1 accuracy 65.3 / 56.2 / 45.1 %.
_PAPER = {
    1.0: PaperFigures(macs=144e6, top1_error=34.7, source="FD-MobileNet, Table 2"),
    0.5: PaperFigures(macs=40e6, top1_error=43.8, source="FD-MobileNet, Table 2"),
    0.25: PaperFigures(macs=12e6, top1_error=54.9, source="FD-MobileNet, Table 2"),
}

for _width, _paper in _PAPER.items():
    register_variant(
        f"fd_mobilenet_{width_tag(_width)}", FDMobileNet, family="fd_mobilenet", paper=_paper, width_mult=_width
    )
