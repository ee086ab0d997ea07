"""RoI feature extraction from one named feature map.

torchvision's `MultiScaleRoIAlign` serves FPN; these cover the single-level cases:
plain RoIAlign (C4 box head) and position-sensitive RoIAlign (Light-Head). The
spatial scale is read from the feature's stride, never typed by hand.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import ps_roi_align, roi_align

__all__ = ["RoIAlignPooler", "PSRoIAlignPooler", "ps_roi_align_via_roi_align"]


def _boxes_to_rois(boxes: List[Tensor]) -> Tensor:
    """List of per-image (R_i, 4) boxes -> (sum R_i, 5) rois with the image index first."""
    # full_like keeps the RoI count symbolic when traced for ONNX (len(b) would be baked in)
    index = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
    return torch.cat([index, torch.cat(boxes)], dim=1)


def ps_roi_align_via_roi_align(
    features: Tensor, rois: Tensor, output_size: int, spatial_scale: float, sampling_ratio: int
) -> Tensor:
    """Position-sensitive RoIAlign computed by one plain `roi_align` call.

    Bin (i, j) of output channel c reads input channel ``(c * k + i) * k + j`` over the
    (i, j)-th sub-box of the RoI. Regrouping the channels so that each bin's C_out
    channels form their own "image" turns every (RoI, bin) pair into a 1x1 `roi_align`
    over its sub-box. The sampling points are the same as `ps_roi_align`'s (both use the
    half-pixel offset), so the result is exact; and `roi_align` has an ONNX converter and
    a faster CPU kernel, which `ps_roi_align` lacks.
    """
    k = output_size
    n, channels, height, width = features.shape
    if channels % (k * k):
        raise ValueError(f"position-sensitive RoIAlign needs channels divisible by {k}x{k}, got {channels}")
    out_channels = channels // (k * k)
    # (N, C_out, k*k, H, W) -> (N*k*k, C_out, H, W): image index n*k*k + bin
    grouped = features.reshape(n, out_channels, k * k, height, width).transpose(1, 2)
    grouped = grouped.reshape(n * k * k, out_channels, height, width)

    num_rois = rois.shape[0]
    x1, y1, x2, y2 = rois[:, 1], rois[:, 2], rois[:, 3], rois[:, 4]
    step = torch.arange(k, dtype=rois.dtype, device=rois.device)
    bin_w = ((x2 - x1) / k)[:, None]
    bin_h = ((y2 - y1) / k)[:, None]
    left = x1[:, None] + step * bin_w  # (R, k) over j
    top = y1[:, None] + step * bin_h  # (R, k) over i
    # sub-boxes ordered (roi, i, j)
    sub = torch.stack(
        [
            left[:, None, :].expand(num_rois, k, k),
            top[:, :, None].expand(num_rois, k, k),
            (left + bin_w)[:, None, :].expand(num_rois, k, k),
            (top + bin_h)[:, :, None].expand(num_rois, k, k),
        ],
        dim=-1,
    ).reshape(-1, 4)
    bins = torch.arange(k * k, dtype=rois.dtype, device=rois.device)
    image = (rois[:, :1] * (k * k) + bins).reshape(-1, 1)
    # roi_align's adaptive sampling over a sub-box equals ps_roi_align's over one bin
    pooled = roi_align(grouped, torch.cat([image, sub], dim=1), 1, spatial_scale, sampling_ratio, aligned=True)
    return pooled.reshape(num_rois, k, k, out_channels).permute(0, 3, 1, 2)


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
    ``(c * k + i) * k + j`` (torchvision's layout), so the map needs C_out * k * k channels.

    ``implementation="roi_align"`` (default) uses the exact regrouped `roi_align` form,
    which exports to ONNX; ``"torchvision"`` calls `torchvision.ops.ps_roi_align`.
    """

    def __init__(
        self, feature_name: str, stride: int, output_size: int, sampling_ratio: int = 0,
        implementation: str = "roi_align",
    ) -> None:
        # adaptive sampling (0) costs ceil(bin size)^2 points per bin on large RoIs; 2 as in R-FCN
        super().__init__(feature_name, stride, output_size, sampling_ratio if sampling_ratio > 0 else 2)
        if implementation not in ("roi_align", "torchvision"):
            raise ValueError(f"PSRoIAlignPooler implementation must be 'roi_align' or 'torchvision', got {implementation!r}")
        self.implementation = implementation

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        feature = features[self.feature_name]
        if self.implementation == "torchvision":
            return ps_roi_align(feature, boxes, self.output_size, self.spatial_scale, self.sampling_ratio)
        return ps_roi_align_via_roi_align(
            feature, _boxes_to_rois(boxes).to(feature.dtype), self.output_size, self.spatial_scale, self.sampling_ratio
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, implementation={self.implementation}"
