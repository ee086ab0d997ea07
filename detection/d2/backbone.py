"""litedet backbones as detectron2 backbones (``MODEL.BACKBONE.NAME``):

- ``build_litedet_backbone``: the stages named by ``MODEL.LITEDET.OUT_FEATURES``;
- ``build_litedet_fpn_backbone``: detectron2's `FPN` (+ max-pooled P6) on top of them.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Sequence

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from torch import Tensor

import backbones
from backbones.registry import register_once
from detection.config_checks import check_weights_input_format
from detection.modeling.backbone import convert_norm

logger = logging.getLogger(__name__)

__all__ = ["LitedetBackbone", "build_litedet_network", "build_litedet_backbone", "build_litedet_fpn_backbone"]


class LitedetBackbone(Backbone):
    """A litedet `backbones.Backbone` behind detectron2's `Backbone` interface.

    Stages after the last requested output are removed (they would hold parameters that
    never get gradients, which DistributedDataParallel rejects). ``size_divisibility`` is
    the coarsest output stride, so every output is exactly ``padded input / stride``.
    """

    def __init__(self, net: backbones.Backbone, out_features: Sequence[str] | None = None) -> None:
        super().__init__()
        net.set_out_features(list(out_features) if out_features else None)
        net.split_after(net.out_features[-1])
        self.net = net
        self._out_features: List[str] = net.out_features
        self._out_feature_channels = {f: net.stage_shape(f).channels for f in self._out_features}
        self._out_feature_strides = {f: net.stage_shape(f).stride for f in self._out_features}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        return self.net(x)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(channels=self._out_feature_channels[f], stride=self._out_feature_strides[f])
            for f in self._out_features
        }

    @property
    def size_divisibility(self) -> int:
        return max(self._out_feature_strides.values())


def build_litedet_network(cfg) -> backbones.Backbone:
    """The whole ``MODEL.LITEDET.BACKBONE`` network with its ImageNet weights loaded
    (``MODEL.LITEDET.WEIGHTS``) and the first ``MODEL.LITEDET.FREEZE_AT`` stages frozen.

    Both the backbone builders and the C4 RoI head (which takes the stages after its
    input feature) start from this, so they share one definition of the weights."""
    lit = cfg.MODEL.LITEDET
    net = backbones.build_backbone(lit.BACKBONE, out_features=None, freeze_at=0)
    if lit.WEIGHTS:
        from backbones.weights import load_checkpoint

        report = load_checkpoint(net, lit.WEIGHTS, layout=lit.WEIGHTS_LAYOUT)
        logger.info("litedet backbone weights %s: %s", lit.WEIGHTS, report)
        check_weights_input_format(cfg, report.input_format, lit.WEIGHTS)
    net.freeze(lit.FREEZE_AT)
    return net


def _check_input_channels(input_shape: ShapeSpec) -> None:
    if input_shape.channels not in (None, 3):
        raise ValueError(
            f"litedet backbones take 3-channel images; the config gives {input_shape.channels} "
            "(len(MODEL.PIXEL_MEAN))"
        )


def build_litedet_backbone(cfg, input_shape: ShapeSpec) -> LitedetBackbone:
    """``MODEL.BACKBONE.NAME: build_litedet_backbone``: the variant ``MODEL.LITEDET.BACKBONE``
    returning the stages ``MODEL.LITEDET.OUT_FEATURES``."""
    _check_input_channels(input_shape)
    backbone = LitedetBackbone(build_litedet_network(cfg), cfg.MODEL.LITEDET.OUT_FEATURES)
    return convert_norm(backbone, cfg.MODEL.LITEDET.NORM)


def build_litedet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """``MODEL.BACKBONE.NAME: build_litedet_fpn_backbone``: detectron2's FPN over
    ``MODEL.FPN.IN_FEATURES`` (stages with strides 8, 16, 32 give P3-P5) plus P6
    max-pooled from P5, as detectron2's ResNet-FPN."""
    _check_input_channels(input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    if not in_features:
        raise ValueError("MODEL.FPN.IN_FEATURES is empty: name the litedet stages the FPN reads")
    out_features = list(cfg.MODEL.LITEDET.OUT_FEATURES) or in_features
    missing = [f for f in in_features if f not in out_features]
    if missing:
        raise ValueError(f"MODEL.FPN.IN_FEATURES {missing} are not in MODEL.LITEDET.OUT_FEATURES {out_features}")
    bottom_up = convert_norm(LitedetBackbone(build_litedet_network(cfg), out_features), cfg.MODEL.LITEDET.NORM)
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


register_once(BACKBONE_REGISTRY, build_litedet_backbone)
register_once(BACKBONE_REGISTRY, build_litedet_fpn_backbone)
