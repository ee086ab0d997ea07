"""Region proposal network on one chosen feature map (torchvision's RPN machinery)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork

from backbones import ShapeSpec

__all__ = ["RPNHead", "FeatureSelectRPN", "build_rpn"]


class RPNHead(nn.Module):
    """3x3 conv (configurable width, unlike torchvision's which keeps the input width)
    + ReLU, then 1x1 objectness and box-delta convs, shared over feature levels."""

    def __init__(self, in_channels: int, num_anchors: int, conv_dim: int = 256) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_dim, 3, padding=1)
        self.cls_logits = nn.Conv2d(conv_dim, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(conv_dim, num_anchors * 4, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)

    def forward(self, features: List[Tensor]):
        logits, deltas = [], []
        for x in features:
            t = torch.relu(self.conv(x))
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


class FeatureSelectRPN(RegionProposalNetwork):
    """torchvision RPN that reads only ``in_features`` from the feature dict, so the
    proposals can come from a different stage than the one the box head pools."""

    def __init__(self, in_features: Sequence[str], *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_features = list(in_features)

    def forward(self, images: ImageList, features: Dict[str, Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        selected = {name: features[name] for name in self.in_features}
        return super().forward(images, selected, targets)


def build_rpn(cfg, input_shapes: Dict[str, ShapeSpec], in_features: Sequence[str]) -> FeatureSelectRPN:
    """RPN over ``in_features``: one anchor size per level when there are several levels
    (FPN), all sizes on the single level otherwise (C4 / Light-Head)."""
    sizes = [tuple(s) for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES]
    ratios = [tuple(r) for r in cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS]
    n_levels = len(in_features)
    if len(sizes) == 1 and n_levels > 1:
        if len(sizes[0]) != n_levels:
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.SIZES {cfg.MODEL.ANCHOR_GENERATOR.SIZES} must list one size per "
                f"feature level ({n_levels}: {list(in_features)}) or one list per level"
            )
        sizes = [(s,) for s in sizes[0]]
    if len(sizes) != n_levels:
        raise ValueError(f"MODEL.ANCHOR_GENERATOR.SIZES has {len(sizes)} levels, the RPN sees {n_levels}")
    if len(ratios) == 1:
        ratios = ratios * n_levels
    anchor_generator = AnchorGenerator(tuple(sizes), tuple(ratios))
    channels = {input_shapes[f].channels for f in in_features}
    if len(channels) != 1:
        raise ValueError(f"RPN levels must share a channel count, got {channels} for {list(in_features)}")
    num_anchors = anchor_generator.num_anchors_per_location()
    if len(set(num_anchors)) != 1:
        raise ValueError("every RPN level needs the same number of anchors per location")
    rcfg = cfg.MODEL.RPN
    head = RPNHead(channels.pop(), num_anchors[0], rcfg.HEAD_CONV_DIM)
    return FeatureSelectRPN(
        in_features,
        anchor_generator,
        head,
        fg_iou_thresh=rcfg.IOU_THRESHOLDS[1],
        bg_iou_thresh=rcfg.IOU_THRESHOLDS[0],
        batch_size_per_image=rcfg.BATCH_SIZE_PER_IMAGE,
        positive_fraction=rcfg.POSITIVE_FRACTION,
        pre_nms_top_n={"training": rcfg.PRE_NMS_TOPK_TRAIN, "testing": rcfg.PRE_NMS_TOPK_TEST},
        post_nms_top_n={"training": rcfg.POST_NMS_TOPK_TRAIN, "testing": rcfg.POST_NMS_TOPK_TEST},
        nms_thresh=rcfg.NMS_THRESH,
    )
