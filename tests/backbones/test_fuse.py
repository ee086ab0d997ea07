"""Inference fast path (`Backbone.fuse`): BN folding, fused ShuffleNet v2 units, channels-last."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

import backbones
from backbones.fuse import count_batchnorms, fold_batchnorms, fuse_conv_bn
from backbones.registry import get_variant
from backbones import shufflenet_v2
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


def randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so folding has something to get wrong."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def build(name: str, **kwargs) -> backbones.Backbone:
    net = backbones.build_backbone(name, out_features=None, freeze_at=2, **kwargs)  # FrozenBN + BN
    net.set_out_features(net.stage_names)
    return randomize_norms(net).eval()


def test_variants_cover_every_family():
    families = {get_variant(n).family for n in backbones.list_backbones()}
    assert families == {get_variant(n).family for n in VARIANTS}


@pytest.mark.parametrize("name", VARIANTS)
def test_fused_backbone_equals_unfused(name):
    net = build(name)
    fused = net.fuse()
    assert fused is not net and count_batchnorms(fused) == 0 and count_batchnorms(net) > 0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = net(x), fused(x)
    assert list(out) == list(ref)
    for stage in ref:
        torch.testing.assert_close(out[stage], ref[stage], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_shufflenet_v2_layouts(channels_last):
    net = build("shufflenet_v2_1.0x", shortcut_keeps_input=True)  # uneven stride-2 shortcut
    fused = net.fuse(channels_last=channels_last)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x)["conv5"], net(x)["conv5"], atol=1e-4, rtol=1e-4)
    blocks = [m for m in fused.modules() if isinstance(m, ShuffleV2Block)]
    assert blocks and all(b.fused and b.fused_nhwc == channels_last for b in blocks)


def fused_pair(shortcut_channels=None, **kwargs) -> nn.Sequential:
    """A stride-2 unit followed by a stride-1 unit: the pair whose concat/shuffle/split fuses."""
    first = ShuffleV2Block(24, 48, 2, shortcut_channels=shortcut_channels, **kwargs)
    return randomize_norms(nn.Sequential(first, ShuffleV2Block(48, 48, 1, **kwargs))).eval()


@pytest.mark.parametrize(
    "kwargs", [{}, {"extra_dw": True}, {"use_se": True}, {"residual": True}, {"shortcut_channels": 16}]
)
@pytest.mark.parametrize("channels_last,onednn", [(True, True), (True, False), (False, True)])
def test_fused_units_equal_unfused(kwargs, channels_last, onednn, monkeypatch):
    # onednn=False: the addmm + relu_ fallback of the 1x1 convs
    monkeypatch.setattr(shufflenet_v2, "USE_ONEDNN_LINEAR", onednn and shufflenet_v2.USE_ONEDNN_LINEAR)
    monkeypatch.setattr(shufflenet_v2, "ONEDNN_MIN_ROWS", 1)  # tiny test maps
    pair = fused_pair(**kwargs)
    fused = backbones.fuse.fuse_model(pair, channels_last=channels_last)
    x = torch.randn(2, 24, 16, 12)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, out = pair(x), fused(x)
        # NCHW input to the NHWC path (a C4 head's pooled RoIs) is still correct
        torch.testing.assert_close(fused(x.contiguous()), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("groups", [1, 8])
def test_fuse_conv_bn(frozen, bias, groups):
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=groups, bias=bias)
    bn = FrozenBatchNorm2d(16) if frozen else nn.BatchNorm2d(16)
    pair = randomize_norms(nn.Sequential(conv, bn)).eval()
    x = torch.randn(2, 8, 9, 7)
    fused = fuse_conv_bn(conv, bn)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), pair(x), atol=1e-5, rtol=1e-5)
    assert fused.bias is not None and fused.groups == groups


def test_fold_leaves_se_untouched():
    net = build("shufflenet_v2_se_0.5x")
    se_before = [m.fc1.weight.clone() for m in net.modules() if isinstance(m, backbones.layers.SqueezeExcite)]
    fold_batchnorms(net)
    se_after = [m.fc1.weight for m in net.modules() if isinstance(m, backbones.layers.SqueezeExcite)]
    assert se_before and all(torch.equal(a, b) for a, b in zip(se_before, se_after))


def test_fuse_refuses_training_and_is_idempotent():
    net = backbones.build_backbone("shufflenet_v2_0.5x")
    with pytest.raises(RuntimeError, match=r"call \.eval\(\) first"):
        net.fuse()
    net.eval()
    fused = net.fuse()
    with pytest.raises(RuntimeError, match="fused for inference"):
        fused.train()
    fused.eval()  # eval stays allowed
    twice = fused.fuse()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(twice(x)["conv5"], fused(x)["conv5"])
    assert [n for n, _ in twice.named_modules()] == [n for n, _ in fused.named_modules()]
    assert net.fuse(inplace=True) is net and net.fused


def test_fused_classifier_equals_unfused():
    clf = randomize_norms(backbones.build_classifier("shufflenet_v2_0.5x", num_classes=10)).eval()
    fused = clf.fuse()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), clf(x), atol=1e-4, rtol=1e-4)
    assert fused.fused and not clf.fused
    with pytest.raises(RuntimeError, match="fused for inference"):
        fused.train()
