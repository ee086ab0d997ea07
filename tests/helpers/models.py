"""Model helpers: norm statistics that make equivalence tests meaningful (with fresh
BatchNorm statistics, mean 0, variance 1, weight 1, bias 0, folding or mis-mapping a norm
layer goes unnoticed) and the check of a backbone's stage outputs against its shapes."""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["randomize_norms", "check_stage_outputs"]


def randomize_norms(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial statistics and affine terms in every BatchNorm2d / FrozenBatchNorm2d of
    ``model`` (returned), drawn from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def check_stage_outputs(net: nn.Module, names: Sequence[str], height: int = 64, width: int = 96) -> Dict[str, Tensor]:
    """Run ``net`` (a `Backbone`) in eval mode on one random ``height`` x ``width`` image and
    assert that every stage in ``names`` comes out finite with the channels and the stride
    its ``output_shape()`` declares; returns the outputs."""
    shapes = net.output_shape()
    with torch.no_grad():
        outs = net.eval()(torch.randn(1, 3, height, width))
    for name in names:
        s = shapes[name].stride
        assert outs[name].shape == (1, shapes[name].channels, height // s, width // s), name
        assert torch.isfinite(outs[name]).all(), name
    return outs
