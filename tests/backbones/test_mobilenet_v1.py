"""MobileNet v1 and the depthwise-separable skeleton it shares with FD-MobileNet."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from backbones import build_backbone, get_variant, list_backbones
from backbones.mobilenet_v1 import DepthwiseSeparable, MobileNetV1, scale_width
from helpers.models import check_stage_outputs

NAMES = ["stem", "stage2", "stage3", "stage4", "stage5"]


def _blocks(net: nn.Module) -> list:
    return [m for m in net.modules() if isinstance(m, DepthwiseSeparable)]


def test_depthwise_separable_block_layout() -> None:
    block = DepthwiseSeparable(16, 32, stride=2)
    dw, pw = block.dw, block.pw
    assert [type(m) for m in dw] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert [type(m) for m in pw] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert dw[0].groups == dw[0].in_channels == dw[0].out_channels == 16
    assert dw[0].stride == (2, 2) and dw[0].kernel_size == (3, 3)
    assert pw[0].kernel_size == (1, 1) and pw[0].groups == 1 and pw[0].out_channels == 32
    assert block(torch.randn(1, 16, 9, 12)).shape == (1, 32, 5, 6)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        DepthwiseSeparable(16, 32, stride=3)


def test_block_table() -> None:
    blocks = _blocks(MobileNetV1(width_mult=0.25))
    assert len(blocks) == 13
    assert [b.pw[0].out_channels for b in blocks] == [
        c // 4 for c in (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    ]
    assert [b.stride for b in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]


@pytest.mark.parametrize("width, stem", [(0.25, 8), (0.5, 16), (0.75, 24), (1.0, 32)])
def test_width_multiplier_scales_stem_too(width: float, stem: int) -> None:
    net = MobileNetV1(width_mult=width)
    assert net.stages["stem"][0][0].out_channels == stem
    assert net.stage_shape("stage5").channels == scale_width(1024, width)


def test_scale_width_floor() -> None:
    assert scale_width(32, 0.1) == 8  # never below 8 channels, as in TF-slim
    assert scale_width(1024, 0.75) == 768


def test_stage_shapes_match_outputs_at_non_square_input() -> None:
    net = MobileNetV1(width_mult=0.25, out_features=NAMES).eval()
    shapes = net.output_shape()
    assert [shapes[n].stride for n in NAMES] == [2, 4, 8, 16, 32]
    assert [shapes[n].channels for n in NAMES] == [16, 32, 64, 128, 256]
    assert len(net.stages["stem"]) == 2  # stem conv + the stride-1 64-channel block
    check_stage_outputs(net, NAMES)


def test_freeze_at() -> None:
    net = MobileNetV1(width_mult=0.25, freeze_at=3)
    for name in NAMES[:3]:
        assert not any(p.requires_grad for p in net.stages[name].parameters())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.stages[name].modules())
        assert any(isinstance(m, FrozenBatchNorm2d) for m in net.stages[name].modules())
    assert all(p.requires_grad for p in net.stages["stage4"].parameters())


def test_bad_width_raises() -> None:
    with pytest.raises(ValueError, match="width_mult must be positive"):
        MobileNetV1(width_mult=0)


def test_registry() -> None:
    assert list_backbones(family="mobilenet_v1") == [
        "mobilenet_v1_0.125x",
        "mobilenet_v1_0.25x",
        "mobilenet_v1_0.5x",
        "mobilenet_v1_0.75x",
        "mobilenet_v1_1.0x",
    ]
    paper = get_variant("mobilenet_v1_1.0x").paper
    assert paper.macs == 569e6 and paper.params == 4.2e6
    net = build_backbone("mobilenet_v1_0.25x", out_features=["stage4"])
    assert net.out_features == ["stage4"] and net.output_shape()["stage4"].channels == 128


def test_0_125x_has_the_fd_mobilenet_authors_widths() -> None:
    """FD-MobileNet's 12 MFLOPs baseline: int(c * 0.125) with no floor (a stem of 4 channels),
    unlike TF-slim's floor of 8 the other widths keep."""
    net = build_backbone("mobilenet_v1_0.125x", out_features=NAMES)
    assert net.stages["stem"][0][0].out_channels == 4
    assert [net.output_shape()[n].channels for n in NAMES] == [8, 16, 32, 64, 128]
    assert get_variant("mobilenet_v1_0.125x").paper.macs == 12e6
    assert MobileNetV1(width_mult=0.125).stages["stem"][0][0].out_channels == 8  # default floor
    with pytest.raises(ValueError, match="min_channels"):
        MobileNetV1(width_mult=0.5, min_channels=0)
