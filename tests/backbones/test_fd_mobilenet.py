"""FD-MobileNet: the fast-downsampling block table, stage shapes, freezing, registry."""
from __future__ import annotations

import pytest
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from backbones import build_backbone, get_variant, list_backbones
from backbones.fd_mobilenet import FDMobileNet
from backbones.mobilenet_v1 import DepthwiseSeparable
from helpers.models import check_stage_outputs

NAMES = ["stem", "stage2", "stage3", "stage4", "stage5"]
#: Table 1 of the paper.
CHANNELS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 1024)
STRIDES = (2, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1)


def test_block_table() -> None:
    net = FDMobileNet(width_mult=1.0)
    blocks = [m for m in net.modules() if isinstance(m, DepthwiseSeparable)]
    assert [b.pw[0].out_channels for b in blocks] == list(CHANNELS)
    assert [b.stride for b in blocks] == list(STRIDES)
    # Every block: 3x3 depthwise + BN + ReLU, then 1x1 + BN + ReLU.
    for b in blocks:
        assert b.dw[0].groups == b.dw[0].in_channels and isinstance(b.dw[2], nn.ReLU)
        assert b.pw[0].kernel_size == (1, 1) and isinstance(b.pw[2], nn.ReLU)


def test_downsamples_32x_within_12_layers() -> None:
    """The paper's point: stride 32 is reached at the 12th conv layer (stem + 5 blocks' dw/pw)."""
    convs = [m for m in FDMobileNet(width_mult=0.25).modules() if isinstance(m, nn.Conv2d)]
    stride, depth_at_32 = 1, None
    for depth, conv in enumerate(convs, start=1):
        stride *= conv.stride[0]
        if stride == 32 and depth_at_32 is None:
            depth_at_32 = depth
    assert stride == 32 and depth_at_32 is not None and depth_at_32 <= 12


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0])
def test_width_multiplier_scales_every_layer(width: float) -> None:
    net = FDMobileNet(width_mult=width)
    assert net.stages["stem"][0][0].out_channels == int(32 * width)
    blocks = [m for m in net.modules() if isinstance(m, DepthwiseSeparable)]
    assert [b.pw[0].out_channels for b in blocks] == [int(c * width) for c in CHANNELS]


def test_stage_shapes_match_outputs_at_non_square_input() -> None:
    net = FDMobileNet(width_mult=0.25, out_features=NAMES).eval()
    shapes = net.output_shape()
    assert [shapes[n].stride for n in NAMES] == [2, 4, 8, 16, 32]
    assert [shapes[n].channels for n in NAMES] == [8, 16, 32, 64, 256]
    assert [len(net.stages[n]) for n in NAMES] == [1, 1, 2, 2, 6]
    check_stage_outputs(net, NAMES)


def test_freeze_at() -> None:
    net = FDMobileNet(width_mult=0.25, freeze_at=1)
    stem = net.stages["stem"]
    assert not any(p.requires_grad for p in stem.parameters())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in stem.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in stem.modules())
    assert all(p.requires_grad for n in NAMES[1:] for p in net.stages[n].parameters())
    with pytest.raises(ValueError, match="freeze_at"):
        FDMobileNet(width_mult=0.25, freeze_at=6)


def test_bad_width_raises() -> None:
    with pytest.raises(ValueError, match="width_mult must be positive"):
        FDMobileNet(width_mult=-1.0)


def test_registry() -> None:
    assert list_backbones(family="fd_mobilenet") == ["fd_mobilenet_0.25x", "fd_mobilenet_0.5x", "fd_mobilenet_1.0x"]
    assert [get_variant(f"fd_mobilenet_{w}x").paper.macs for w in ("1.0", "0.5", "0.25")] == [144e6, 40e6, 12e6]
    net = build_backbone("fd_mobilenet_0.5x", out_features=["stage3", "stage5"])
    assert net.out_features == ["stage3", "stage5"]
    assert net.output_shape()["stage5"].channels == 512
