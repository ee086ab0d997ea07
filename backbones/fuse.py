"""Inference-time BatchNorm folding.

In eval mode a BatchNorm is a per-channel affine map, so it folds into the convolution in
front of it: ``w' = w * s``, ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.
That removes one full read and write of every feature map per BN (ShuffleNet v2's lesson:
element-wise work, not FLOPs, decides the speed of small networks).

`fold_batchnorms` handles `nn.BatchNorm2d` and torchvision's `FrozenBatchNorm2d`, convs with
and without bias, grouped/depthwise convs, and BNs that follow a conv inside an
``nn.Sequential`` or are named in a module's ``conv_bn_pairs`` (for blocks whose conv and BN
are attributes, e.g. SeesawNet's uneven grouped pointwise convs, which provide ``fold_bn``).
Squeeze-and-Excitation blocks have no BN and are left as they are.
"""
from __future__ import annotations

import copy
from typing import Optional, Tuple, TypeVar, Union

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["BatchNorm", "bn_scale_shift", "fuse_conv_bn", "fuse_conv_affine", "fold_batchnorms", "count_batchnorms",
           "fuse_model", "refuse_training_if_fused", "use_winograd"]

BatchNorm = Union[nn.BatchNorm2d, FrozenBatchNorm2d]
_BN_TYPES = (nn.BatchNorm2d, FrozenBatchNorm2d)


def bn_scale_shift(bn: BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BN as ``y = x * scale + shift`` (per channel)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it tracks no running statistics")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


def fuse_conv_bn(conv: nn.Conv2d, bn: BatchNorm) -> nn.Conv2d:
    """A new conv (with bias) computing ``bn(conv(x))`` of the eval-mode pair."""
    if conv.out_channels != bn.running_mean.numel():
        raise ValueError(f"cannot fold {bn} into {conv}: {conv.out_channels} outputs vs {bn.running_mean.numel()} BN channels")
    return fuse_conv_affine(conv, *bn_scale_shift(bn))


@torch.no_grad()
def fuse_conv_affine(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """A new conv (with bias) computing ``conv(x) * scale + shift`` per output channel."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.bias.copy_(bias * scale + shift)
    fused.requires_grad_(False)
    return fused


def fold_batchnorms(module: nn.Module) -> nn.Module:
    """Fold every conv -> BN pair inside ``module`` (in place); each folded BN becomes
    `nn.Identity` so module indices (and checkpoint-style names) stay where they were."""
    for child in module.children():
        fold_batchnorms(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules.keys())
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _BN_TYPES):
                module._modules[first] = fuse_conv_bn(conv, bn)
                module._modules[second] = nn.Identity()
    for conv_name, bn_name in getattr(module, "conv_bn_pairs", ()):
        conv, bn = getattr(module, conv_name), getattr(module, bn_name)
        if not isinstance(bn, _BN_TYPES):
            continue  # already folded
        if isinstance(conv, nn.Conv2d):
            setattr(module, conv_name, fuse_conv_bn(conv, bn))
        else:
            conv.fold_bn(bn)
        setattr(module, bn_name, nn.Identity())
    return module


def count_batchnorms(module: nn.Module) -> int:
    """Number of BatchNorm2d / FrozenBatchNorm2d left in ``module``."""
    return sum(isinstance(m, _BN_TYPES) for m in module.modules())


M = TypeVar("M", bound=nn.Module)


def fuse_model(model: M, inplace: bool = False, channels_last: bool = True, winograd: Optional[bool] = None) -> M:
    """The inference fast path of any model of this package (backbone, classifier, detector).

    Folds every BatchNorm into its conv, switches the modules that have an inference-only
    forward (attribute ``fused``, e.g. `ShuffleV2Block`) to it, and stores 4-d weights
    channels-last (depthwise and 1x1 convs run faster on NHWC data on CPU; see
    ``benchmarks/speed_inference.py``) and runs the wide dense 3x3 stride-1 convs (the
    RPN's) as Winograd F(4x4, 3x3) (`use_winograd`); ``channels_last=False`` keeps NCHW
    and plain convs, the form to export to ONNX (whose convs are NCHW). ``winograd``
    (default: ``channels_last`` for a model on the CPU, off on CUDA) switches the Winograd
    replacement on or off on its own.
    ``model`` must be in eval mode; the result refuses ``train()``. Returns a fused deep
    copy, or ``model`` itself fused when ``inplace``. Idempotent: fusing a fused model
    changes nothing.
    """
    if model.training:
        raise RuntimeError(
            f"{type(model).__name__}.fuse() is for inference: call .eval() first (folding freezes the "
            "BatchNorm statistics that training would update)"
        )
    if not inplace:
        model = copy.deepcopy(model)
    fold_batchnorms(model)
    # our Winograd beats oneDNN's direct conv on CPU; on CUDA cuDNN picks its own kernels
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if (channels_last and on_cpu) if winograd is None else winograd:
        use_winograd(model)
    for m in model.modules():
        if hasattr(m, "fused") and not isinstance(getattr(type(m), "fused", None), property):
            m.fused = True
        if hasattr(m, "fused_nhwc"):
            m.fused_nhwc = channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


#: narrower 3x3 convs stay direct: the Winograd tile transforms would outweigh the saving
WINOGRAD_MIN_CHANNELS = 64


def use_winograd(module: nn.Module, min_channels: int = WINOGRAD_MIN_CHANNELS) -> int:
    """Replace (in place) every dense 3x3 stride-1 padding-1 conv with at least
    ``min_channels`` input and output channels by `WinogradConv3x3` (2.25 instead of 9
    multiply-adds per output and channel pair; same result within ~1e-5 relative).
    Returns the number of convs replaced."""
    from .winograd import WinogradConv3x3, supports_winograd

    count = 0
    for name, child in module.named_children():
        if supports_winograd(child) and min(child.in_channels, child.out_channels) >= min_channels:
            setattr(module, name, WinogradConv3x3(child))
            count += 1
        else:
            count += use_winograd(child, min_channels)
    return count


def refuse_training_if_fused(module: nn.Module, mode: bool) -> None:
    """Raise the clear error for ``train()`` on a fused model (called by the models' ``train``)."""
    if mode and getattr(module, "fused", False):
        raise RuntimeError(
            f"this {type(module).__name__} was fused for inference (BatchNorm folded into the convs) and cannot "
            "be trained; fuse a copy (model.fuse()) and train the original"
        )
