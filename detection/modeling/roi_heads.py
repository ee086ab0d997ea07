"""Second-stage heads: torchvision's `RoIHeads` matching/decoding with our RoI selection
(a fixed-size foreground/background sample, or every proposal), our loss (smooth-L1 beta,
box-loss weight, optional OHEM) and the box heads of each detector style."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads

__all__ = [
    "LiteRoIHeads",
    "KeepAllSampler",
    "C4BoxHead",
    "FCBoxHead",
    "FastRCNNPredictor",
    "fast_rcnn_losses",
    "hard_example_indices",
]


def hard_example_indices(losses: Tensor, num_images: int, topk_per_image: int) -> Tensor:
    """Online hard example mining as Light-Head R-CNN's authors run it (the native and the
    detectron2 heads): the indices, ascending, of the ``topk_per_image * num_images``
    highest of ``losses``, the per-RoI losses of ``num_images`` images ranked together
    (zengarden/light_head_rcnn keeps ``nr_ohem_sampling = 256 * train_batch_per_gpu`` RoIs
    over all RoIs of one GPU's images, so an image with more hard RoIs gets more of them).
    Every RoI is kept when there are fewer."""
    k = min(topk_per_image * num_images, losses.numel())
    return torch.topk(losses, k).indices.sort().values


class KeepAllSampler:
    """``MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE: -1``: every proposal (and ground-truth box) is
    a training RoI, foreground or background, with no fixed count or foreground fraction
    (Light-Head R-CNN's ``TRAIN.BATCH_SIZE = -1``). The interface of torchvision's
    ``BalancedPositiveNegativeSampler``: per image, masks of the foreground and the
    background RoIs among the matched labels (-1, ignored, in neither)."""

    batch_size_per_image = -1
    positive_fraction = 1.0  # no fraction: kept for the modules that describe the sampler

    def __call__(self, labels: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        return [lbl >= 1 for lbl in labels], [lbl == 0 for lbl in labels]


def fast_rcnn_losses(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: List[Tensor],
    regression_targets: List[Tensor],
    *,
    box_loss_weight: float = 1.0,
    smooth_l1_beta: float = 1.0 / 9,
    ohem_topk: int = 0,
) -> Dict[str, Tensor]:
    """Cross-entropy + smooth-L1 (``smooth_l1_beta``; the authors' sigma is ``beta =
    1 / sigma**2``) of the ground-truth class's deltas, on the training RoIs.

    With ``ohem_topk > 0`` only the ``ohem_topk * len(labels)`` RoIs with the highest
    cross-entropy + unweighted smooth-L1, ranked over all images together, contribute
    (`hard_example_indices`); ``box_loss_weight`` applies after the selection, as in
    Light-Head R-CNN. Both losses are divided by the number of RoIs that contribute.
    """
    labels_t = torch.cat(labels, dim=0)
    targets_t = torch.cat(regression_targets, dim=0)
    n = labels_t.numel()
    cls_loss = F.cross_entropy(class_logits, labels_t, reduction="none")
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    box_loss = class_logits.new_zeros(n, dtype=torch.float32)  # losses in float32, also under autocast
    pos = torch.where(labels_t > 0)[0]
    if pos.numel():
        per_pos = F.smooth_l1_loss(
            box_regression[pos, labels_t[pos]], targets_t[pos], beta=smooth_l1_beta, reduction="none"
        ).sum(dim=1)
        box_loss = box_loss.index_put((pos,), per_pos.float())
    else:
        # No positive RoI (e.g. an image without objects): keep the box branch in the
        # graph with a zero loss, so DistributedDataParallel sees a gradient for every
        # parameter on every rank (otherwise the ranks' gradient all-reduces mismatch).
        box_loss = box_loss + 0.0 * box_regression.sum()
    if ohem_topk > 0:
        with torch.no_grad():
            keep = hard_example_indices(cls_loss.float() + box_loss, len(labels), ohem_topk)
        cls_loss, box_loss = cls_loss[keep], box_loss[keep]
    denom = max(cls_loss.numel(), 1)
    return {
        "loss_classifier": cls_loss.sum() / denom,
        "loss_box_reg": box_loss_weight * box_loss.sum() / denom,
    }


class LiteRoIHeads(RoIHeads):
    """`RoIHeads` whose training RoIs may be every proposal and whose loss has a smooth-L1
    beta, a box-loss weight and OHEM.

    ``batch_size_per_image > 0`` samples that many RoIs per image at ``positive_fraction``
    foreground (torchvision's sampler); ``-1`` keeps them all (`KeepAllSampler`). Matching,
    box coding and test-time decoding/NMS are torchvision's.
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        *,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        bbox_reg_weights: Optional[Tuple[float, float, float, float]],
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        box_loss_weight: float = 1.0,
        smooth_l1_beta: float = 1.0 / 9,
        ohem_topk: int = 0,
    ) -> None:
        if not (batch_size_per_image > 0 or batch_size_per_image == -1):
            raise ValueError(
                f"batch_size_per_image must be a positive RoI count or -1 (every proposal), got {batch_size_per_image}"
            )
        super().__init__(
            box_roi_pool,
            box_head,
            box_predictor,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            bbox_reg_weights,
            score_thresh,
            nms_thresh,
            detections_per_img,
        )
        if batch_size_per_image == -1:
            self.fg_bg_sampler = KeepAllSampler()
        self.box_loss_weight = box_loss_weight
        self.smooth_l1_beta = smooth_l1_beta
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
            smooth_l1_beta=self.smooth_l1_beta,
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
    1024) and Light-Head's single FC (2048). ``weight_std`` draws the FC weights from
    N(0, weight_std) with zero biases (Light-Head R-CNN's authors: 0.01); None keeps
    PyTorch's default initialisation."""

    def __init__(self, in_features: int, fc_dims: List[int], weight_std: Optional[float] = None) -> None:
        super().__init__()
        layers: List[nn.Module] = [nn.Flatten(1)]
        for dim in fc_dims:
            fc = nn.Linear(in_features, dim)
            if weight_std is not None:
                nn.init.normal_(fc.weight, std=weight_std)
                nn.init.constant_(fc.bias, 0)
            layers += [fc, nn.ReLU(inplace=True)]
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
