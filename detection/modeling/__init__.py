"""Detectors: `build_model(cfg)` and the parts they are made of."""
from .backbone import build_backbone_from_cfg, stage_with_stride
from .meta_arch import META_ARCH_REGISTRY, RCNN, build_model
from .light_head import LargeSeparableConv

__all__ = ["META_ARCH_REGISTRY", "RCNN", "build_model", "build_backbone_from_cfg", "stage_with_stride", "LargeSeparableConv"]
