"""`Backbone.fuse` / `ImageClassifier.fuse` over the registry: fused == unfused, training refused, idempotent."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import backbones
from backbones.fast import FoldedConv2d, count_batchnorms, fuse_model, is_fused
from backbones.registry import get_variant
from backbones.shufflenet_v2 import ShuffleV2Block

# One or two small widths of every registered family (1.0x ShuffleNet v2: test_fused_shufflenet_v2_layouts).
VARIANTS = [
    "shufflenet_v1_g3_0.5x",
    "shufflenet_v1_g8_0.25x_se",
    "shufflenet_v2_0.5x",
    "shufflenet_v2_se_0.5x",
    "shufflenet_v2_res_0.5x",
    "shufflenet_v2star_0.5x",
    "mobilenet_v1_0.25x",
    "mobilenet_v2_0.5x",
    "fd_mobilenet_0.25x",
    "seesaw_shuffle_0.5d",
    "seesaw_share_0.5d",
    "small_xception_0.45x",
]


@pytest.fixture
def build(randomize_norms):
    def build(name: str, **kwargs) -> backbones.Backbone:
        net = backbones.build_backbone(name, out_features=None, freeze_at=2, **kwargs)  # FrozenBN + BN
        net.set_out_features(net.stage_names)
        return randomize_norms(net).eval()

    return build


def test_variants_cover_every_family():
    families = {get_variant(n).family for n in backbones.list_backbones()}
    assert families == {get_variant(n).family for n in VARIANTS}


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("name", VARIANTS)
def test_fused_backbone_equals_unfused(name, channels_last, build):
    net = build(name)
    fused = net.fuse(channels_last=channels_last)
    assert fused is not net and count_batchnorms(fused) == 0 and count_batchnorms(net) > 0
    assert is_fused(fused) and not is_fused(net)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = net(x), fused(x)
    assert list(out) == list(ref)
    for stage in ref:
        torch.testing.assert_close(out[stage], ref[stage], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_shufflenet_v2_layouts(channels_last, build):
    net = build("shufflenet_v2_1.0x", shortcut_keeps_input=True)  # uneven stride-2 shortcut
    fused = net.fuse(channels_last=channels_last)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x)["conv5"], net(x)["conv5"], atol=1e-4, rtol=1e-4)
    assert fused.stages["stem"].conv1[0].weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    if channels_last:  # the units keep the activations channels-last from stem to conv5
        assert fused(x)["conv5"].is_contiguous(memory_format=torch.channels_last)


@pytest.fixture
def unit_pair(randomize_norms):
    def unit_pair(shortcut_channels=None, **kwargs) -> nn.Sequential:
        """A stride-2 unit followed by a stride-1 unit: the second splits what the first interleaved."""
        first = ShuffleV2Block(24, 48, 2, shortcut_channels=shortcut_channels, **kwargs)
        return randomize_norms(nn.Sequential(first, ShuffleV2Block(48, 48, 1, **kwargs))).eval()

    return unit_pair


@pytest.mark.parametrize(
    "kwargs", [{}, {"extra_dw": True}, {"use_se": True}, {"residual": True}, {"shortcut_channels": 16}]
)
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_units_equal_unfused(kwargs, channels_last, unit_pair):
    pair = unit_pair(**kwargs)
    fused = fuse_model(pair, channels_last=channels_last)
    x = torch.randn(2, 24, 16, 12)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, out = pair(x), fused(x)
        # NCHW input to the channels-last form (a C4 head's pooled RoIs) is still correct
        torch.testing.assert_close(fused(x.contiguous()), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())


def test_fuse_refuses_training_and_is_idempotent():
    net = backbones.build_backbone("shufflenet_v2_0.5x")
    with pytest.raises(RuntimeError, match=r"call \.eval\(\) first"):
        net.fuse()
    net.eval()
    fused = net.fuse()
    with pytest.raises(RuntimeError, match="fused for inference"):
        fused.train()
    assert not any(m.training for m in fused.modules())  # refused before any submodule changed mode
    fused.eval()  # eval stays allowed
    twice = fused.fuse()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(twice(x)["conv5"], fused(x)["conv5"])
    assert [n for n, _ in twice.named_modules()] == [n for n, _ in fused.named_modules()]
    assert net.fuse(inplace=True) is net and is_fused(net)


@pytest.mark.parametrize("channels_last", [True, False])
def test_parts_of_a_fused_model_refuse_training(channels_last, build):
    """A part taken out of a fused model (here a stage) still refuses training: its folded convs do."""
    fused = build("mobilenet_v2_0.5x").fuse(channels_last=channels_last)
    assert isinstance(fused.stages["stem"][0][0], FoldedConv2d)
    with pytest.raises(RuntimeError, match="FoldedConv2d was fused for inference"):
        fused.stages["stage2"].train()


def test_fused_classifier_equals_unfused(randomize_norms):
    clf = randomize_norms(backbones.build_classifier("shufflenet_v2_0.5x", num_classes=10)).eval()
    fused = clf.fuse()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), clf(x), atol=1e-4, rtol=1e-4)
    assert is_fused(fused) and not is_fused(clf)
    with pytest.raises(RuntimeError, match="fused for inference"):
        fused.train()
