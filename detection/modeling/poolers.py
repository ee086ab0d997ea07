"""RoI feature extraction from one named feature map.

torchvision's `MultiScaleRoIAlign` serves FPN; these cover the single-level cases:
plain RoIAlign (C4 box head) and position-sensitive RoIAlign (Light-Head). The
spatial scale is read from the feature's stride, never typed by hand.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from torch import Tensor, nn
from torchvision.ops import ps_roi_align, roi_align

__all__ = ["RoIAlignPooler", "PSRoIAlignPooler"]


class RoIAlignPooler(nn.Module):
    def __init__(self, feature_name: str, stride: int, output_size: int, sampling_ratio: int = 0) -> None:
        super().__init__()
        self.feature_name = feature_name
        self.spatial_scale = 1.0 / stride
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        return roi_align(
            features[self.feature_name], boxes, self.output_size, self.spatial_scale, self.sampling_ratio, aligned=True
        )

    def extra_repr(self) -> str:
        return f"{self.feature_name}, output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class PSRoIAlignPooler(RoIAlignPooler):
    """Position-sensitive RoIAlign: bin (i, j) of output channel c reads input channel
    ``(c * k + i) * k + j`` (torchvision's layout), so the map needs C_out * k * k channels."""

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        sampling_ratio = self.sampling_ratio if self.sampling_ratio > 0 else 2
        return ps_roi_align(features[self.feature_name], boxes, self.output_size, self.spatial_scale, sampling_ratio)
