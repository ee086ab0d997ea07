"""`FusedShuffleV2Block`: the channels-last inference form of `ShuffleV2Block`."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones.fast import FusedShuffleV2Block, NHWCConvChain, fuse_model
from backbones.shufflenet_v2 import ShuffleV2Block

UNIT_KINDS = [{}, {"extra_dw": True}, {"use_se": True}, {"residual": True}, {"shortcut_channels": 16}]


@pytest.fixture
def unit_pair(randomize_norms):
    def unit_pair(shortcut_channels=None, **kwargs) -> nn.Sequential:
        """A stride-2 unit followed by a stride-1 unit: the pair whose concat/shuffle/split fuses."""
        first = ShuffleV2Block(24, 48, 2, shortcut_channels=shortcut_channels, **kwargs)
        return randomize_norms(nn.Sequential(first, ShuffleV2Block(48, 48, 1, **kwargs))).eval()

    return unit_pair


@pytest.mark.parametrize("kwargs", UNIT_KINDS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_units_equal_unfused(kwargs, channels_last, unit_pair):
    pair = unit_pair(**kwargs)
    fused = fuse_model(pair, channels_last=channels_last)
    assert all(isinstance(m, FusedShuffleV2Block) is channels_last for m in fused)
    x = torch.randn(2, 24, 16, 12)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, out = pair(x), fused(x)
        # NCHW input to the NHWC path (a C4 head's pooled RoIs) is still correct
        torch.testing.assert_close(fused(x.contiguous()), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())


@pytest.mark.parametrize(
    "stride,kwargs", [(2, k) for k in UNIT_KINDS] + [(1, k) for k in UNIT_KINDS if "shortcut_channels" not in k]
)
def test_from_block_equals_block_and_leaves_it_trainable(stride, kwargs, randomize_norms):
    block = randomize_norms(ShuffleV2Block(48 if stride == 1 else 24, 48, stride, **kwargs)).eval()
    before = {k: v.clone() for k, v in block.state_dict().items()}
    fused = FusedShuffleV2Block.from_block(block)
    x = torch.randn(2, block.branch2[0].in_channels * (2 if stride == 1 else 1), 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), block(x), atol=1e-4, rtol=1e-4)
    assert all(torch.equal(v, block.state_dict()[k]) for k, v in before.items())  # built from a copy
    assert (fused.branch1 is None) is (stride == 1)
    block.train()  # the trained block stays trainable


def test_conv_chain_runs_pointwise_convs_as_gemms():
    chain = NHWCConvChain.from_sequential(
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.Conv2d(8, 6, 1), nn.ReLU())
    )
    assert chain.as_gemm == (False, True) and chain.relu_after == (False, True)
    with pytest.raises(ValueError, match="cannot run Sigmoid"):
        NHWCConvChain.from_sequential(nn.Sequential(nn.Conv2d(8, 8, 1), nn.Sigmoid()))
