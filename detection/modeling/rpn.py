"""Region proposal network on one chosen feature map (torchvision's RPN machinery)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.ops import box_iou, boxes as box_ops, nms

from backbones import ShapeSpec

__all__ = ["RPNHead", "FeatureSelectRPN", "build_rpn", "nms_topk", "batched_nms_topk", "exporting"]


def exporting() -> bool:
    """Whether the model is being traced, scripted, compiled or exported: those need a
    data-independent graph, so the data-dependent inference shortcuts step aside."""
    return (
        torchvision._is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    )


def nms_topk(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float,
    topk: int,
    block: int = 1024,
    idxs: Optional[Tensor] = None,
) -> Tensor:
    """``torchvision.ops.nms(boxes, scores, iou_threshold)[:topk]`` (or, with ``idxs``,
    ``batched_nms(boxes, scores, idxs, iou_threshold)[:topk]``: boxes suppress only boxes
    of their own group), stopping once ``topk`` boxes are kept.

    Greedy NMS keeps a box iff no kept box of higher score (and the same group) overlaps it
    by more than the threshold, so visiting every box in one score order decides each group
    exactly as NMS within the group would. Boxes are visited in blocks: a block first loses
    the boxes that the boxes kept so far suppress (one IoU matrix), then runs NMS within
    itself. The kept boxes and their order are torchvision's up to tied scores (ordered
    stably here); the work stops after the block that completes ``topk`` (the RPN keeps
    1000 of 6000 at test time, a detector head 100 of up to 19 x 1000 scored pairs, and
    NMS over all of them costs O(n^2) IoUs). ``block`` bounds the boxes visited at a time.
    """
    order = scores.sort(descending=True, stable=True).indices
    boxes, scores = boxes[order], scores[order]
    groups = None if idxs is None else idxs[order]
    kept: List[Tensor] = []
    kept_boxes = boxes.new_zeros((0, 4))
    kept_groups = None if groups is None else groups[:0]  # the groups of kept_boxes
    count = 0
    start = 0
    while start < len(order):
        # once most of topk is kept, smaller blocks: the IoU against the kept boxes dominates
        size = min(block, max(64, 2 * (topk - count)))
        cand = torch.arange(start, min(start + size, len(order)), device=boxes.device)
        start += size
        if count:
            iou = box_iou(boxes[cand], kept_boxes)
            if groups is not None:
                iou = iou.masked_fill_(groups[cand][:, None] != kept_groups[None, :], 0.0)
            cand = cand[(iou <= iou_threshold).all(dim=1)]
        if len(cand):
            if groups is None:
                new = cand[nms(boxes[cand], scores[cand], iou_threshold)]
            else:
                new = cand[box_ops.batched_nms(boxes[cand], scores[cand], groups[cand], iou_threshold)]
                new = new.sort().values  # back to score order (cand is sorted by score)
                kept_groups = torch.cat([kept_groups, groups[new]])
            kept.append(new)
            kept_boxes = torch.cat([kept_boxes, boxes[new]])
            count += len(new)
        if count >= topk:
            break
    if not kept:
        return order[:0]
    return order[torch.cat(kept)[:topk]]


def batched_nms_topk(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, topk: int) -> Tensor:
    """``torchvision.ops.batched_nms(...)[:topk]`` (NMS within each ``idxs`` group, results
    by decreasing score) with `nms_topk`'s early stop over all groups at once; equal up to
    the order of exactly tied scores."""
    if len(idxs) and bool((idxs == idxs[0]).all()):  # one group (e.g. a single-map RPN): plain NMS
        return nms_topk(boxes, scores, iou_threshold, topk)
    return nms_topk(boxes, scores, iou_threshold, topk, idxs=idxs)


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
    proposals can come from a different stage than the one the box head pools.

    ``boundary_thresh >= 0`` leaves anchors that cross the image border by more than that
    many pixels out of training (detectron2's ``MODEL.RPN.BOUNDARY_THRESH``; py-faster-rcnn
    and Light-Head R-CNN use 0): they are neither positive nor negative, and a ground-truth
    box's best anchors are looked for among the others. ``-1`` labels every anchor.
    """

    def __init__(self, in_features: Sequence[str], *args, boundary_thresh: float = -1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_features = list(in_features)
        self.boundary_thresh = boundary_thresh

    def forward(self, images: ImageList, features: Dict[str, Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        """torchvision's `RegionProposalNetwork.forward` over ``in_features``, with the
        image sizes passed to the anchor labelling (for ``boundary_thresh``)."""
        selected = [features[name] for name in self.in_features]
        objectness, pred_bbox_deltas = self.head(selected)
        anchors = self.anchor_generator(images, selected)
        num_images = len(anchors)
        num_anchors_per_level = [o[0].shape[0] * o[0].shape[1] * o[0].shape[2] for o in objectness]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        # Faster R-CNN does not backprop through the proposals
        proposals = self.box_coder.decode(pred_bbox_deltas.detach(), anchors).view(num_images, -1, 4)
        boxes, _ = self.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)
        losses: Dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets, images.image_sizes)
            regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
            loss_objectness, loss_rpn_box_reg = self.compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses

    def assign_targets_to_anchors(  # type: ignore[override]
        self,
        anchors: List[Tensor],
        targets: List[Dict[str, Tensor]],
        image_sizes: Optional[List[Tuple[int, int]]] = None,
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """Per image: anchor labels (1 foreground, 0 background, -1 ignored) and the matched
        ground-truth boxes; torchvision's matching, with the anchors outside the image
        (``boundary_thresh``, needs ``image_sizes``) ignored and never a best match."""
        if self.boundary_thresh >= 0 and image_sizes is None:
            raise ValueError("boundary_thresh >= 0 needs the image sizes")
        labels, matched_gt_boxes = [], []
        for i, (anchors_per_image, targets_per_image) in enumerate(zip(anchors, targets)):
            gt_boxes = targets_per_image["boxes"]
            inside = None
            if self.boundary_thresh >= 0:
                height, width = image_sizes[i]
                t = self.boundary_thresh
                inside = (
                    (anchors_per_image[:, 0] >= -t)
                    & (anchors_per_image[:, 1] >= -t)
                    & (anchors_per_image[:, 2] < width + t)
                    & (anchors_per_image[:, 3] < height + t)
                )
            if gt_boxes.numel() == 0:  # background image: every anchor negative
                matched = torch.zeros_like(anchors_per_image, dtype=torch.float32)
                labels_per_image = torch.zeros(len(anchors_per_image), dtype=torch.float32, device=anchors_per_image.device)
            else:
                quality = self.box_similarity(gt_boxes, anchors_per_image)
                if inside is not None:
                    quality = quality.masked_fill(~inside[None, :], -1.0)
                matched_idxs = self.proposal_matcher(quality)
                matched = gt_boxes[matched_idxs.clamp(min=0)]
                labels_per_image = (matched_idxs >= 0).to(torch.float32)
                labels_per_image[matched_idxs == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
                labels_per_image[matched_idxs == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
            if inside is not None:
                labels_per_image[~inside] = -1.0
            labels.append(labels_per_image)
            matched_gt_boxes.append(matched)
        return labels, matched_gt_boxes

    def filter_proposals(
        self, proposals: Tensor, objectness: Tensor, image_shapes: List[Tuple[int, int]], num_anchors_per_level: List[int]
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """Inference: torchvision's filtering (top-n per level, clip, drop small and
        low-score boxes, NMS per level, keep the best ``post_nms_top_n``) with the NMS
        stopped once that many boxes are kept (`batched_nms_topk`). Training and tracing
        (export) use torchvision's own."""
        if self.training or exporting():
            return super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        num_images = proposals.shape[0]
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.cat(
            [torch.full((n,), i, dtype=torch.int64, device=proposals.device) for i, n in enumerate(num_anchors_per_level)]
        ).reshape(1, -1).expand_as(objectness)
        top_n = self._get_top_n_idx(objectness, num_anchors_per_level)
        rows = torch.arange(num_images, device=proposals.device)[:, None]
        probs = torch.sigmoid(objectness[rows, top_n])
        levels, proposals = levels[rows, top_n], proposals[rows, top_n]
        final_boxes, final_scores = [], []
        for boxes, scores, lvl, image_shape in zip(proposals, probs, levels, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms_topk(boxes, scores, lvl, self.nms_thresh, self.post_nms_top_n())
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores


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
        boundary_thresh=rcfg.BOUNDARY_THRESH,
    )
