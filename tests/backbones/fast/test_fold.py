"""BatchNorm folding (`backbones.fast.fold`)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

import backbones
from backbones.fast import FoldedConv2d, fold_batchnorms, fuse_conv_bn
from backbones.layers import SqueezeExcite


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("groups", [1, 8])
def test_fuse_conv_bn(frozen, bias, groups, randomize_norms):
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=groups, bias=bias)
    bn = FrozenBatchNorm2d(16) if frozen else nn.BatchNorm2d(16)
    pair = randomize_norms(nn.Sequential(conv, bn)).eval()
    x = torch.randn(2, 8, 9, 7)
    fused = fuse_conv_bn(conv, bn)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), pair(x), atol=1e-5, rtol=1e-5)
    assert isinstance(fused, FoldedConv2d) and not fused.training
    assert fused.bias is not None and fused.groups == groups
    with pytest.raises(RuntimeError, match="FoldedConv2d was fused for inference"):
        fused.train()


def test_fold_leaves_se_untouched(randomize_norms):
    net = randomize_norms(backbones.build_backbone("shufflenet_v2_se_0.5x")).eval()
    se_before = [m.fc1.weight.clone() for m in net.modules() if isinstance(m, SqueezeExcite)]
    fold_batchnorms(net)
    se_after = [m.fc1.weight for m in net.modules() if isinstance(m, SqueezeExcite)]
    assert se_before and all(torch.equal(a, b) for a, b in zip(se_before, se_after))
