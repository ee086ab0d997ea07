"""Model state that makes equivalence tests meaningful: with fresh BatchNorm statistics
(mean 0, variance 1, weight 1, bias 0) folding or mis-mapping a norm layer goes unnoticed."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["randomize_norms"]


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
