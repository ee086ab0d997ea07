"""`backbones.converters`: checkpoints in other layouts (torchvision; the authors'
ShuffleNet-Series releases, restated in helpers.weights) load into litedet's networks and
compute the source network's outputs."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from backbones import build_classifier
from backbones.converters import CONVERTERS, convert_shufflenet_series_shufflenet_v2
from backbones.weights import LoadReport, load_checkpoint
from helpers.weights import ReleaseV2, logits, randomize_weights, save_release, to_release_v1


# ----------------------------------------------------------- torchvision layout
def test_real_mobilenet_v2_checkpoint_matches_torchvision(mobilenet_ckpt: Path) -> None:
    ours = build_classifier("mobilenet_v2_1.0x")
    report = load_checkpoint(ours, mobilenet_ckpt, strict=True)
    assert isinstance(report, LoadReport)
    assert report.layout == "torchvision" and report.family == "mobilenet_v2" and report.input_format == "RGB"
    assert not report.missing_keys and not report.unexpected_keys
    tv = torchvision.models.mobilenet_v2()
    tv.load_state_dict(torch.load(mobilenet_ckpt, map_location="cpu", weights_only=True))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits(ours, x), logits(tv, x), atol=1e-4, rtol=0)
    assert "mobilenet_v2" in str(report) and "torchvision" in str(report)


def test_torchvision_mobilenet_v2_half_width(tmp_path: Path) -> None:
    tv = randomize_weights(torchvision.models.mobilenet_v2(width_mult=0.5))
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ours = build_classifier("mobilenet_v2_0.5x")
    load_checkpoint(ours, tmp_path / "tv.pth", layout="torchvision", strict=True)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(logits(ours, x), logits(tv, x), atol=1e-4, rtol=1e-4)


def test_torchvision_shufflenet_v2(tmp_path: Path) -> None:
    tv = randomize_weights(torchvision.models.shufflenet_v2_x0_5())
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ours = build_classifier("shufflenet_v2_0.5x", fc_bias=True)  # torchvision's FC has a bias
    report = load_checkpoint(ours, tmp_path / "tv.pth", strict=True)
    assert report.layout == "torchvision" and report.family == "shufflenet_v2"
    x = torch.randn(2, 3, 96, 64)
    torch.testing.assert_close(logits(ours, x), logits(tv, x), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------- ShuffleNet-Series layout
def test_shufflenet_series_v2_release_equivalent(tmp_path: Path) -> None:
    release = randomize_weights(ReleaseV2())
    path = save_release(release.state_dict(), tmp_path / "ShuffleNetV2.0.5x.pth.tar")
    # a head with a bias: the converter gives the release's bias-free FC a zero bias
    ours = build_classifier("shufflenet_v2_0.5x", fc_bias=True)
    report = load_checkpoint(ours, path, strict=True)
    assert report.layout == "shufflenet_series" and report.input_format == "BGR255"
    assert ours.backbone.input_format == "BGR255"
    x = torch.rand(2, 3, 64, 96) * 255
    expected = logits(release, x)  # large values (0-255 input): compare relative to their scale
    torch.testing.assert_close(logits(ours, x), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


def test_shufflenet_series_v2_needs_channel_permutation() -> None:
    """A plain rename would load (the shapes agree at 0.5x) but compute another function."""
    release = randomize_weights(ReleaseV2())
    converted = convert_shufflenet_series_shufflenet_v2(dict(release.state_dict()))
    renamed = release.state_dict()["features.1.branch_main.0.weight"]
    assert converted["stages.stage2.1.branch2.0.weight"].shape == renamed.shape
    assert not torch.equal(converted["stages.stage2.1.branch2.0.weight"], renamed)


def test_shufflenet_series_v2_1_0x_release_equivalent(tmp_path: Path) -> None:
    """1.0x: stage2's first unit keeps 24 channels on its shortcut (24 + 92 = 116); a model
    built with shortcut_keeps_input=True computes the release's logits."""
    release = randomize_weights(ReleaseV2(widths=(24, 116, 232, 464, 1024)))
    path = save_release(release.state_dict(), tmp_path / "ShuffleNetV2.1.0x.pth.tar")
    ours = build_classifier("shufflenet_v2_1.0x", fc_bias=True, shortcut_keeps_input=True)
    unit = ours.backbone.stages["stage2"][0]
    assert unit.branch1[2].out_channels == 24 and unit.branch2[5].out_channels == 92
    report = load_checkpoint(ours, path, strict=True)
    assert report.layout == "shufflenet_series" and not report.missing_keys and not report.unexpected_keys
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # float64: with random BN statistics the logits are ~1e3, too large for an absolute
    # 1e-5 in float32; the conversion only permutes tensors, so nothing is lost in the cast.
    torch.testing.assert_close(logits(ours.double(), x), logits(release.double(), x), atol=1e-5, rtol=0)


def test_shortcut_keeps_input_at_0_5x_is_torchvision_layout(tmp_path: Path) -> None:
    """At 0.5x the input of every stride-2 unit is already out/2: the option changes nothing,
    and the release's 0.5x checkpoint loads into either build."""
    keep = build_classifier("shufflenet_v2_0.5x", fc_bias=True, shortcut_keeps_input=True)
    plain = build_classifier("shufflenet_v2_0.5x", fc_bias=True)
    assert {k: v.shape for k, v in keep.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    release = randomize_weights(ReleaseV2())
    path = save_release(release.state_dict(), tmp_path / "ShuffleNetV2.0.5x.pth.tar")
    load_checkpoint(keep, path, strict=True)
    x = torch.rand(1, 3, 64, 64) * 255
    expected = logits(release, x)
    torch.testing.assert_close(logits(keep, x), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


def test_shufflenet_series_v1_roundtrip(tmp_path: Path) -> None:
    src = build_classifier("shufflenet_v1_g3_0.5x", fc_bias=True)
    randomize_weights(src)
    with torch.no_grad():
        src.fc.bias.zero_()
    release = to_release_v1(src.state_dict())
    assert "features.15.branch_main_2.0.weight" in release and "first_conv.0.weight" in release
    path = save_release(release, tmp_path / "ShuffleNetV1.Group3.0.5x.pth.tar")
    dst = build_classifier("shufflenet_v1_g3_0.5x", fc_bias=True)
    report = load_checkpoint(dst, path, strict=True)
    assert report.layout == "shufflenet_series" and report.family == "shufflenet_v1"
    assert report.input_format == "BGR255"
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    x = torch.rand(1, 3, 64, 64) * 255
    torch.testing.assert_close(logits(dst, x), logits(src, x))


def test_converter_table_keys() -> None:
    assert ("torchvision", "mobilenet_v2") in CONVERTERS
    assert ("shufflenet_series", "shufflenet_v2") in CONVERTERS
    assert ("shufflenet_series", "shufflenet_v1") in CONVERTERS
