"""Backbone construction from the config, and picking stages by stride."""
from __future__ import annotations

import logging

from torch import nn

import backbones
from backbones import Backbone
from backbones.base import freeze_module
from detection.config_checks import resolve_norm  # the meta-architectures read the policy here

logger = logging.getLogger(__name__)

__all__ = ["build_backbone_from_cfg", "stage_with_stride", "convert_norm", "resolve_norm"]


def stage_with_stride(backbone: Backbone, stride: int, *, prefer_body: bool = True) -> str:
    """Name of the last stage with the given cumulative stride.

    With ``prefer_body`` the network's final 1x1 "head" conv (ShuffleNet v2 ``conv5``,
    MobileNet v2 ``conv_last``) is skipped when a body stage of the same stride exists:
    detection heads sit on the body output, as in the papers' detection setting.
    """
    names = [n for n in backbone.stage_names if backbone.stage_shape(n).stride == stride]
    if not names:
        strides = {n: backbone.stage_shape(n).stride for n in backbone.stage_names}
        raise ValueError(f"backbone has no stage of stride {stride}; stage strides: {strides}")
    if prefer_body:
        body = [n for n in names if n.startswith("stage")]
        if body:
            return body[-1]
    return names[-1]


def resolve_stage(backbone: Backbone, name: str, default_stride: int, key: str) -> str:
    """``name`` from the config, or the default stage of ``default_stride`` when empty."""
    if not name:
        return stage_with_stride(backbone, default_stride)
    if name not in backbone.stage_names:
        raise ValueError(f"{key}={name!r} is not a stage of this backbone; stages: {backbone.stage_names}")
    return name


def convert_norm(module: nn.Module, norm: str) -> nn.Module:
    """Apply a concrete norm policy (`detection.config_checks.resolve_norm`) to ``module``;
    returns the possibly new module."""
    if norm == "BN":
        return module
    if norm == "FrozenBN":
        return _freeze_bn_only(module)
    if norm == "SyncBN":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    raise ValueError(f"MODEL.BACKBONE.NORM must be one of BN, FrozenBN, SyncBN; got {norm!r}")


def _freeze_bn_only(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d):
        return freeze_module(module)
    for child_name, child in module.named_children():
        new = _freeze_bn_only(child)
        if new is not child:
            setattr(module, child_name, new)
    return module


def build_backbone_from_cfg(cfg) -> Backbone:
    """Build ``cfg.MODEL.BACKBONE.NAME`` (`backbones.build_backbone`) and load its ImageNet
    weights if configured.

    All stages are built; the meta-architecture then picks its outputs
    (`Backbone.set_out_features`) and drops unused stages (`Backbone.split_after`).
    """
    bcfg = cfg.MODEL.BACKBONE
    backbone = backbones.build_backbone(bcfg.NAME, out_features=None, freeze_at=0)
    if bcfg.WEIGHTS:
        from backbones.weights import load_checkpoint

        report = load_checkpoint(backbone, bcfg.WEIGHTS, layout=bcfg.WEIGHTS_LAYOUT)
        logger.info("backbone weights %s: %s", bcfg.WEIGHTS, report)
    backbone.freeze(bcfg.FREEZE_AT)
    return backbone
