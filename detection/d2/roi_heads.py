"""RoI heads for litedet backbones in detectron2's ``ROI_HEADS_REGISTRY``:

- ``LightHeadROIHeads``: Light-Head R-CNN (Li et al., 2017): large separable conv ->
  thin feature map (C x k x k channels) -> position-sensitive RoIAlign k x k -> one FC
  -> detectron2's `FastRCNNOutputLayers` (losses, inference), optional OHEM.
- ``LitedetC4ROIHeads``: Faster R-CNN C4: RoIAlign on the stride-16 stage, then the
  backbone's later stages as the per-RoI head (the "res5" of a ResNet C4 model).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.poolers import ROIPooler, convert_boxes_to_pooler_format
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, FastRCNNOutputLayers, Res5ROIHeads, ROIHeads
from detectron2.structures import ImageList, Instances
from fvcore.nn import smooth_l1_loss
from torch import Tensor, nn

from backbones.registry import register_once
from detection.modeling.backbone import convert_norm
from detection.modeling.light_head import LargeSeparableConv
from detection.modeling.poolers import ps_roi_align_via_roi_align
from detection.modeling.roi_heads import hard_example_indices

from .backbone import build_litedet_network

__all__ = ["LightHeadROIHeads", "LitedetC4ROIHeads", "select_hard_examples"]

Predictions = Tuple[Tensor, Tensor]


def _single_in_feature(cfg, input_shape: Dict[str, ShapeSpec], head: str) -> str:
    in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    if len(in_features) != 1:
        raise ValueError(f"{head} reads one feature map; MODEL.ROI_HEADS.IN_FEATURES is {in_features}")
    if in_features[0] not in input_shape:
        raise ValueError(
            f"MODEL.ROI_HEADS.IN_FEATURES {in_features} is not a backbone output; outputs: {list(input_shape)}"
        )
    if cfg.MODEL.MASK_ON or cfg.MODEL.KEYPOINT_ON:
        raise ValueError(f"{head} predicts boxes only: set MODEL.MASK_ON and MODEL.KEYPOINT_ON to False")
    return in_features[0]


def select_hard_examples(
    predictions: Predictions, proposals: List[Instances], box_predictor: FastRCNNOutputLayers, topk: int
) -> Tuple[Predictions, List[Instances]]:
    """Online hard example mining as Light-Head R-CNN's authors run it: keep the
    ``topk * len(proposals)`` training RoIs with the highest cross-entropy + unweighted
    smooth-L1 loss, ranked over all images of the batch together (`hard_example_indices`).

    The box term is smooth-L1 at the predictor's beta on the ground-truth class's deltas
    (foreground RoIs only), whatever loss types the predictor trains with; its box-loss
    weight applies afterwards, in the predictor's own `losses` on the kept RoIs, which are
    normalised by the number kept.
    """
    scores, deltas = predictions
    with torch.no_grad():
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        loss = F.cross_entropy(scores, gt_classes, reduction="none")
        fg = torch.nonzero((gt_classes >= 0) & (gt_classes < box_predictor.num_classes)).squeeze(1)
        if fg.numel():
            proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)[fg]
            # images without ground truth have no gt_boxes (and no foreground RoIs)
            gt_boxes = cat(
                [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0
            )[fg]
            targets = box_predictor.box2box_transform.get_deltas(proposal_boxes, gt_boxes)
            box_dim = targets.size(1)
            fg_deltas = deltas[fg]
            if fg_deltas.size(1) != box_dim:  # class-specific regression
                fg_deltas = fg_deltas.view(-1, fg_deltas.size(1) // box_dim, box_dim)
                fg_deltas = fg_deltas[torch.arange(fg.numel(), device=fg.device), gt_classes[fg]]
            loss[fg] += smooth_l1_loss(fg_deltas, targets, box_predictor.smooth_l1_beta, reduction="none").sum(1)

        keep = hard_example_indices(loss, len(proposals), topk)
        bounds = torch.tensor([0] + [len(p) for p in proposals], device=keep.device).cumsum(0)
        kept_proposals = [
            p[keep[(keep >= start) & (keep < end)] - start] for p, start, end in zip(proposals, bounds[:-1], bounds[1:])
        ]
    return (scores[keep], deltas[keep]), kept_proposals


class LightHeadROIHeads(ROIHeads):
    """Light-Head R-CNN's second stage on one backbone feature (``MODEL.ROI_HEADS.IN_FEATURES``,
    the stride-32 stage in the papers; the RPN reads the stride-16 one)."""

    @configurable
    def __init__(
        self,
        *,
        in_feature: str,
        feature_stride: int,
        thin_conv: nn.Module,
        pooler_resolution: int,
        sampling_ratio: int,
        box_head: nn.Module,
        box_predictor: nn.Module,
        ohem_topk: int = 0,
        **kwargs,
    ) -> None:
        """
        Args:
            in_feature: the backbone output the large separable conv reads.
            feature_stride: its stride (sets the RoIAlign spatial scale).
            thin_conv: input feature -> thin map of C x k x k channels.
            pooler_resolution: k, the position-sensitive RoIAlign output size.
            sampling_ratio: RoIAlign sampling points per bin side.
            box_head: pooled (R, C, k, k) -> (R, D) features.
            box_predictor: `FastRCNNOutputLayers`-like predictor on those features.
            ohem_topk: > 0 trains on the ``ohem_topk`` x (images) highest-loss RoIs of the
                batch (`select_hard_examples`).
            kwargs: `ROIHeads`' arguments (proposal sampling; ``batch_size_per_image`` -1
                trains on every proposal, see `_sample_proposals`).
        """
        super().__init__(**kwargs)
        self.in_feature = in_feature
        self.spatial_scale = 1.0 / feature_stride
        self.thin_conv = thin_conv
        self.pooler_resolution = pooler_resolution
        self.sampling_ratio = sampling_ratio
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.ohem_topk = ohem_topk

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg)
        feature = _single_in_feature(cfg, input_shape, cls.__name__)
        lh = cfg.MODEL.LIGHT_HEAD
        k = lh.POOLER_RESOLUTION
        thin_channels = lh.CHANNELS_PER_BIN * k * k
        fc = nn.Linear(thin_channels, lh.FC_DIM)
        if lh.FC_INIT_STD:  # the authors' ps_fc_1 is N(0, 0.01) (light_head_rcnn network_desp.py)
            nn.init.normal_(fc.weight, std=lh.FC_INIT_STD)
            nn.init.constant_(fc.bias, 0)
        ret.update(
            in_feature=feature,
            feature_stride=input_shape[feature].stride,
            thin_conv=LargeSeparableConv(input_shape[feature].channels, lh.MID_CHANNELS, thin_channels, lh.KERNEL_SIZE),
            pooler_resolution=k,
            # adaptive sampling (0) costs ceil(bin size)^2 points per bin on large RoIs; 2 as in R-FCN
            sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO or 2,
            box_head=nn.Sequential(nn.Flatten(1), fc, nn.ReLU(inplace=True)),
            box_predictor=FastRCNNOutputLayers(cfg, ShapeSpec(channels=lh.FC_DIM)),
            ohem_topk=lh.OHEM_TOPK if lh.OHEM else 0,
        )
        return ret

    def _sample_proposals(
        self, matched_idxs: Tensor, matched_labels: Tensor, gt_classes: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """`ROIHeads`' sampling, except that ``MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE: -1``
        keeps every proposal that is not ignored, with no fixed count or foreground fraction
        (Light-Head R-CNN's ``TRAIN.BATCH_SIZE = -1``)."""
        if self.batch_size_per_image > 0:
            return super()._sample_proposals(matched_idxs, matched_labels, gt_classes)
        if gt_classes.numel() > 0:
            labels = gt_classes[matched_idxs]
            labels[matched_labels == 0] = self.num_classes
            labels[matched_labels == -1] = -1
        else:
            labels = torch.full_like(matched_idxs, self.num_classes)
        keep = torch.nonzero(labels != -1).squeeze(1)
        return keep, labels[keep]

    def _predict(self, features: Dict[str, Tensor], proposals: List[Instances]) -> Predictions:
        thin = self.thin_conv(features[self.in_feature])
        rois = convert_boxes_to_pooler_format([p.proposal_boxes for p in proposals]).to(thin.dtype)
        pooled = ps_roi_align_via_roi_align(
            thin, rois, self.pooler_resolution, self.spatial_scale, self.sampling_ratio
        )
        return self.box_predictor(self.box_head(pooled))

    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, Tensor]]:
        del images
        if self.training:
            if not targets:
                raise ValueError("LightHeadROIHeads needs targets in training mode")
            proposals = self.label_and_sample_proposals(proposals, targets)
        predictions = self._predict(features, proposals)
        if self.training:
            if self.ohem_topk > 0:
                predictions, proposals = select_hard_examples(
                    predictions, proposals, self.box_predictor, self.ohem_topk
                )
            return [], self.box_predictor.losses(predictions, proposals)
        instances, _ = self.box_predictor.inference(predictions, proposals)
        return instances, {}


class LitedetC4ROIHeads(Res5ROIHeads):
    """Faster R-CNN C4 for litedet backbones: RoIAlign (``MODEL.ROI_BOX_HEAD.POOLER_*``) on
    ``MODEL.ROI_HEADS.IN_FEATURES`` (the stride-16 stage), then the stages of
    ``MODEL.LITEDET.BACKBONE`` after it (the ``res5`` attribute), global average pooling
    and detectron2's `FastRCNNOutputLayers`. Channels come from the backbone's shapes."""

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        ret = super(Res5ROIHeads, cls).from_config(cfg)  # ROIHeads': proposal sampling
        feature = _single_in_feature(cfg, input_shape, cls.__name__)
        net = build_litedet_network(cfg)
        if feature not in net.stage_names:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES {feature!r} is not a stage of {cfg.MODEL.LITEDET.BACKBONE}; "
                f"stages: {net.stage_names}"
            )
        if net.stage_shape(feature).channels != input_shape[feature].channels:
            raise ValueError(
                f"backbone output {feature!r} has {input_shape[feature].channels} channels but stage {feature!r} "
                f"of {cfg.MODEL.LITEDET.BACKBONE} has {net.stage_shape(feature).channels}: "
                "LitedetC4ROIHeads needs MODEL.BACKBONE.NAME build_litedet_backbone"
            )
        tail = net.split_after(feature)
        if not len(tail):
            raise ValueError(f"{cfg.MODEL.LITEDET.BACKBONE} has no stage after {feature!r} to use as the C4 box head")
        out_channels = net.stage_shape(list(tail.keys())[-1]).channels
        ret.update(
            in_features=[feature],
            pooler=ROIPooler(
                output_size=cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
                scales=(1.0 / input_shape[feature].stride,),
                sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
                pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
            ),
            res5=convert_norm(nn.Sequential(OrderedDict(tail.items())), cfg.MODEL.LITEDET.NORM),
            box_predictor=FastRCNNOutputLayers(cfg, ShapeSpec(channels=out_channels, height=1, width=1)),
        )
        return ret


register_once(ROI_HEADS_REGISTRY, LightHeadROIHeads)
register_once(ROI_HEADS_REGISTRY, LitedetC4ROIHeads)
