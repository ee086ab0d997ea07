"""Inference fast paths of the detector heads, swapped in by `RCNN.fuse` (the backbone-side
ones are in `backbones.fast`): `ScoredPairRoIHeads` computes box deltas, decoding and NMS
only for the (RoI, class) pairs that can become detections."""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import boxes as box_ops

from backbones.fast import InferenceModule, ModuleBuilders

from .roi_heads import FastRCNNPredictor, LiteRoIHeads
from .rpn import batched_nms_topk, exporting

__all__ = ["ScoredPairRoIHeads", "class_box_deltas", "DENSE_RATIO", "HEAD_MODULES"]

#: `class_box_deltas` computes one dense block of box deltas (the RoIs involved x the
#: classes present) when the pairs asked for fill at least 1/DENSE_RATIO of it, and
#: per-class GEMMs over gathered rows below that (measured at 1000 RoIs x 2048 features,
#: 81 classes, 1 thread: the two cost the same at a fill of 0.06-0.08)
DENSE_RATIO = 16.0


def class_box_deltas(
    bbox_pred: nn.Linear, x: Tensor, rows: Tensor, classes: Tensor, dense_ratio: float = DENSE_RATIO
) -> Tensor:
    """Box deltas ``(P, 4)`` of class ``classes[p]`` for RoI ``x[rows[p]]`` (flattened
    features) from the class-specific box layer ``bbox_pred``, without computing the other
    classes' deltas.

    One GEMM over the RoIs involved and the classes present (their weight rows gathered)
    when the pairs fill at least ``1 / dense_ratio`` of that block (`DENSE_RATIO`);
    otherwise one small GEMM per class present, over its RoIs gathered."""
    if not len(rows):
        return x.new_empty((0, 4))
    used_rows, local_rows = torch.unique(rows, return_inverse=True)
    used_classes, local_classes = torch.unique(classes, return_inverse=True)
    weight = bbox_pred.weight.view(-1, 4, x.shape[1])
    bias = bbox_pred.bias.view(-1, 4)
    if dense_ratio * len(rows) >= len(used_rows) * len(used_classes):
        # gathering most of the rows (or classes) costs more than computing them all
        if 2 * len(used_rows) > x.shape[0]:
            inputs, local_rows = x, rows
        else:
            inputs = x[used_rows]
        if 2 * len(used_classes) > weight.shape[0]:
            block, local_classes = bbox_pred(inputs), classes
        else:
            block = torch.addmm(bias[used_classes].flatten(), inputs, weight[used_classes].flatten(0, 1).t())
        return block.view(len(inputs), -1, 4)[local_rows, local_classes]
    out = x.new_empty((len(rows), 4))
    for c in used_classes.tolist():
        members = torch.where(classes == c)[0]
        out[members] = torch.addmm(bias[c], x[rows[members]], weight[c].t())
    return out


class ScoredPairRoIHeads(InferenceModule, LiteRoIHeads):
    """`LiteRoIHeads` at test time with box deltas only where they can be used.

    Only (RoI, class) pairs scoring above ``score_thresh`` can become detections, so the
    class scores come first and the class-specific box deltas (`class_box_deltas`),
    decoding and clipping are computed for those pairs alone; then torchvision's small-box
    removal, and NMS per class with the top-k taken as it goes (`batched_nms_topk`: it
    stops once ``detections_per_img`` boxes are kept). Same detections as torchvision's
    `postprocess_detections` (the deltas of a pair are the same dot products, up to float
    rounding; exactly tied scores may come in another order). Traced, compiled or exported,
    it runs the trained heads' dense `detect`: the pair count depends on the data.
    """

    @classmethod
    def from_heads(cls, heads: LiteRoIHeads) -> "ScoredPairRoIHeads":
        """The inference form of trained heads (sharing their modules: it has no weights of its own)."""
        if not isinstance(heads.box_predictor, FastRCNNPredictor):
            raise TypeError(
                f"ScoredPairRoIHeads needs a FastRCNNPredictor (class scores and class-specific box deltas), "
                f"got {type(heads.box_predictor).__name__}"
            )
        return cls(
            heads.box_roi_pool,
            heads.box_head,
            heads.box_predictor,
            # sampling settings: unused at inference, kept so that the module describes the same heads
            fg_iou_thresh=heads.proposal_matcher.high_threshold,
            bg_iou_thresh=heads.proposal_matcher.low_threshold,
            batch_size_per_image=heads.fg_bg_sampler.batch_size_per_image,
            positive_fraction=heads.fg_bg_sampler.positive_fraction,
            bbox_reg_weights=heads.box_coder.weights,
            score_thresh=heads.score_thresh,
            nms_thresh=heads.nms_thresh,
            detections_per_img=heads.detections_per_img,
            box_loss_weight=heads.box_loss_weight,
            smooth_l1_beta=heads.smooth_l1_beta,
            ohem_topk=heads.ohem_topk,
        ).eval()

    def detect(
        self, box_features: Tensor, proposals: List[Tensor], image_shapes: List[Tuple[int, int]]
    ) -> List[Dict[str, Tensor]]:
        """`LiteRoIHeads.detect` computing box deltas only for the scored pairs."""
        if exporting():
            return super().detect(box_features, proposals, image_shapes)
        predictor: FastRCNNPredictor = self.box_predictor
        x = box_features.flatten(1)
        scores_all = F.softmax(predictor.cls_score(x), -1)
        detections = []
        start = 0
        for props, image_shape in zip(proposals, image_shapes):
            rows = slice(start, start + len(props))
            start += len(props)
            scores = scores_all[rows, 1:]  # background dropped, as torchvision does
            roi, cls = torch.where(scores > self.score_thresh)  # row-major: torchvision's order
            scores, cls = scores[roi, cls], cls + 1
            deltas = class_box_deltas(predictor.bbox_pred, x[rows], roi, cls)
            boxes = self.box_coder.decode_single(deltas, props[roi])
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
            keep = batched_nms_topk(boxes, scores, cls, self.nms_thresh, self.detections_per_img)
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": cls[keep]})
        return detections


#: the detector heads' inference modules (`backbones.fast.fuse_model`'s ``modules``)
HEAD_MODULES: ModuleBuilders = {LiteRoIHeads: ScoredPairRoIHeads.from_heads}
