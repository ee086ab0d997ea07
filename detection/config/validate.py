"""Config checks beyond the key schema, run before anything is trained or loaded.

`validate_config` raises one `ConfigError` line naming the key(s) and what is wrong:
registered names (backbone, meta-architecture; the message lists the registered ones),
value ranges and choices, and incompatible model settings, found by building the model
on PyTorch's ``meta`` device (no memory, no weights, well under a second) so that every
check the builders make — stage names and strides, anchor levels, position-sensitive
RoIAlign channels, ... — is reported here instead of as a traceback halfway through
start-up.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Iterable, List

from .config import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["validate_config", "check_backbone_name", "resolve_device", "BAD_SAMPLE_POLICIES"]

BAD_SAMPLE_POLICIES = ("error", "skip")


def _unknown(key: str, value: str, registered: Iterable[str]) -> ConfigError:
    names = sorted(registered)
    close = difflib.get_close_matches(value, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(f"{key}: unknown {value!r}{hint} (registered: {', '.join(names)})")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_backbone_name(name: str, key: str = "MODEL.BACKBONE.NAME") -> None:
    """`ConfigError` listing the registered variants (closest first) when ``name`` is not one."""
    import backbones

    if name not in backbones.list_backbones():
        raise _unknown(key, name, backbones.list_backbones())


def resolve_device(cfg: Any) -> "torch.device":
    """``MODEL.DEVICE`` as a `torch.device`; `ConfigError` if unparsable or CUDA is absent."""
    import torch

    try:
        device = torch.device(cfg.MODEL.DEVICE)
    except RuntimeError as err:
        raise ConfigError(f"MODEL.DEVICE: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available here; use MODEL.DEVICE cpu")
    return device


def _check_values(cfg: Any) -> None:
    m, inp, dl = cfg.MODEL, cfg.INPUT, cfg.DATALOADER
    _require(m.ROI_HEADS.NUM_CLASSES > 0, f"MODEL.ROI_HEADS.NUM_CLASSES must be positive, got {m.ROI_HEADS.NUM_CLASSES}")
    _require(
        len(m.PIXEL_MEAN) == len(m.PIXEL_STD) == 3 and all(s > 0 for s in m.PIXEL_STD),
        f"MODEL.PIXEL_MEAN/PIXEL_STD must be 3 numbers each, std > 0; got {list(m.PIXEL_MEAN)} / {list(m.PIXEL_STD)}",
    )
    for key, ths in (("MODEL.RPN.IOU_THRESHOLDS", m.RPN.IOU_THRESHOLDS), ("MODEL.ROI_HEADS.IOU_THRESHOLDS", m.ROI_HEADS.IOU_THRESHOLDS)):
        _require(
            len(ths) >= 1 and all(0.0 <= t <= 1.0 for t in ths) and list(ths) == sorted(ths),
            f"{key} must be increasing values in [0, 1], got {list(ths)}",
        )
    _require(inp.FORMAT in ("RGB", "BGR"), f"INPUT.FORMAT must be 'RGB' or 'BGR', got {inp.FORMAT!r}")
    sizes = [inp.MIN_SIZE_TRAIN] if isinstance(inp.MIN_SIZE_TRAIN, int) else list(inp.MIN_SIZE_TRAIN)
    _require(sizes and all(s > 0 for s in sizes), f"INPUT.MIN_SIZE_TRAIN must be positive sizes, got {inp.MIN_SIZE_TRAIN}")
    _require(inp.MIN_SIZE_TEST >= 0, f"INPUT.MIN_SIZE_TEST must be >= 0 (0 = no resize), got {inp.MIN_SIZE_TEST}")
    _require(inp.MAX_IMAGE_PIXELS >= 0, f"INPUT.MAX_IMAGE_PIXELS must be >= 0 (0 = no limit), got {inp.MAX_IMAGE_PIXELS}")
    _require(
        str(inp.RANDOM_FLIP).lower() in ("none", "horizontal", "vertical"),
        f"INPUT.RANDOM_FLIP must be 'none', 'horizontal' or 'vertical', got {inp.RANDOM_FLIP!r}",
    )
    _require(dl.NUM_WORKERS >= 0, f"DATALOADER.NUM_WORKERS must be >= 0, got {dl.NUM_WORKERS}")
    _require(
        str(dl.BAD_SAMPLE_POLICY).lower() in BAD_SAMPLE_POLICIES,
        f"DATALOADER.BAD_SAMPLE_POLICY must be one of {list(BAD_SAMPLE_POLICIES)}, got {dl.BAD_SAMPLE_POLICY!r}",
    )
    _require(
        0.0 <= float(dl.MAX_BAD_SAMPLE_FRACTION) <= 1.0,
        f"DATALOADER.MAX_BAD_SAMPLE_FRACTION must be in [0, 1], got {dl.MAX_BAD_SAMPLE_FRACTION}",
    )
    lh = m.LIGHT_HEAD
    _require(lh.KERNEL_SIZE > 0 and lh.KERNEL_SIZE % 2 == 1, f"MODEL.LIGHT_HEAD.KERNEL_SIZE must be odd, got {lh.KERNEL_SIZE}")
    for key in ("MID_CHANNELS", "CHANNELS_PER_BIN", "POOLER_RESOLUTION", "FC_DIM"):
        _require(lh[key] > 0, f"MODEL.LIGHT_HEAD.{key} must be positive, got {lh[key]}")
    _require(m.ROI_BOX_HEAD.POOLER_RESOLUTION > 0, "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION must be positive")


def _stage_strides(cfg: Any) -> List[tuple]:
    import torch

    import backbones

    with torch.device("meta"):
        net = backbones.build_backbone(cfg.MODEL.BACKBONE.NAME)
    return [(n, net.stage_shape(n).stride) for n in net.stage_names]


def _check_features(cfg: Any) -> None:
    """Named stages exist, and the Light-Head thin map does not come before the RPN's."""
    strides = dict(_stage_strides(cfg))
    bb = cfg.MODEL.BACKBONE
    for key in ("RPN_FEATURE", "HEAD_FEATURE"):
        name = bb[key]
        _require(not name or name in strides, f"MODEL.BACKBONE.{key}: {name!r} is not a stage of {bb.NAME}; stages (stride): {strides}")
    if cfg.MODEL.META_ARCHITECTURE == "LightHeadRCNN":
        rpn_stride = strides[bb.RPN_FEATURE] if bb.RPN_FEATURE else 16  # the builders' defaults
        head_stride = strides[bb.HEAD_FEATURE] if bb.HEAD_FEATURE else 32
        _require(
            head_stride >= rpn_stride,
            f"MODEL.BACKBONE.HEAD_FEATURE {bb.HEAD_FEATURE or 'default'!r} (stride {head_stride}) is finer than "
            f"MODEL.BACKBONE.RPN_FEATURE {bb.RPN_FEATURE or 'default'!r} (stride {rpn_stride}); "
            "the thin feature map must be at least as coarse as the RPN's",
        )
    if cfg.MODEL.FPN.ENABLED:
        _require(cfg.MODEL.META_ARCHITECTURE == "FasterRCNN", "MODEL.FPN.ENABLED needs MODEL.META_ARCHITECTURE FasterRCNN")
        for name in cfg.MODEL.FPN.IN_FEATURES:
            _require(name in strides, f"MODEL.FPN.IN_FEATURES: {name!r} is not a stage of {bb.NAME}; stages (stride): {strides}")


def _check_build(cfg: Any) -> None:
    """Run the real builder on the meta device; its ValueErrors are config errors."""
    import torch

    from detection.modeling import META_ARCH_REGISTRY

    try:
        with torch.device("meta"):
            META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    except (ValueError, AssertionError, KeyError, IndexError) as err:
        raise ConfigError(f"model config ({cfg.MODEL.META_ARCHITECTURE} + {cfg.MODEL.BACKBONE.NAME}): {err}") from None


def validate_config(cfg: Any, build: bool = True) -> None:
    """Raise `ConfigError` for the first problem found (see the module docstring)."""
    from detection.modeling import META_ARCH_REGISTRY

    check_backbone_name(cfg.MODEL.BACKBONE.NAME)
    archs = [k for k, _ in META_ARCH_REGISTRY]
    if cfg.MODEL.META_ARCHITECTURE not in archs:
        raise _unknown("MODEL.META_ARCHITECTURE", cfg.MODEL.META_ARCHITECTURE, archs)
    _check_values(cfg)
    _check_features(cfg)
    if build:
        _check_build(cfg)
