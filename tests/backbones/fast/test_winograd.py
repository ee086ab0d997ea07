"""Winograd F(4x4, 3x3) convolution (`backbones.fast.winograd`) and the choice of the convs it replaces."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones.fast import swap_modules
from backbones.fast.winograd import WinogradConv3x3, supports_winograd, winograd_if_wide


@pytest.mark.parametrize("shape", [(1, 64, 13, 19), (2, 64, 4, 4), (1, 64, 1, 7), (1, 96, 9, 8)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_winograd_equals_direct_conv(shape, bias, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 80, 3, padding=1, bias=bias).eval()
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = conv(x)
        out = WinogradConv3x3(conv)(x)
    assert out.shape == expected.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    scale = float(expected.abs().max())
    torch.testing.assert_close(out, expected, atol=1e-5 * scale, rtol=1e-5)


@pytest.mark.parametrize(
    "conv,ok",
    [
        (nn.Conv2d(64, 64, 3, padding=1), True),
        (nn.Conv2d(64, 64, 3, padding=1, stride=2), False),
        (nn.Conv2d(64, 64, 3, padding=1, groups=64), False),
        (nn.Conv2d(64, 64, 3, padding=2, dilation=2), False),
        (nn.Conv2d(64, 64, 1), False),
    ],
)
def test_supports_winograd(conv, ok):
    assert supports_winograd(conv) is ok
    if not ok:
        with pytest.raises(ValueError, match="not a dense 3x3"):
            WinogradConv3x3(conv)


def test_winograd_replaces_only_wide_dense_3x3():
    net = nn.Sequential(
        nn.Conv2d(64, 64, 3, padding=1),  # replaced
        nn.Sequential(nn.Conv2d(64, 128, 3, padding=1)),  # replaced (nested)
        nn.Conv2d(128, 128, 3, padding=1, groups=128),  # depthwise: kept
        nn.Conv2d(128, 16, 3, padding=1),  # too narrow: kept
    ).eval()
    x = torch.randn(1, 64, 10, 12)
    with torch.no_grad():
        expected = net(x)
        swap_modules(net, {nn.Conv2d: winograd_if_wide})
        out = net(x)
    assert isinstance(net[0], WinogradConv3x3) and isinstance(net[1][0], WinogradConv3x3)
    assert type(net[2]) is nn.Conv2d and type(net[3]) is nn.Conv2d
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    assert sum(isinstance(m, WinogradConv3x3) for m in net.modules()) == 2
    swap_modules(net, {nn.Conv2d: winograd_if_wide})  # idempotent
    assert [type(m) for m in net.modules()].count(WinogradConv3x3) == 2
