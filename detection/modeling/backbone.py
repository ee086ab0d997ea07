"""Backbone construction from the config, and picking stages by stride."""
from __future__ import annotations

import logging

import torch
from torch import nn

import backbones
from backbones import Backbone
from backbones.base import freeze_module

logger = logging.getLogger(__name__)

__all__ = ["build_backbone", "stage_with_stride", "convert_norm", "resolve_norm", "NORMS"]

#: Values of MODEL.BACKBONE.NORM ("" = automatic, see `resolve_norm`).
NORMS = ("", "BN", "FrozenBN", "SyncBN")


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


def resolve_norm(cfg) -> str:
    """The BatchNorm policy MODEL.BACKBONE.NORM asks for, made concrete for this run.

    * ``""`` (automatic, the default): ``FrozenBN`` when the backbone starts from ImageNet
      weights (MODEL.BACKBONE.WEIGHTS set) — small per-GPU batches would only corrupt the
      pretrained statistics — and trainable ``BN`` when it is trained from scratch.
    * ``"BN"`` / ``"FrozenBN"``: as written.
    * ``"SyncBN"``: `torch.nn.SyncBatchNorm` (statistics over the whole multi-GPU batch)
      when running distributed on CUDA; otherwise plain ``BN``, with a logged note (there is
      nothing to synchronise in one process, and SyncBatchNorm has no CPU kernel).
    """
    norm = cfg.MODEL.BACKBONE.NORM
    if norm not in NORMS:
        raise ValueError(f"MODEL.BACKBONE.NORM must be one of {', '.join(map(repr, NORMS))}; got {norm!r}")
    if norm == "":
        norm = "FrozenBN" if cfg.MODEL.BACKBONE.WEIGHTS else "BN"
        logger.info(
            "MODEL.BACKBONE.NORM '' (auto): %s (%s)", norm,
            "pretrained MODEL.BACKBONE.WEIGHTS" if norm == "FrozenBN" else "backbone trained from scratch",
        )
    elif norm == "SyncBN":
        from detection.utils import comm

        world = comm.get_world_size()
        if world <= 1 or torch.device(cfg.MODEL.DEVICE).type != "cuda":
            logger.info(
                "MODEL.BACKBONE.NORM SyncBN: using plain BN (%s)",
                "not running distributed" if world <= 1 else "SyncBatchNorm needs CUDA",
            )
            norm = "BN"
    return norm


def convert_norm(module: nn.Module, norm: str) -> nn.Module:
    """Apply a concrete norm policy (see `resolve_norm`) to ``module``; returns the
    possibly new module."""
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


def build_backbone(cfg) -> Backbone:
    """Build ``cfg.MODEL.BACKBONE.NAME`` and load its ImageNet weights if configured.

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
