"""MobileNet v2: torchvision's exact definition, split into detection stages."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import FrozenBatchNorm2d

from backbones import build_backbone, build_classifier, get_variant, list_backbones
from backbones.mobilenet_v2 import FEATURE_TO_STAGE, InvertedResidual, MobileNetV2
from helpers.models import check_stage_outputs

NAMES = ["stem", "stage2", "stage3", "stage4", "stage5", "conv_last"]
STRIDES = [2, 4, 8, 16, 32, 32]
CHANNELS_1X = [16, 24, 32, 96, 320, 1280]
#: (MACs, params) at 224, classifier included: the reference's figures (torchvision's definition).
PAPER = {"0.5x": (97e6, None), "0.75x": (209e6, None), "1.0x": (300.8e6, 3.50e6), "1.4x": (582e6, 6.1e6)}


def test_registered_variants() -> None:
    widths = ("0.27x", "0.5x", "0.56x", "0.75x", "1.0x", "1.3x", "1.4x")
    assert list_backbones("mobilenet_v2") == sorted(f"mobilenet_v2_{w}" for w in widths)
    paper = get_variant("mobilenet_v2_1.0x").paper
    assert paper.macs == pytest.approx(300.8e6) and paper.params == pytest.approx(3.5e6)


def test_inverted_residual_layout() -> None:
    t1 = InvertedResidual(32, 16, 1, 1)
    assert len(t1.conv) == 3 and t1.conv[0][0].groups == 32  # no expansion when t=1: dw first
    assert not t1.use_res_connect  # widths differ
    block = InvertedResidual(24, 24, 1, 6)
    assert block.use_res_connect
    pw, dw, pw_linear, bn = block.conv
    assert pw[0].out_channels == 144 and isinstance(pw[2], nn.ReLU6)
    assert dw[0].groups == 144 and isinstance(dw[2], nn.ReLU6)
    assert pw_linear.out_channels == 24 and isinstance(bn, nn.BatchNorm2d)  # linear bottleneck
    assert not InvertedResidual(24, 24, 2, 6).use_res_connect
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        InvertedResidual(24, 24, 3, 6)


def test_stage_shapes_non_square() -> None:
    net = MobileNetV2(out_features=NAMES).eval()
    shapes = net.output_shape()
    assert [shapes[n].stride for n in NAMES] == STRIDES
    assert [shapes[n].channels for n in NAMES] == CHANNELS_1X
    check_stage_outputs(net, NAMES)


@pytest.mark.parametrize("width", [0.5, 0.75, 1.0, 1.4])
def test_same_parameters_as_torchvision(width: float) -> None:
    ours = MobileNetV2(width_mult=width)
    tv = torchvision.models.mobilenet_v2(width_mult=width)
    ours_shapes = [tuple(p.shape) for p in ours.parameters()]
    tv_shapes = [tuple(p.shape) for p in tv.features.parameters()]
    assert ours_shapes == tv_shapes  # same layers in the same order
    assert ours.output_shape()["conv_last"].channels == (1792 if width == 1.4 else 1280)


def test_feature_to_stage_table() -> None:
    assert FEATURE_TO_STAGE[0] == ("stem", 0) and FEATURE_TO_STAGE[1] == ("stem", 1)
    assert FEATURE_TO_STAGE[7] == ("stage4", 0) and FEATURE_TO_STAGE[13] == ("stage4", 6)
    assert FEATURE_TO_STAGE[17] == ("stage5", 3) and FEATURE_TO_STAGE[18] == ("conv_last", -1)


def test_freeze_at() -> None:
    net = build_backbone("mobilenet_v2_0.5x", freeze_at=2)
    assert all(not p.requires_grad for n in ("stem", "stage2") for p in net.stages[n].parameters())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in net.stages["stage2"].modules())
    assert all(p.requires_grad for p in net.stages["stage3"].parameters())


@pytest.mark.parametrize("tag", list(PAPER))
def test_complexity_matches_reference(tag: str) -> None:
    model = build_classifier(f"mobilenet_v2_{tag}").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    macs = counter.get_total_flops() / 2
    macs_ref, params_ref = PAPER[tag]
    assert macs == pytest.approx(macs_ref, rel=0.05)
    if params_ref is not None:
        assert sum(p.numel() for p in model.parameters()) == pytest.approx(params_ref, rel=0.05)
