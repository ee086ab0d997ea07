"""What every inference module shares: the marker class, the refusal to train, the swap."""
from __future__ import annotations

from typing import Callable, Mapping

from torch import nn

__all__ = ["InferenceModule", "ModuleBuilders", "check_trainable", "is_fused", "swap_modules"]

#: training module type -> function building its inference module from a trained instance
ModuleBuilders = Mapping[type, Callable[[nn.Module], nn.Module]]


def _training_refused(model: nn.Module) -> RuntimeError:
    return RuntimeError(
        f"this {type(model).__name__} was fused for inference (BatchNorm folded into the convs, inference-only "
        "modules swapped in) and cannot be trained; fuse a copy (model.fuse()) and train the original"
    )


class InferenceModule(nn.Module):
    """Base of the modules that ``fuse()`` builds from trained ones: eval mode only.

    ``train()`` raises; ``eval()`` stays allowed. Subclasses are built from the trained
    module (``WinogradConv3x3(conv)``, ``ScoredPairRoIHeads.from_heads(heads)``, ...) and
    the builders return them in eval mode.
    """

    def train(self, mode: bool = True) -> "InferenceModule":
        if mode:
            raise _training_refused(self)
        return super().train(False)


def is_fused(model: nn.Module) -> bool:
    """Whether ``model`` holds an inference module (it went through ``fuse()``)."""
    return any(isinstance(m, InferenceModule) for m in model.modules())


def check_trainable(model: nn.Module, mode: bool) -> None:
    """Raise the clear error when ``mode`` asks to train a model holding inference modules,
    before any submodule changes mode (called by the ``train`` of the models that have a
    ``fuse()``)."""
    if mode and is_fused(model):
        raise _training_refused(model)


def swap_modules(module: nn.Module, builders: ModuleBuilders) -> nn.Module:
    """Replace (in place) every submodule whose exact type has a builder by what the
    builder makes of it, the replacements' own submodules included (they may hold trained
    modules that have an inference form too); returns ``module`` itself or, when its own type has a
    builder, its replacement. Subclasses are not swapped: a builder knows one layout. A
    replacement must not hold a module of a type it replaces (it would be swapped again)."""
    build = builders.get(type(module))
    if build is not None:
        module = build(module)
    for name, child in module.named_children():
        new = swap_modules(child, builders)
        if new is not child:
            setattr(module, name, new)
    return module
