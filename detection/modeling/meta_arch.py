"""Detector meta-architectures: Faster R-CNN (C4 or FPN) and Light-Head R-CNN.

Each is torchvision's `GeneralizedRCNN` (backbone -> RPN -> RoI heads) fed with
detectron2-style input dicts; a registered builder reads the config, taking every
channel count and stride from the backbone's `output_shape()`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from backbones import Backbone, ShapeSpec
from backbones.fast import check_trainable, fuse_model
from backbones.registry import ReimportSafeRegistry

from .backbone import build_backbone_from_cfg, convert_norm, resolve_norm, resolve_stage, stage_with_stride
from .fast_heads import HEAD_MODULES
from .light_head import LargeSeparableConv
from .poolers import PSRoIAlignPooler, RoIAlignPooler
from .preprocess import ImagePreprocessor, rescale_boxes
from .roi_heads import C4BoxHead, FastRCNNPredictor, FCBoxHead, LiteRoIHeads
from .rpn import build_rpn

__all__ = ["META_ARCH_REGISTRY", "RCNN", "build_model", "FasterRCNN", "LightHeadRCNN"]

META_ARCH_REGISTRY = ReimportSafeRegistry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Detector builders: name -> fn(cfg) -> nn.Module."


class RCNN(GeneralizedRCNN):
    """Two-stage detector over detectron2-style inputs.

    Training: ``model(batched_inputs)`` -> dict of losses. Inference: list of
    ``{"boxes", "scores", "labels"}`` per image, boxes in original image pixels and
    labels contiguous from 0. ``neck`` maps backbone features to the dict that the
    RPN and RoI heads read (FPN levels, Light-Head's thin feature map, or nothing).
    """

    def __init__(
        self,
        backbone: Backbone,
        rpn: nn.Module,
        roi_heads: nn.Module,
        preprocessor: ImagePreprocessor,
        neck: Optional[nn.Module] = None,
    ) -> None:
        super().__init__(backbone, rpn, roi_heads, preprocessor)
        self.neck = neck

    def fuse(self, inplace: bool = False, channels_last: bool = True) -> "RCNN":
        """Inference fast path (eval mode only): every BatchNorm (backbone and C4 box head)
        folded into its conv, channels-last weights and feature maps with the wide dense
        3x3 convs (the RPN's) as Winograd F(4x4, 3x3) on CPU (``channels_last=False``: NCHW
        and plain convs, the form to export), box deltas only for the (RoI, class) pairs
        above the score threshold (`fast_heads.ScoredPairRoIHeads`).
        Detections equal the unfused model's up to float rounding. Returns a fused copy,
        or fuses this model when ``inplace``; the result refuses ``train()`` (see
        `backbones.fast.fuse_model`)."""
        return fuse_model(self, inplace=inplace, channels_last=channels_last, modules=HEAD_MODULES)

    def train(self, mode: bool = True) -> "RCNN":
        check_trainable(self, mode)
        return super().train(mode)

    @property
    def device(self) -> torch.device:
        return self.transform.pixel_mean.device

    def _targets(self, batched_inputs: List[dict]) -> List[Dict[str, Tensor]]:
        targets = []
        for item in batched_inputs:
            inst = item.get("instances")
            if inst is None:
                raise ValueError(f"training input {item.get('file_name', '?')} has no 'instances'")
            boxes = inst["boxes"].to(self.device, torch.float32).reshape(-1, 4)
            bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
            if bool(bad.any()):
                raise ValueError(
                    f"{item.get('file_name', '?')}: degenerate boxes (zero/negative width or height) "
                    f"reached the model: {boxes[bad].tolist()}"
                )
            # torchvision reserves label 0 for background.
            targets.append({"boxes": boxes, "labels": inst["labels"].to(self.device, torch.int64) + 1})
        return targets

    def extract_features(self, images: Tensor) -> Dict[str, Tensor]:
        features = self.backbone(images)
        if self.neck is not None:
            features = self.neck(features)
        return features

    def forward(self, batched_inputs: List[dict]):  # type: ignore[override]
        images = self.transform([item["image"].to(self.device) for item in batched_inputs])
        targets = self._targets(batched_inputs) if self.training else None
        features = self.extract_features(images.tensors)
        proposals, rpn_losses = self.rpn(images, features, targets)
        detections, head_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        results = []
        for det, item, size in zip(detections, batched_inputs, images.image_sizes):
            det = {**det, "labels": det["labels"] - 1}
            orig = (int(item.get("height", size[0])), int(item.get("width", size[1])))
            results.append(rescale_boxes(det, size, orig))
        return results


class LightHeadNeck(nn.Module):
    """Adds Light-Head's "thin" feature map (large separable conv) to the features."""

    def __init__(self, in_feature: str, conv: LargeSeparableConv, out_name: str = "thin") -> None:
        super().__init__()
        self.in_feature = in_feature
        self.out_name = out_name
        self.conv = conv

    def forward(self, features: Dict[str, Tensor]) -> Dict[str, Tensor]:
        out = OrderedDict(features)
        out[self.out_name] = self.conv(features[self.in_feature])
        return out


class FPNNeck(nn.Module):
    """torchvision FPN over the chosen stages, plus a max-pooled coarsest level ("pool")."""

    def __init__(self, in_features: Sequence[str], in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.in_features = list(in_features)
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=LastLevelMaxPool())

    def forward(self, features: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return self.fpn(OrderedDict((k, features[k]) for k in self.in_features))


# --------------------------------------------------------------------------- builders
def _roi_heads(cfg, pooler: nn.Module, box_head: nn.Module, predictor: nn.Module, ohem_topk: int = 0) -> LiteRoIHeads:
    rh = cfg.MODEL.ROI_HEADS
    return LiteRoIHeads(
        pooler,
        box_head,
        predictor,
        fg_iou_thresh=rh.IOU_THRESHOLDS[-1],
        bg_iou_thresh=rh.IOU_THRESHOLDS[0],
        batch_size_per_image=rh.BATCH_SIZE_PER_IMAGE,
        positive_fraction=rh.POSITIVE_FRACTION,
        bbox_reg_weights=tuple(cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
        score_thresh=rh.SCORE_THRESH_TEST,
        nms_thresh=rh.NMS_THRESH_TEST,
        detections_per_img=cfg.TEST.DETECTIONS_PER_IMAGE,
        box_loss_weight=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT,
        smooth_l1_beta=cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
        ohem_topk=ohem_topk,
    )


def _preprocessor(cfg, backbone: Backbone) -> ImagePreprocessor:
    if len(cfg.MODEL.PIXEL_MEAN) != len(cfg.MODEL.PIXEL_STD):
        raise ValueError("MODEL.PIXEL_MEAN and MODEL.PIXEL_STD must have the same length")
    # Pad to the coarsest stride of the whole network (a C4 head still halves RoIs).
    divisibility = max(backbone.stage_shape(n).stride for n in backbone.stage_names)
    return ImagePreprocessor(cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, divisibility)


@META_ARCH_REGISTRY.register()
def FasterRCNN(cfg) -> RCNN:
    """Faster R-CNN, C4 style by default (RPN + 14x14 RoIAlign on the stride-16 stage,
    the later stages as box head); ``MODEL.FPN.ENABLED`` switches to an FPN."""
    backbone = build_backbone_from_cfg(cfg)
    preprocessor = _preprocessor(cfg, backbone)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    bh = cfg.MODEL.ROI_BOX_HEAD
    if cfg.MODEL.FPN.ENABLED:
        in_features = list(cfg.MODEL.FPN.IN_FEATURES) or [stage_with_stride(backbone, s) for s in (8, 16, 32)]
        backbone.set_out_features(in_features)
        backbone.split_after(backbone.out_features[-1])
        shapes = backbone.output_shape()
        out_ch = cfg.MODEL.FPN.OUT_CHANNELS
        neck = FPNNeck(in_features, [shapes[f].channels for f in in_features], out_ch)
        rpn_features = in_features + ["pool"]
        rpn = build_rpn(cfg, {f: ShapeSpec(channels=out_ch) for f in rpn_features}, rpn_features)
        res = 7
        pooler = MultiScaleRoIAlign(in_features, output_size=res, sampling_ratio=bh.POOLER_SAMPLING_RATIO or 2)
        box_head = FCBoxHead(out_ch * res * res, [bh.FC_DIM, bh.FC_DIM])
        predictor = FastRCNNPredictor(box_head.out_features, num_classes)
    else:
        neck = None
        feature = resolve_stage(backbone, cfg.MODEL.BACKBONE.RPN_FEATURE, 16, "MODEL.BACKBONE.RPN_FEATURE")
        backbone.set_out_features([feature])
        tail = backbone.split_after(feature)
        if not len(tail):
            raise ValueError(f"C4 Faster R-CNN needs stages after {feature!r} to use as the box head")
        tail = convert_norm(tail, resolve_norm(cfg))
        rpn = build_rpn(cfg, backbone.output_shape(), [feature])
        stride = backbone.output_shape()[feature].stride
        pooler = RoIAlignPooler(feature, stride, bh.POOLER_RESOLUTION, bh.POOLER_SAMPLING_RATIO)
        box_head = C4BoxHead(tail)
        predictor = FastRCNNPredictor(backbone.stage_shape(list(tail.keys())[-1]).channels, num_classes)
    backbone = convert_norm(backbone, resolve_norm(cfg))
    return RCNN(backbone, rpn, _roi_heads(cfg, pooler, box_head, predictor), preprocessor, neck)


@META_ARCH_REGISTRY.register()
def LightHeadRCNN(cfg) -> RCNN:
    """Light-Head R-CNN: RPN on the stride-16 stage; large separable conv on the last
    stage -> thin map of C x k x k channels; PS RoIAlign k x k; one FC; predictors."""
    backbone = build_backbone_from_cfg(cfg)
    preprocessor = _preprocessor(cfg, backbone)
    rpn_feature = resolve_stage(backbone, cfg.MODEL.BACKBONE.RPN_FEATURE, 16, "MODEL.BACKBONE.RPN_FEATURE")
    head_feature = resolve_stage(backbone, cfg.MODEL.BACKBONE.HEAD_FEATURE, 32, "MODEL.BACKBONE.HEAD_FEATURE")
    backbone.set_out_features([rpn_feature, head_feature])
    backbone.split_after(backbone.out_features[-1])  # unused later stages would idle in DDP
    backbone = convert_norm(backbone, resolve_norm(cfg))
    shapes = backbone.output_shape()

    lh = cfg.MODEL.LIGHT_HEAD
    k = lh.POOLER_RESOLUTION
    thin_channels = lh.CHANNELS_PER_BIN * k * k
    neck = LightHeadNeck(
        head_feature, LargeSeparableConv(shapes[head_feature].channels, lh.MID_CHANNELS, thin_channels, lh.KERNEL_SIZE)
    )
    rpn = build_rpn(cfg, shapes, [rpn_feature])
    pooler = PSRoIAlignPooler(neck.out_name, shapes[head_feature].stride, k, cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO)
    # the authors' ps_fc_1 is N(0, 0.01) (light_head_rcnn network_desp.py, weights_initializer)
    box_head = FCBoxHead(lh.CHANNELS_PER_BIN * k * k, [lh.FC_DIM], weight_std=lh.FC_INIT_STD or None)
    predictor = FastRCNNPredictor(box_head.out_features, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    ohem = lh.OHEM_TOPK if lh.OHEM else 0
    return RCNN(backbone, rpn, _roi_heads(cfg, pooler, box_head, predictor, ohem), preprocessor, neck)


def build_model(cfg) -> RCNN:
    """Build ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.MODEL.DEVICE``; load MODEL.WEIGHTS elsewhere
    (the checkpointer) so that building never touches the file system."""
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    return model.to(torch.device(cfg.MODEL.DEVICE))
