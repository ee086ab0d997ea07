"""`backbones.weights.load_checkpoint`: a converted checkpoint adapted to its target (bare
backbone, FC bias, ShuffleNet v2 shortcut widths), our own layout, layout detection, and
errors that name what does not fit. The layout conversions themselves: test_converters.py;
unreadable and unsafe files: test_checkpoint_io.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from backbones import build_backbone, build_classifier
from backbones.weights import CheckpointError, detect_layout, load_checkpoint, save_backbone_checkpoint
from helpers.weights import ReleaseV2, logits, randomize_weights, save_release, to_release_v1


# ------------------------------------------------------ bare backbone target
def test_real_checkpoint_into_bare_backbone_drops_head(mobilenet_ckpt: Path) -> None:
    backbone = build_backbone("mobilenet_v2_1.0x", freeze_at=2)  # FrozenBatchNorm2d in the stem/stage2
    report = load_checkpoint(backbone, mobilenet_ckpt, strict=True)
    assert report.dropped_keys == ["fc.weight", "fc.bias"]
    assert not report.missing_keys and not report.unexpected_keys
    tv = torchvision.models.mobilenet_v2()
    tv.load_state_dict(torch.load(mobilenet_ckpt, map_location="cpu", weights_only=True))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(backbone.eval()(x)["conv_last"], tv.eval().features(x), atol=1e-4, rtol=0)


# --------------------------------------------- ShuffleNet v2 shortcut widths
def test_shufflenet_series_v2_wider_release_needs_shortcut_option(tmp_path: Path) -> None:
    release = ReleaseV2(widths=(24, 116, 232, 464, 1024))
    path = save_release(release.state_dict(), tmp_path / "ShuffleNetV2.1.0x.pth.tar")
    ours = build_classifier("shufflenet_v2_1.0x")
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ours, path)
    msg = str(info.value)
    assert "stage2: 24 shortcut + 92 main channels" in msg
    assert "build_classifier('shufflenet_v2_1.0x', shortcut_keeps_input=True)" in msg
    assert "stages.stage2.0.branch1.2.weight: checkpoint (24, 24, 1, 1) vs model (58, 24, 1, 1)" in msg
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())  # nothing was loaded


def test_shortcut_keeps_input_refuses_torchvision_1_0x(tmp_path: Path) -> None:
    torch.save(torchvision.models.shufflenet_v2_x1_0().state_dict(), tmp_path / "tv.pth")
    with pytest.raises(CheckpointError, match="without shortcut_keeps_input"):
        load_checkpoint(build_backbone("shufflenet_v2_1.0x", shortcut_keeps_input=True), tmp_path / "tv.pth")


# ------------------------------------------------------------------- FC bias
@pytest.mark.parametrize("family", ["shufflenet_v1", "shufflenet_v2"])
def test_shufflenet_series_release_into_default_bias_free_head(tmp_path: Path, family: str) -> None:
    """By default these families' FC has no bias, as the authors' release: the release loads
    strictly (the zero bias the converter adds for biased heads is dropped) and the
    classifier computes the release's logits."""
    if family == "shufflenet_v1":
        src = randomize_weights(build_classifier("shufflenet_v1_g3_0.5x"))
        release, name = to_release_v1(src.state_dict()), "shufflenet_v1_g3_0.5x"
        reference = src
    else:
        reference = randomize_weights(ReleaseV2())
        release, name = reference.state_dict(), "shufflenet_v2_0.5x"
    path = save_release(release, tmp_path / "release.pth.tar")
    ours = build_classifier(name)
    assert ours.fc.bias is None and "classifier.0.bias" not in release
    report = load_checkpoint(ours, path, strict=True)
    assert not report.missing_keys and not report.unexpected_keys
    x = torch.rand(1, 3, 64, 64) * 255
    expected = logits(reference, x)
    torch.testing.assert_close(logits(ours, x), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


@pytest.mark.parametrize("strict", [False, True])
def test_a_real_fc_bias_is_not_dropped_into_a_bias_free_head(tmp_path: Path, strict: bool) -> None:
    """torchvision's ShuffleNet v2 FC has a bias: loading it into the default (bias-free)
    classifier would change every logit, so it is refused, naming the fix, before anything
    is loaded; the same file with a zero bias is the bias-free head and loads."""
    tv = randomize_weights(torchvision.models.shufflenet_v2_x0_5())
    assert tv.fc.bias.abs().min() > 0
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ours = build_classifier("shufflenet_v2_0.5x")
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"tv\.pth .*non-zero fc\.bias.*fc_bias=True"):
        load_checkpoint(ours, tmp_path / "tv.pth", strict=strict)
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())  # nothing was loaded

    with torch.no_grad():
        tv.fc.bias.zero_()
    torch.save(tv.state_dict(), tmp_path / "tv_zero_bias.pth")
    report = load_checkpoint(ours, tmp_path / "tv_zero_bias.pth", strict=strict)
    assert not report.missing_keys and not report.unexpected_keys
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(logits(ours, x), logits(tv, x), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------- litedet layout
def test_save_and_load_own_layout(tmp_path: Path) -> None:
    src = randomize_weights(build_classifier("seesaw_share_0.5d", num_classes=10))
    src.backbone.input_format = "BGR255"
    path = save_backbone_checkpoint(src, tmp_path / "ck" / "seesaw.pth", extra={"epoch": 3})
    assert sorted(os.listdir(tmp_path / "ck")) == ["seesaw.pth"]  # no temp file left behind
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["epoch"] == 3 and raw["layout"] == "litedet"

    dst = build_classifier("seesaw_share_0.5d", num_classes=10)
    report = load_checkpoint(dst, path, strict=True)
    assert report.layout == "litedet" and report.input_format == "BGR255"
    x = torch.randn(1, 3, 32, 48)
    torch.testing.assert_close(logits(dst, x), logits(src, x))

    backbone = build_backbone("seesaw_share_0.5d")  # classifier checkpoint -> bare backbone
    report = load_checkpoint(backbone, path, strict=True)
    assert report.dropped_keys == ["fc.weight", "fc.bias"]

    bb_path = save_backbone_checkpoint(backbone, tmp_path / "bb.pth")  # backbone -> classifier
    report = load_checkpoint(build_classifier("seesaw_share_0.5d"), bb_path)
    assert report.missing_keys == ["fc.weight", "fc.bias"]
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(build_classifier("seesaw_share_0.5d"), bb_path, strict=True)


# --------------------------------------------------------------- detection
def test_detect_layout() -> None:
    t = torch.zeros(1)
    assert detect_layout({"stages.stem.0.0.weight": t}) == "litedet"
    assert detect_layout({"backbone.stages.stem.0.0.weight": t, "fc.weight": t}) == "litedet"
    assert detect_layout({"features.0.0.weight": t, "classifier.1.weight": t}) == "torchvision"
    assert detect_layout({"conv1.0.weight": t, "stage2.0.branch1.0.weight": t}) == "torchvision"
    assert detect_layout({"first_conv.0.weight": t, "features.0.branch_main.0.weight": t}) == "shufflenet_series"
    with pytest.raises(CheckpointError, match="cannot tell the layout"):
        detect_layout({"foo.weight": t})


# ------------------------------------------------------------------ errors
def test_shape_mismatch_lists_keys(tmp_path: Path) -> None:
    path = save_backbone_checkpoint(build_backbone("mobilenet_v2_0.5x"), tmp_path / "half_width.pth")
    target = build_backbone("mobilenet_v2_1.0x")
    before = target.stages["stem"][0][0].weight.clone()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target, path)
    msg = str(info.value)
    assert "stages.stem.0.0.weight: checkpoint (16, 3, 3, 3) vs model (32, 3, 3, 3)" in msg
    assert "stages.conv_last.0.weight" in msg and "half_width.pth" in msg
    assert torch.equal(target.stages["stem"][0][0].weight, before)  # nothing was loaded


def test_wrong_architecture_lists_shape_mismatches(tmp_path):
    path = save_backbone_checkpoint(build_backbone("shufflenet_v2_0.5x"), tmp_path / "snv2_05.pth")
    target = build_backbone("shufflenet_v2_1.0x")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target, path)
    msg = str(info.value)
    assert "snv2_05.pth" in msg and "checkpoint (" in msg and "vs model (" in msg
    assert msg.count("vs model") >= 3  # several keys listed, not just the first
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing loaded


def test_unknown_layout_and_missing_converter(tmp_path: Path) -> None:
    net = build_backbone("seesaw_shuffle_0.5d")
    path = save_backbone_checkpoint(net, tmp_path / "s.pth")
    with pytest.raises(ValueError, match="unknown layout 'caffe'"):
        load_checkpoint(net, path, layout="caffe")
    tv_path = tmp_path / "tv.pth"
    torch.save(torchvision.models.mobilenet_v2(width_mult=0.5).state_dict(), tv_path)
    with pytest.raises(NotImplementedError, match="'torchvision' into family 'seesaw'"):
        load_checkpoint(net, tv_path)
    with pytest.raises(TypeError, match="Backbone or an ImageClassifier"):
        load_checkpoint(nn.Linear(2, 2), path)


def test_wrong_family_release_is_reported(tmp_path: Path) -> None:
    """A ShuffleNetV1 release loaded into a ShuffleNetV2 says so instead of half-loading."""
    src = build_classifier("shufflenet_v1_g3_0.5x")
    path = save_release(to_release_v1(src.state_dict()), tmp_path / "v1.pth.tar")
    with pytest.raises(CheckpointError, match="ShuffleNetV1 checkpoint"):
        load_checkpoint(build_classifier("shufflenet_v2_0.5x"), path)
    release_v2 = save_release(ReleaseV2().state_dict(), tmp_path / "v2.pth.tar")
    with pytest.warns(UserWarning, match="another architecture"):  # stems agree (24), nothing else
        report = load_checkpoint(build_backbone("shufflenet_v1_g3_1.0x"), release_v2)
    assert report.unexpected_keys and report.missing_keys
