"""`fuse_model`: the inference form of a trained backbone, classifier or detector."""
from __future__ import annotations

import copy
from typing import Optional, TypeVar

import torch
from torch import nn

from ..shufflenet_v2 import ShuffleV2Block
from .fold import fold_batchnorms
from .inference import ModuleBuilders, swap_modules
from .shufflenet_v2 import FusedShuffleV2Block

__all__ = ["fuse_model", "CHANNELS_LAST_MODULES"]

#: the inference modules of the channels-last form (the NCHW export form keeps the trained
#: modules, BN folded)
CHANNELS_LAST_MODULES: ModuleBuilders = {ShuffleV2Block: FusedShuffleV2Block.from_block}

M = TypeVar("M", bound=nn.Module)


def fuse_model(
    model: M, inplace: bool = False, channels_last: bool = True, modules: Optional[ModuleBuilders] = None
) -> M:
    """The inference form of any model of this package (backbone, classifier, detector).

    Folds every BatchNorm into its conv (`FoldedConv2d`), and with ``channels_last`` swaps
    in the channels-last inference modules (`CHANNELS_LAST_MODULES`: fused ShuffleNet v2
    units) and stores 4-d weights channels-last (depthwise convs and max-pools are several
    times faster on NHWC data on CPU); ``channels_last=False`` keeps NCHW, the form to
    export to ONNX (whose convs are NCHW). ``modules`` adds inference modules for both
    forms (a detector's heads). ``model`` must be in eval mode; the result refuses
    ``train()``. Returns a fused deep copy, or ``model`` itself fused when ``inplace``.
    Idempotent: fusing a fused model changes nothing.
    """
    if model.training:
        raise RuntimeError(
            f"{type(model).__name__}.fuse() is for inference: call .eval() first (folding freezes the "
            "BatchNorm statistics that training would update)"
        )
    if not inplace:
        model = copy.deepcopy(model)
    fold_batchnorms(model)
    builders = {**(CHANNELS_LAST_MODULES if channels_last else {}), **(modules or {})}
    if swap_modules(model, builders) is not model:
        raise TypeError(f"fuse_model swaps the modules inside a model, not the model itself ({type(model).__name__})")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model.eval()
