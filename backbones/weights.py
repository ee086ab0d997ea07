"""Load ImageNet checkpoints from local files into litedet backbones and classifiers.

Three layouts are understood (``layout="auto"`` tells them apart by key names):

``litedet``
    Our own ``state_dict`` (of a `Backbone` or an `ImageClassifier`), bare or wrapped as
    ``{"model": state_dict, ...}`` (what `save_backbone_checkpoint` writes).
``torchvision``
    ``torchvision.models`` checkpoints (ShuffleNet v2, MobileNet v2).
``shufflenet_series``
    The authors' megvii-model/ShuffleNet-Series releases: ``{"state_dict": ...}`` with
    ``module.`` prefixes, inputs in OpenCV BGR order, 0-255, not normalised (the loader
    reports ``input_format="BGR255"`` and sets it on the backbone). The release's stride-2
    shortcut keeps its input width, so at 1.0x/1.5x/2.0x stage2's first unit splits
    24 + (oup - 24) instead of oup/2 + oup/2: those checkpoints load, exactly, into a model
    built with ``shortcut_keeps_input=True`` (e.g. ``build_classifier("shufflenet_v2_1.0x",
    shortcut_keeps_input=True)``); into a default (torchvision-layout) model they are
    refused with that advice. 0.5x splits evenly and loads into either.

The key renaming and channel permutations live in `backbones.converters`; `load_checkpoint`
adapts their canonical keys to the target (``backbone.`` prefix for an `ImageClassifier`;
the head is dropped, and listed, for a bare `Backbone`). Files are read and written by
`backbones.checkpoint_io`: read as data only (a pickle that would run code is refused,
never executed), written atomically.
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .base import Backbone
from .checkpoint_io import CheckpointError, UnsafeCheckpointError, atomic_torch_save, read_state_dict
from .classifier import ImageClassifier
from .converters import (
    CONVERTERS,
    convert_litedet,
    convert_shufflenet_series_shufflenet_v1,
    convert_shufflenet_series_shufflenet_v2,
    convert_torchvision_mobilenet_v2,
    convert_torchvision_shufflenet_v2,
    get_converter,
)
from .registry import BACKBONE_REGISTRY

__all__ = [
    "LoadReport",
    "CheckpointError",
    "UnsafeCheckpointError",
    "load_checkpoint",
    "save_backbone_checkpoint",
    "read_state_dict",
    "detect_layout",
    "family_of",
    "CONVERTERS",
    "LAYOUTS",
    "INPUT_FORMATS",
    "convert_litedet",
    "convert_torchvision_shufflenet_v2",
    "convert_torchvision_mobilenet_v2",
    "convert_shufflenet_series_shufflenet_v2",
    "convert_shufflenet_series_shufflenet_v1",
]

StateDict = Dict[str, Tensor]

#: Layouts `load_checkpoint` accepts besides ``"auto"``.
LAYOUTS: Tuple[str, ...] = ("litedet", "torchvision", "shufflenet_series")
#: Input convention each layout's weights were trained with.
INPUT_FORMATS: Dict[str, str] = {
    "litedet": "RGB",  # unless the checkpoint records another (save_backbone_checkpoint does)
    "torchvision": "RGB",  # RGB in [0, 1], ImageNet mean/std normalised
    "shufflenet_series": "BGR255",  # OpenCV BGR, 0-255, no normalisation
}
_HEAD_PREFIX = "fc."
_BACKBONE_PREFIX = "stages."


@dataclass
class LoadReport:
    """What `load_checkpoint` did.

    ``missing_keys``: model tensors the checkpoint did not provide (left as they were).
    ``unexpected_keys``: checkpoint tensors with no place in the model (ignored).
    ``dropped_keys``: the classifier head, skipped on purpose when loading into a bare
    `Backbone`. ``input_format``: ``"RGB"`` (normalised RGB, torchvision/litedet) or
    ``"BGR255"`` (OpenCV BGR, 0-255, no normalisation: the authors' ShuffleNet-Series).
    """

    path: str
    layout: str
    family: str
    input_format: str
    loaded_keys: List[str] = field(default_factory=list)
    missing_keys: List[str] = field(default_factory=list)
    unexpected_keys: List[str] = field(default_factory=list)
    dropped_keys: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        def few(keys: Sequence[str]) -> str:
            shown = ", ".join(keys[:5])
            return shown + (f", ... (+{len(keys) - 5})" if len(keys) > 5 else "")

        lines = [
            f"loaded {len(self.loaded_keys)} tensors from {self.path} "
            f"(layout={self.layout}, family={self.family}, input_format={self.input_format})"
        ]
        if self.missing_keys:
            lines.append(f"  missing ({len(self.missing_keys)}): {few(self.missing_keys)}")
        if self.unexpected_keys:
            lines.append(f"  unexpected ({len(self.unexpected_keys)}): {few(self.unexpected_keys)}")
        if self.dropped_keys:
            lines.append(f"  classifier head not loaded into a bare backbone: {few(self.dropped_keys)}")
        return "\n".join(lines)




# ---------------------------------------------------------------- layouts
def detect_layout(state_dict: Mapping[str, Tensor]) -> str:
    """Guess the layout of ``state_dict`` from its key names (``module.`` already stripped)."""
    keys = list(state_dict)

    def any_start(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    if any_start("stages.", "backbone.stages."):
        return "litedet"
    if any_start("first_conv.") or any(".branch_main" in k for k in keys):
        return "shufflenet_series"
    if any_start("features.") and any_start("classifier."):
        return "torchvision"
    if any_start("conv1.") and any_start("stage2.", "conv5."):
        return "torchvision"
    raise CheckpointError(
        f"cannot tell the layout from the keys (first ones: {keys[:4]}); pass layout= one of {list(LAYOUTS)}"
    )


def family_of(model: nn.Module) -> str:
    """Family name of a backbone (or of an `ImageClassifier`'s backbone), from the registry."""
    backbone = model.backbone if isinstance(model, ImageClassifier) else model
    for _, variant in BACKBONE_REGISTRY:
        if variant.builder is type(backbone):
            return variant.family
    return type(backbone).__name__.lower()


def _shufflenet_v2_fit_hint(canonical: Mapping[str, Tensor], backbone: nn.Module) -> Optional[str]:
    """Why a ShuffleNetV2 checkpoint's shapes do not fit: the stride-2 shortcut widths of the
    checkpoint and of the model disagree (``shortcut_keeps_input``)."""

    def uneven(shapes: Mapping[str, Any]) -> List[str]:
        found = []
        for stage in ("stage2", "stage3", "stage4"):
            short = shapes.get(f"stages.{stage}.0.branch1.2.weight")
            main = shapes.get(f"stages.{stage}.0.branch2.5.weight")
            if short is not None and main is not None and short[0] != main[0]:
                found.append(f"{stage}: {short[0]} shortcut + {main[0]} main channels")
        return found

    ckpt = uneven({k: tuple(v.shape) for k, v in canonical.items()})
    model = uneven({k: tuple(v.shape) for k, v in backbone.state_dict().items()})
    width = getattr(backbone, "width_mult", None)
    name = f"shufflenet_v2_{width:.1f}x" if isinstance(width, float) else "shufflenet_v2_<width>"
    if ckpt and not model:
        return (
            f"the checkpoint is the authors' ShuffleNet-Series network, whose stride-2 shortcut keeps its input "
            f"width ({'; '.join(ckpt)}), and the model splits evenly (torchvision's unit). Build the model with "
            f"shortcut_keeps_input=True, e.g. build_classifier({name!r}, shortcut_keeps_input=True) or "
            f"build_backbone({name!r}, shortcut_keeps_input=True)."
        )
    if model and not ckpt:
        return (
            f"the model was built with shortcut_keeps_input=True ({'; '.join(model)}), the layout of the authors' "
            f"ShuffleNet-Series release, but the checkpoint splits evenly (torchvision's unit). Build the model "
            f"without shortcut_keeps_input."
        )
    return None


#: family -> ``hint(canonical_state_dict, backbone)``: a sentence explaining a shape mismatch
#: (e.g. which build option the checkpoint needs), or None.
_FIT_HINTS: Dict[str, Callable[[Mapping[str, Tensor], nn.Module], Optional[str]]] = {
    "shufflenet_v2": _shufflenet_v2_fit_hint,
}


def _drop_zero_head_bias(sd: StateDict, target: Mapping[str, Tensor], source: str) -> None:
    """Fit the checkpoint's FC bias to a classifier built without one (the ShuffleNet
    families' default, as the authors' release): a zero bias, which the converters give
    the authors' bias-free heads, is the same head and is dropped; a real one (torchvision's
    ShuffleNet v2) would change every logit, so it is refused rather than left out."""
    key = _HEAD_PREFIX + "bias"
    if key not in sd or key in target or _HEAD_PREFIX + "weight" not in target:
        return
    if torch.count_nonzero(sd[key]):
        raise CheckpointError(
            f"{source}: the checkpoint's classifier has a non-zero fc.bias and the model's FC has none; "
            "build the classifier with fc_bias=True, e.g. build_classifier(name, fc_bias=True)"
        )
    del sd[key]


# -------------------------------------------------------------------------- load
def load_checkpoint(
    model: nn.Module,
    path: Union[str, os.PathLike],
    *,
    layout: str = "auto",
    strict: bool = False,
) -> LoadReport:
    """Load the checkpoint at ``path`` into ``model`` (a `Backbone` or an `ImageClassifier`).

    Nothing is written into ``model`` unless every check passes: shape mismatches raise
    `CheckpointError` listing each key with both shapes, and with ``strict=True`` so do
    missing or unexpected keys. ``num_batches_tracked`` counters are ignored both ways
    (BN does not use them at inference, and `FrozenBatchNorm2d` has none). A classifier
    without an FC bias takes a checkpoint's zero ``fc.bias`` as no bias and refuses a
    non-zero one (`CheckpointError`: build it with ``fc_bias=True``).

    The backbone's ``input_format`` attribute is set to what the weights expect.
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected 'auto' or one of {list(LAYOUTS)}")
    if isinstance(model, ImageClassifier):
        backbone, prefix = model.backbone, "backbone."
    elif isinstance(model, Backbone):
        backbone, prefix = model, ""
    else:
        raise TypeError(f"load_checkpoint expects a Backbone or an ImageClassifier, got {type(model).__name__}")

    path = os.fspath(path)
    raw, meta = read_state_dict(path)
    if layout == "auto":
        try:
            layout = detect_layout(raw)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
    family = family_of(backbone)
    canonical = get_converter(layout, family)(raw)

    sd: StateDict = OrderedDict()
    dropped: List[str] = []
    for key, value in canonical.items():
        if key.startswith(_BACKBONE_PREFIX):
            sd[prefix + key] = value
        elif key.startswith(_HEAD_PREFIX) and not prefix:
            dropped.append(key)
        else:
            sd[key] = value

    target = model.state_dict()
    for key in [k for k in sd if k.endswith("num_batches_tracked") and k not in target]:
        del sd[key]
    _drop_zero_head_bias(sd, target, f"{path} ({layout} layout)")
    mismatched = [
        f"  {k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in sd.items()
        if k in target and v.shape != target[k].shape
    ]
    if mismatched:
        hint = _FIT_HINTS[family](canonical, backbone) if family in _FIT_HINTS else None
        raise CheckpointError(
            f"{path} ({layout} layout) does not fit {type(backbone).__name__} ({family}): "
            + (f"{hint}\n" if hint else "")
            + f"{len(mismatched)} shape mismatch(es):\n"
            + "\n".join(mismatched)
        )
    missing = [k for k in target if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in target]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path} ({layout} layout), strict load into {type(backbone).__name__}: "
            f"missing {missing[:10]}{' ...' if len(missing) > 10 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)})"
        )
    loadable = OrderedDict((k, v) for k, v in sd.items() if k in target)
    if len(missing) > len(target) // 2:
        warnings.warn(
            f"{path} ({layout} layout) provides only {len(loadable)} of {len(target)} tensors of "
            f"{type(backbone).__name__}; is it a checkpoint of another architecture?",
            stacklevel=2,
        )
    model.load_state_dict(loadable, strict=False)

    input_format = meta.get("input_format") if layout == "litedet" else None
    if not isinstance(input_format, str):
        input_format = INPUT_FORMATS[layout]
    backbone.input_format = input_format
    return LoadReport(
        path=path,
        layout=layout,
        family=family,
        input_format=input_format,
        loaded_keys=list(loadable),
        missing_keys=missing,
        unexpected_keys=unexpected,
        dropped_keys=dropped,
    )


# -------------------------------------------------------------------------- save
def save_backbone_checkpoint(model: nn.Module, path: Union[str, os.PathLike], extra: Optional[Mapping[str, Any]] = None) -> str:
    """Write ``model``'s state dict in our own layout, atomically (`atomic_torch_save`).

    The file holds ``{"model": state_dict, "layout": "litedet", "input_format": ...,
    "arch": class name, **extra}``. ``extra`` must hold plain values (numbers, strings,
    lists, dicts, tensors): the file is read back with ``weights_only=True``.
    """
    path = os.fspath(path)
    backbone = model.backbone if isinstance(model, ImageClassifier) else model
    payload: Dict[str, Any] = {
        "model": OrderedDict((k, v.detach().cpu()) for k, v in model.state_dict().items()),
        "layout": "litedet",
        "input_format": getattr(backbone, "input_format", "RGB"),
        "arch": type(backbone).__name__,
    }
    if extra:
        clash = set(extra) & set(payload)
        if clash:
            raise ValueError(f"extra must not override {sorted(clash)}")
        payload.update(extra)
    return atomic_torch_save(payload, path)
