"""The `Backbone` interface shared by every network in this package.

Modelled on detectron2's `Backbone`: ``forward(x)`` returns a dict of named stage
outputs and ``output_shape()`` describes each of them with a `ShapeSpec`, so heads
read channel counts and strides instead of typing them twice.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from .fast import check_trainable, fuse_model

__all__ = ["ShapeSpec", "Backbone", "Stage", "freeze_module"]


@dataclass(frozen=True)
class ShapeSpec:
    """Shape of one feature map, as in detectron2 (all fields optional)."""

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    stride: Optional[int] = None


@dataclass(frozen=True)
class Stage:
    """A named stage: the module, its output width and its cumulative stride."""

    name: str
    module: nn.Module
    channels: int
    stride: int


def freeze_module(module: nn.Module) -> nn.Module:
    """Stop gradients in ``module`` and replace its BatchNorms by `FrozenBatchNorm2d`.

    Returns the (possibly new) module: a bare BatchNorm2d is replaced, not mutated.
    """
    for p in module.parameters():
        p.requires_grad_(False)
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        frozen.weight.copy_(module.weight.detach())
        frozen.bias.copy_(module.bias.detach())
        frozen.running_mean.copy_(module.running_mean)
        frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new_child = freeze_module(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


class Backbone(nn.Module):
    """A feed-forward network made of named stages run one after the other.

    Subclasses build their stages and hand them to `_init_stages`; everything else
    (stage selection, freezing, output shapes, the forward loop) lives here.

    Args (common to every subclass):
        out_features: names of the stages whose outputs `forward` returns.
            Defaults to the last stage.
        freeze_at: freeze the first ``freeze_at`` stages (0 = nothing frozen,
            1 = the stem, 2 = stem and the first stage after it, ...). Frozen
            stages get ``requires_grad=False`` and `FrozenBatchNorm2d`.
    """

    #: Input convention of the weights the model was built for (see `backbones.weights`).
    input_format: str = "RGB"

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleDict()
        self._stage_channels: Dict[str, int] = {}
        self._stage_strides: Dict[str, int] = {}
        self._out_features: List[str] = []

    # ------------------------------------------------------------------ set-up
    def _init_stages(
        self,
        stages: Sequence[Stage],
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
    ) -> None:
        for stage in stages:
            self.stages[stage.name] = stage.module
            self._stage_channels[stage.name] = stage.channels
            self._stage_strides[stage.name] = stage.stride
        self.set_out_features(out_features)
        self.freeze(freeze_at)

    def set_out_features(self, out_features: Optional[Sequence[str]] = None) -> "Backbone":
        """Choose which stage outputs `forward` returns (default: the last stage)."""
        names = list(self.stages.keys())
        if out_features is None:
            out_features = [names[-1]]
        unknown = [f for f in out_features if f not in self.stages]
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown out_features {unknown}; stages are {names}"
            )
        if not out_features:
            raise ValueError(f"{type(self).__name__}: out_features must not be empty")
        self._out_features = sorted(set(out_features), key=names.index)
        return self

    # -------------------------------------------------------------- interface
    @property
    def stage_names(self) -> List[str]:
        return list(self.stages.keys())

    @property
    def out_features(self) -> List[str]:
        return list(self._out_features)

    @property
    def size_divisibility(self) -> int:
        """Input sides must be a multiple of this for stage outputs to align."""
        return max(self._stage_strides[f] for f in self._out_features)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._stage_channels[name], stride=self._stage_strides[name])
            for name in self._out_features
        }

    def stage_shape(self, name: str) -> ShapeSpec:
        """Shape of any stage, requested or not (e.g. the stage a C4 head borrows)."""
        return ShapeSpec(channels=self._stage_channels[name], stride=self._stage_strides[name])

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects NCHW input, got shape {tuple(x.shape)}")
        # After fuse() (channels-last) no input conversion is needed: the channels-last stem
        # weights make the first conv write channels-last output (cheaper than converting the image).
        outputs: Dict[str, Tensor] = OrderedDict()
        remaining = set(self._out_features)
        for name, stage in self.stages.items():
            x = stage(x)
            if name in remaining:
                outputs[name] = x
                remaining.discard(name)
                if not remaining:
                    break
        return outputs

    # ---------------------------------------------------------------- editing
    def fuse(self, inplace: bool = False, channels_last: bool = True) -> "Backbone":
        """Inference fast path (eval mode only): BatchNorm folded into the convs,
        channels-last weights and activations. Outputs equal the unfused model's up to
        float rounding. Returns a fused copy (``inplace=False``, the default) or fuses this
        model; ``channels_last=False`` keeps NCHW (for ONNX export). The result refuses
        ``train()``. See `backbones.fast.fuse_model`."""
        return fuse_model(self, inplace=inplace, channels_last=channels_last)

    def train(self, mode: bool = True) -> "Backbone":
        check_trainable(self, mode)
        return super().train(mode)

    def freeze(self, freeze_at: int = 0) -> "Backbone":
        """Freeze the first ``freeze_at`` stages (see class docstring)."""
        if freeze_at < 0 or freeze_at > len(self.stages):
            raise ValueError(
                f"freeze_at={freeze_at} out of range 0..{len(self.stages)} for stages {self.stage_names}"
            )
        for name in self.stage_names[:freeze_at]:
            self.stages[name] = freeze_module(self.stages[name])
        self._freeze_at = freeze_at
        return self

    def split_after(self, name: str) -> "nn.ModuleDict":
        """Remove and return the stages after ``name``.

        Used by C4-style detectors, which run the backbone up to the stride-16 stage and
        reuse the remaining stage(s) as the per-RoI box head.
        """
        names = self.stage_names
        if name not in names:
            raise ValueError(f"unknown stage {name!r}; stages are {names}")
        tail = nn.ModuleDict()
        for later in names[names.index(name) + 1 :]:
            tail[later] = self.stages.pop(later)
            self._out_features = [f for f in self._out_features if f != later]
        if not self._out_features:
            self._out_features = [name]
        return tail
