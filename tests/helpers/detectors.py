"""Small detectors for tests that need a whole model but not its accuracy."""
from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["small_lighthead"]


def small_lighthead(*overrides: Any) -> nn.Module:
    """An eval-mode Light-Head R-CNN on ShuffleNet v2 0.5x with a narrow light head (FC 64,
    16 middle channels, 2 channels per bin), randomly initialised; ``overrides`` are
    ``KEY, VALUE`` pairs as on a tool's command line."""
    from detection.config import get_cfg
    from detection.modeling import build_model

    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "LightHeadRCNN"
    cfg.MODEL.BACKBONE.NAME = "shufflenet_v2_0.5x"
    cfg.MODEL.LIGHT_HEAD.FC_DIM = 64
    cfg.MODEL.LIGHT_HEAD.MID_CHANNELS = 16
    cfg.MODEL.LIGHT_HEAD.CHANNELS_PER_BIN = 2
    cfg.merge_from_list([str(v) for v in overrides])
    return build_model(cfg).eval()
