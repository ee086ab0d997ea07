"""From a config to the module that gets exported or timed, and its example input.

Three parts of a detector can be deployed:

- ``detector``: the whole model (`TracingDetector`), for ONNX Runtime / TorchScript;
- ``dense``: backbone + neck + RPN head convolutions (`DenseDetector`), everything before
  proposal decoding, NMS and RoIAlign: the part ncnn runs on ARM boards, where the
  rest is done on the host;
- ``backbone``: the backbone's feature maps (`BackboneFeatures`).

Every part takes the same input: a 0-255 image in INPUT.FORMAT channel order,
normalised inside the graph.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np
from torch import Tensor, nn

from .wrappers import BackboneFeatures, TracingDetector

if TYPE_CHECKING:
    from detection.model_info import ModelInfo

__all__ = [
    "PARTS", "DenseDetector", "load_detector", "load_trained_detector", "fuse_for_deploy", "deployable", "default_input_size", "input_size",
    "parse_size", "sample_image", "example_tensor",
]

logger = logging.getLogger(__name__)

PARTS = ("detector", "dense", "backbone")


class DenseDetector(nn.Module):
    """Normalised backbone + neck features and RPN head outputs as a flat tuple:
    ``(features in `feature_names` order..., rpn objectness per level..., rpn deltas per level...)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.feature_names = list(model.rpn.in_features)
        pooled = getattr(model.roi_heads.box_roi_pool, "feature_name", None)
        if pooled and pooled not in self.feature_names:
            self.feature_names.append(pooled)

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        m = self.model
        x = (image - m.transform.pixel_mean) / m.transform.pixel_std
        features = m.extract_features(x)
        logits, deltas = m.rpn.head([features[n] for n in m.rpn.in_features])
        return (*[features[n] for n in self.feature_names], *logits, *deltas)


def load_trained_detector(cfg) -> Tuple[nn.Module, Optional["ModelInfo"]]:
    """``build_model(cfg)`` with MODEL.WEIGHTS loaded, in eval mode, and the `ModelInfo` the
    checkpoint records (None when none). The file must fill every tensor of the model and
    record the config's architecture (`detection.checkpoint.CheckpointError` otherwise):
    an export or a timing of partly random weights is not the trained model's."""
    from detection.checkpoint import DetectionCheckpointer
    from detection.model_info import model_info_from_cfg
    from detection.modeling import build_model

    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model, model_info=model_info_from_cfg(cfg), require_complete=True)
    if cfg.MODEL.WEIGHTS:
        checkpointer.load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: using an untrained model")
    return model.eval(), checkpointer.loaded_info


def load_detector(cfg) -> nn.Module:
    """``build_model(cfg)`` with MODEL.WEIGHTS loaded, in eval mode (`load_trained_detector`)."""
    return load_trained_detector(cfg)[0]


def fuse_for_deploy(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """``model.fuse()`` (BatchNorm folded into the convs, fused units) in place: NCHW for
    the exporters, ``channels_last`` for eager or compiled PyTorch. A model without
    ``fuse()`` is returned unchanged, with a warning."""
    if not hasattr(model, "fuse"):
        logger.warning("%s has no fuse() method; using it unfused", type(model).__name__)
        return model
    return model.fuse(inplace=True, channels_last=channels_last)


def deployable(model: nn.Module, part: str) -> Tuple[nn.Module, List[str]]:
    """The wrapper for ``part`` (one of `PARTS`) and its output names."""
    if part == "detector":
        return TracingDetector(model).eval(), ["boxes", "scores", "labels"]
    if part == "backbone":
        names = list(model.backbone.out_features)
        transform = model.transform
        return BackboneFeatures(model.backbone, names, transform.pixel_mean, transform.pixel_std).eval(), names
    if part == "dense":
        dense = DenseDetector(model).eval()
        levels = len(model.rpn.in_features)
        names = list(dense.feature_names) + [f"rpn_logits_{i}" for i in range(levels)]
        return dense, names + [f"rpn_deltas_{i}" for i in range(levels)]
    raise ValueError(f"part must be one of {PARTS}, got {part!r}")


def parse_size(text: str) -> Tuple[int, int]:
    """``"HxW"`` (or one number for a square) -> (H, W); ValueError with the text otherwise."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise ValueError(f"size {text!r} must be HxW with positive integers, e.g. 480x640")
    return values[0], values[1]


def default_input_size(cfg, divisibility: int = 32) -> Tuple[int, int]:
    """What the test-time resize (INPUT.MIN_SIZE_TEST on the short side, the long side
    capped at INPUT.MAX_SIZE_TEST, 0 = no cap; MIN_SIZE_TEST 0 = no resize) makes of a
    480x640 photo, each side rounded up to a multiple of ``divisibility``."""
    from detection.data.transforms import resize_shortest_edge_shape

    min_size = cfg.INPUT.MIN_SIZE_TEST
    min_size = int(min_size[0] if isinstance(min_size, (list, tuple)) else min_size)
    height, width = 480, 640
    if min_size > 0:
        height, width = resize_shortest_edge_shape(height, width, min_size, int(cfg.INPUT.MAX_SIZE_TEST))
    up = lambda v: int(math.ceil(v / divisibility) * divisibility)  # noqa: E731
    return up(height), up(width)


def input_size(cfg, part: str, divisibility: int, size: str = "") -> Tuple[int, int]:
    """``(H, W)`` of the fixed input of ``part``: ``size`` (``"HxW"``) or else
    `default_input_size`. Every part but the whole detector (which pads inside the graph)
    needs sides divisible by ``divisibility``; ValueError naming the problem otherwise."""
    height, width = parse_size(size) if size else default_input_size(cfg, divisibility)
    if part != "detector" and (height % divisibility or width % divisibility):
        raise ValueError(f"the {part} part needs sides divisible by {divisibility}, got {height}x{width}")
    return height, width


def sample_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic BGR test picture: a litedet_shapes image (`render_shapes_image`), so a
    trained detector has something to find and scores are not all ties."""
    from detection.data.shapes import render_shapes_image

    rgb, _ = render_shapes_image(np.random.default_rng(seed), image_size=(height, width))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def example_tensor(image_bgr: np.ndarray, height: int, width: int, input_format: str, batch: int = 1) -> Tensor:
    from .wrappers import detector_input

    x = detector_input(image_bgr, height, width, input_format)
    return x.repeat(batch, 1, 1, 1) if batch > 1 else x
