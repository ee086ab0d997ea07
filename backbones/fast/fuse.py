"""`fuse_model`: the inference form of a trained backbone, classifier or detector."""
from __future__ import annotations

import copy
from typing import Optional, TypeVar

import torch
from torch import nn

from .fold import fold_batchnorms
from .inference import ModuleBuilders, swap_modules
from .winograd import winograd_if_wide

__all__ = ["fuse_model", "CHANNELS_LAST_MODULES"]

#: the inference modules of the channels-last form: the wide dense 3x3 convs (the RPN's) as
#: Winograd F(4x4, 3x3) on CPU. The NCHW export form keeps the trained modules, BN folded.
CHANNELS_LAST_MODULES: ModuleBuilders = {nn.Conv2d: winograd_if_wide}

M = TypeVar("M", bound=nn.Module)


def fuse_model(
    model: M, inplace: bool = False, channels_last: bool = True, modules: Optional[ModuleBuilders] = None
) -> M:
    """The inference form of any model of this package (backbone, classifier, detector).

    Folds every BatchNorm into its conv (`FoldedConv2d`), and with ``channels_last`` swaps
    in the channels-last inference modules (`CHANNELS_LAST_MODULES`: Winograd for the wide
    dense 3x3 convs on CPU) and stores 4-d weights channels-last (depthwise convs and
    max-pools are several times faster on NHWC data on CPU); ``channels_last=False`` keeps
    NCHW and plain convs, the form to export to ONNX (whose convs are NCHW). ``modules``
    adds inference modules for both forms (a detector's heads). ``model`` must be in eval
    mode; the result refuses ``train()``. Returns a fused deep copy, or ``model`` itself
    fused when ``inplace``. Idempotent: fusing a fused model changes nothing.
    """
    if model.training:
        raise RuntimeError(
            f"{type(model).__name__}.fuse() is for inference: call .eval() first (folding freezes the "
            "BatchNorm statistics that training would update)"
        )
    builders = {**(CHANNELS_LAST_MODULES if channels_last else {}), **(modules or {})}
    if type(model) in builders:
        raise TypeError(f"fuse_model swaps the modules inside a model, not the model itself ({type(model).__name__})")
    if not inplace:
        model = copy.deepcopy(model)
    fold_batchnorms(model)
    swap_modules(model, builders)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model.eval()
