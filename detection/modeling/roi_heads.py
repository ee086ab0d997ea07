"""Second-stage heads: torchvision's `RoIHeads` sampling/decoding with our loss
(box-loss weight, optional OHEM) and the box heads of each detector style."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads

__all__ = ["LiteRoIHeads", "C4BoxHead", "FCBoxHead", "FastRCNNPredictor", "fast_rcnn_losses", "hard_example_indices"]


def hard_example_indices(losses: Tensor, counts: Sequence[int], topk: int) -> List[Tensor]:
    """Online hard example mining (Light-Head R-CNN's OHEM; the native and the detectron2
    heads): for each image, whose RoIs are ``counts[i]`` consecutive entries of the per-RoI
    ``losses``, the indices into ``losses`` of its ``topk`` highest-loss RoIs, ascending."""
    if sum(counts) != len(losses):
        raise ValueError(f"{len(losses)} RoI losses but the images have {sum(counts)} RoIs ({list(counts)})")
    keep, start = [], 0
    for count in counts:
        top = torch.topk(losses[start : start + count], min(topk, count)).indices
        keep.append(start + top.sort().values)
        start += count
    return keep


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
            keep = hard_example_indices(cls_loss + box_loss_weight * box_loss, counts, ohem_topk)
            keep_t = torch.cat(keep) if keep else labels_t.new_zeros(0)
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
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        if not self.training:
            return self.detect(box_features, proposals, image_shapes), {}
        class_logits, box_regression = self.box_predictor(box_features)
        losses = fast_rcnn_losses(
            class_logits,
            box_regression,
            labels,
            regression_targets,
            box_loss_weight=self.box_loss_weight,
            ohem_topk=self.ohem_topk,
        )
        return [], losses

    def detect(
        self, box_features: Tensor, proposals: List[Tensor], image_shapes: List[Tuple[int, int]]
    ) -> List[Dict[str, Tensor]]:
        """Test time: the detections of each image from its RoIs' box-head features
        (torchvision's decoding, score threshold, NMS per class and top-k)."""
        class_logits, box_regression = self.box_predictor(box_features)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        return [{"boxes": b, "scores": s, "labels": lbl} for b, s, lbl in zip(boxes, scores, labels)]


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


class FCBoxHead(nn.Module):
    """Flatten, then one FC + ReLU per entry of ``fc_dims``: the FPN box head (two FCs of
    1024) and Light-Head's single FC (2048)."""

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

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)
