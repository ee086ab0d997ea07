"""Second-stage heads: torchvision's `RoIHeads` sampling/decoding with our loss
(box-loss weight, optional OHEM) and the box heads of each detector style."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from .rpn import batched_nms_topk

__all__ = ["LiteRoIHeads", "C4BoxHead", "TwoFCBoxHead", "FastRCNNPredictor", "fast_rcnn_losses"]


def _tracing() -> bool:
    """Export (ONNX / TorchScript tracing, torch.compile) needs a data-independent graph."""
    return (
        torchvision._is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    )


def fast_rcnn_losses(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: List[Tensor],
    regression_targets: List[Tensor],
    *,
    box_loss_weight: float = 1.0,
    ohem_topk: int = 0,
) -> Dict[str, Tensor]:
    """Cross-entropy + smooth-L1 (beta 1/9, torchvision's choice) on the sampled RoIs.

    With ``ohem_topk > 0`` only the ``ohem_topk`` RoIs with the highest combined loss
    in each image contribute (online hard example mining, as in Light-Head R-CNN).
    """
    counts = [len(lbl) for lbl in labels]
    labels_t = torch.cat(labels, dim=0)
    targets_t = torch.cat(regression_targets, dim=0)
    n = labels_t.numel()
    cls_loss = F.cross_entropy(class_logits, labels_t, reduction="none")
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    box_loss = class_logits.new_zeros(n, dtype=torch.float32)  # losses in float32, also under autocast
    pos = torch.where(labels_t > 0)[0]
    if pos.numel():
        per_pos = F.smooth_l1_loss(
            box_regression[pos, labels_t[pos]], targets_t[pos], beta=1 / 9, reduction="none"
        ).sum(dim=1)
        box_loss = box_loss.index_put((pos,), per_pos.float())
    else:
        # No positive RoI (e.g. an image without objects): keep the box branch in the
        # graph with a zero loss, so DistributedDataParallel sees a gradient for every
        # parameter on every rank (otherwise the ranks' gradient all-reduces mismatch).
        box_loss = box_loss + 0.0 * box_regression.sum()
    if ohem_topk > 0:
        with torch.no_grad():
            total = cls_loss + box_loss_weight * box_loss
            keep = []
            start = 0
            for c in counts:
                k = min(ohem_topk, c)
                keep.append(start + torch.topk(total[start : start + c], k).indices)
                start += c
            keep_t = torch.cat(keep) if keep else total.new_zeros(0, dtype=torch.long)
        cls_loss, box_loss = cls_loss[keep_t], box_loss[keep_t]
    denom = max(cls_loss.numel(), 1)
    return {
        "loss_classifier": cls_loss.sum() / denom,
        "loss_box_reg": box_loss_weight * box_loss.sum() / denom,
    }


class LiteRoIHeads(RoIHeads):
    """`RoIHeads` whose training loss supports a box-loss weight and OHEM.

    Proposal sampling, box coding and test-time decoding/NMS are torchvision's.
    """

    def __init__(self, *args, box_loss_weight: float = 1.0, ohem_topk: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_loss_weight = box_loss_weight
        self.ohem_topk = ohem_topk
        #: set by `backbones.fuse.fuse_model`: box deltas only for pairs above the score
        #: threshold (`_detect_scored_pairs`)
        self.fused = False

    def forward(
        self,
        features: Dict[str, Tensor],
        proposals: List[Tensor],
        image_shapes: List[Tuple[int, int]],
        targets: Optional[List[Dict[str, Tensor]]] = None,
    ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_roi_pool(features, proposals, image_shapes)
        box_features = self.box_head(box_features)
        if self.fused and not self.training and hasattr(self.box_predictor, "class_box_deltas") and not _tracing():
            boxes, scores, labels_out = self._detect_scored_pairs(box_features, proposals, image_shapes)
            return [{"boxes": b, "scores": s, "labels": l} for b, s, l in zip(boxes, scores, labels_out)], {}
        class_logits, box_regression = self.box_predictor(box_features)

        if self.training:
            losses = fast_rcnn_losses(
                class_logits,
                box_regression,
                labels,
                regression_targets,
                box_loss_weight=self.box_loss_weight,
                ohem_topk=self.ohem_topk,
            )
            return [], losses
        boxes, scores, labels_out = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        results = [{"boxes": b, "scores": s, "labels": l} for b, s, l in zip(boxes, scores, labels_out)]
        return results, {}

    def _detect_scored_pairs(
        self, box_features: Tensor, proposals: List[Tensor], image_shapes: List[Tuple[int, int]]
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """`postprocess_detections` (torchvision's) computing box deltas only where used.

        Only (RoI, class) pairs scoring above ``score_thresh`` can become detections, so
        the class scores come first and the class-specific box deltas, decoding and
        clipping are computed for those pairs alone; then the same small-box removal, and
        NMS per class with the top-k taken as it goes (`batched_nms_topk`: it stops once
        ``detections_per_img`` boxes are kept). Same detections as computing every delta
        (the deltas of a pair are the same dot products, up to float rounding; exactly tied
        scores may come in another order)."""
        predictor: FastRCNNPredictor = self.box_predictor
        x = box_features.flatten(1)
        scores_all = F.softmax(predictor.cls_score(x), -1)
        out_boxes, out_scores, out_labels = [], [], []
        start = 0
        for props, image_shape in zip(proposals, image_shapes):
            rows = slice(start, start + len(props))
            start += len(props)
            scores = scores_all[rows, 1:]  # background dropped, as torchvision does
            roi, cls = torch.where(scores > self.score_thresh)  # row-major: torchvision's order
            scores, cls = scores[roi, cls], cls + 1
            deltas = predictor.class_box_deltas(x[rows], roi, cls)
            boxes = self.box_coder.decode_single(deltas, props[roi])
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
            keep = batched_nms_topk(boxes, scores, cls, self.nms_thresh, self.detections_per_img)
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(cls[keep])
        return out_boxes, out_scores, out_labels


class C4BoxHead(nn.Module):
    """Faster R-CNN C4 box head: the backbone's remaining stage(s) run on the pooled
    RoIs (14x14 -> 7x7 through the stride-2 first unit), then global average pooling."""

    def __init__(self, stages: nn.ModuleDict) -> None:
        super().__init__()
        self.stages = stages

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages.values():
            x = stage(x)
        return x.mean(dim=(2, 3))


class TwoFCBoxHead(nn.Module):
    """Flatten + FC(s) + ReLU: the FPN box head (two FCs) and Light-Head's single FC 2048."""

    def __init__(self, in_features: int, fc_dims: List[int]) -> None:
        super().__init__()
        layers: List[nn.Module] = [nn.Flatten(1)]
        for dim in fc_dims:
            layers += [nn.Linear(in_features, dim), nn.ReLU(inplace=True)]
            in_features = dim
        self.fcs = nn.Sequential(*layers)
        self.out_features = in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.fcs(x)


#: `FastRCNNPredictor.class_box_deltas` computes one dense block of box deltas (the RoIs
#: involved x the classes present) when the pairs asked for fill at least 1/DENSE_RATIO of
#: it, and per-class GEMMs over gathered rows below that (measured at 1000 RoIs x 2048
#: features, 81 classes, 1 thread: the two cost the same at a fill of 0.06-0.08)
DENSE_RATIO = 16.0


class FastRCNNPredictor(nn.Module):
    """Class scores (K + background) and class-specific box deltas."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, (num_classes + 1) * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0)
        nn.init.constant_(self.bbox_pred.bias, 0)
        #: set by `backbones.fuse.fuse_model`: both layers as one GEMM (one pass over x)
        self.fused = False

    def class_box_deltas(self, x: Tensor, rows: Tensor, classes: Tensor, dense_ratio: float = DENSE_RATIO) -> Tensor:
        """Box deltas ``(P, 4)`` of class ``classes[p]`` for RoI ``x[rows[p]]`` (flattened
        features), without computing the other classes' deltas.

        One GEMM over the RoIs involved and the classes present (their weight rows
        gathered) when the pairs fill at least ``1 / dense_ratio`` of that block
        (`DENSE_RATIO`); otherwise one small GEMM per class present, over its RoIs gathered."""
        if not len(rows):
            return x.new_empty((0, 4))
        used_rows, local_rows = torch.unique(rows, return_inverse=True)
        used_classes, local_classes = torch.unique(classes, return_inverse=True)
        weight = self.bbox_pred.weight.view(-1, 4, x.shape[1])
        bias = self.bbox_pred.bias.view(-1, 4)
        if dense_ratio * len(rows) >= len(used_rows) * len(used_classes):
            # gathering most of the rows (or classes) costs more than computing them all
            if 2 * len(used_rows) > x.shape[0]:
                inputs, local_rows = x, rows
            else:
                inputs = x[used_rows]
            if 2 * len(used_classes) > weight.shape[0]:
                block, local_classes = self.bbox_pred(inputs), classes
            else:
                block = torch.addmm(bias[used_classes].flatten(), inputs, weight[used_classes].flatten(0, 1).t())
            return block.view(len(inputs), -1, 4)[local_rows, local_classes]
        out = x.new_empty((len(rows), 4))
        for c in used_classes.tolist():
            members = torch.where(classes == c)[0]
            out[members] = torch.addmm(bias[c], x[rows[members]], weight[c].t())
        return out

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = x.flatten(1)
        if self.fused and not self.training:
            weight = torch.cat([self.cls_score.weight, self.bbox_pred.weight])
            bias = torch.cat([self.cls_score.bias, self.bbox_pred.bias])
            out = torch.addmm(bias, x, weight.t())
            return out[:, : self.cls_score.out_features], out[:, self.cls_score.out_features :]
        return self.cls_score(x), self.bbox_pred(x)
