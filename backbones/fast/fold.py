"""Inference-time BatchNorm folding.

In eval mode a BatchNorm is a per-channel affine map, so it folds into the convolution in
front of it: ``w' = w * s``, ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.
That removes one full read and write of every feature map per BN (ShuffleNet v2's lesson:
element-wise work, not FLOPs, decides the speed of small networks).

`fold_batchnorms` handles `nn.BatchNorm2d` and torchvision's `FrozenBatchNorm2d`, convs with
and without bias, grouped/depthwise convs, and BNs that follow a conv inside an
``nn.Sequential`` or are named in a module's ``conv_bn_pairs`` (for blocks whose conv and BN
are attributes, e.g. SeesawNet's uneven grouped pointwise convs, which provide ``fold_bn``).
Squeeze-and-Excitation blocks have no BN and are left as they are. A folded conv is a
`FoldedConv2d`, an inference module: a model holding one refuses ``train()``.
"""
from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .inference import InferenceModule

__all__ = ["BatchNorm", "FoldedConv2d", "bn_scale_shift", "fuse_conv_bn", "fuse_conv_affine", "fold_batchnorms",
           "count_batchnorms"]

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


class FoldedConv2d(InferenceModule, nn.Conv2d):
    """An `nn.Conv2d` (with bias) made by folding a per-channel affine map, the eval-mode
    BatchNorm after it, into a trained conv; for inference only."""


def fuse_conv_bn(conv: nn.Conv2d, bn: BatchNorm) -> FoldedConv2d:
    """A new conv (with bias) computing ``bn(conv(x))`` of the eval-mode pair."""
    if conv.out_channels != bn.running_mean.numel():
        raise ValueError(f"cannot fold {bn} into {conv}: {conv.out_channels} outputs vs {bn.running_mean.numel()} BN channels")
    return fuse_conv_affine(conv, *bn_scale_shift(bn))


@torch.no_grad()
def fuse_conv_affine(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> FoldedConv2d:
    """A new conv (with bias) computing ``conv(x) * scale + shift`` per output channel."""
    fused = FoldedConv2d(
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
    return fused.eval()


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
