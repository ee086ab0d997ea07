"""The model analyzer: MAC formulas on single layers, what memory access cost leaves out,
agreement with FlopCounterMode, fragmentation and the JSON report (the command line:
tests/detection/cli/test_analyze_model.py)."""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import FrozenBatchNorm2d

from backbones import build_backbone, build_classifier
from backbones.analysis import analyze, analyze_variant
from backbones.layers import channel_shuffle

FP32 = 4


def _bytes(*numels: int) -> int:
    return FP32 * sum(numels)


# ------------------------------------------------------------- single-layer formulas
@pytest.mark.parametrize("c1, c2, h, w", [(32, 64, 14, 14), (24, 24, 7, 9), (3, 128, 1, 1)])
def test_pointwise_conv_matches_paper_formula(c1: int, c2: int, h: int, w: int) -> None:
    """ShuffleNet v2, G1: a 1x1 conv has B = hw*c1*c2 and MAC = hw(c1 + c2) + c1*c2."""
    report = analyze(nn.Conv2d(c1, c2, 1, bias=False), input_size=(h, w), in_channels=c1)
    assert report.macs == h * w * c1 * c2
    assert report.mac_bytes == FP32 * (h * w * (c1 + c2) + c1 * c2)
    assert report.params == c1 * c2


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv(stride: int) -> None:
    c, h, w = 16, 12, 10
    oh, ow = h // stride, w // stride
    conv = nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False)
    report = analyze(conv, input_size=(h, w), in_channels=c)
    assert report.macs == oh * ow * c * 9
    assert report.mac_bytes == _bytes(c * h * w, c * 9, c * oh * ow)


def test_group_conv_mac_grows_with_groups_at_fixed_flops() -> None:
    """G2: at fixed FLOPs, more groups (and hence wider layers) cost more memory access."""
    h = w = 14
    dense = analyze(nn.Conv2d(64, 64, 1, bias=False), input_size=(h, w), in_channels=64)
    grouped = analyze(nn.Conv2d(128, 128, 1, groups=4, bias=False), input_size=(h, w), in_channels=128)
    assert grouped.macs == dense.macs
    assert grouped.mac_bytes > dense.mac_bytes


def test_linear() -> None:
    batch, d_in, d_out = 3, 20, 7
    model = nn.Linear(d_in, d_out)
    report = analyze(model, example=torch.randn(batch, d_in))
    assert report.batch == batch
    assert report.macs == batch * d_in * d_out
    # addmm reads the input, the weight and the bias and writes the output
    assert report.mac_bytes == _bytes(batch * d_in, d_in * d_out, d_out, batch * d_out)
    assert report.macs_by_op == {"addmm": batch * d_in * d_out}


# --------------------------------------------------------------- what mac_bytes skips
def _conv_bn_relu(c1: int, c2: int, norm: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c1, c2, 1, bias=False), norm, nn.ReLU(inplace=True))


@pytest.mark.parametrize("norm", ["bn", "frozen_bn", "identity"])
def test_batch_norm_is_folded_into_the_conv(norm: str) -> None:
    c1, c2, h, w = 8, 16, 6, 6
    layer = {"bn": nn.BatchNorm2d(c2), "frozen_bn": FrozenBatchNorm2d(c2), "identity": nn.Identity()}[norm]
    report = analyze(_conv_bn_relu(c1, c2, layer), input_size=(h, w), in_channels=c1)
    relu = _bytes(2 * c2 * h * w)  # in-place ReLU still reads and writes the map
    assert report.mac_bytes == FP32 * (h * w * (c1 + c2) + c1 * c2) + relu
    assert report.macs == h * w * c1 * c2


class _FunctionalBN(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("var", torch.ones(c))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.mean, self.var, training=False)


def test_functional_batch_norm_counts_zero() -> None:
    report = analyze(_FunctionalBN(8), input_size=(5, 5), in_channels=8)
    assert report.mac_bytes == 0


class _Views(nn.Module):
    """Only views: chunk, view, transpose, detach, unsqueeze, expand, slice, flatten, t."""

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        _, half = x.chunk(2, dim=1)
        y = half.view(n, c // 2, h * w).transpose(1, 2).detach()
        y = y.unsqueeze(0).expand(3, -1, -1, -1)[..., 1:]
        return y[0, 0].t(), x.flatten(1)


def test_views_cost_nothing() -> None:
    report = analyze(_Views(), input_size=(4, 6), in_channels=8)
    assert report.mac_bytes == 0 and report.macs == 0


class _Shuffle(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, 2)


def test_channel_shuffle_is_one_copy() -> None:
    c, h, w = 8, 5, 3
    report = analyze(_Shuffle(), input_size=(h, w), in_channels=c)
    assert report.mac_bytes == _bytes(2 * c * h * w)
    assert report.mac_bytes_by_op == {"clone": _bytes(2 * c * h * w)}


@pytest.mark.parametrize("inplace", [True, False])
def test_inplace_counts_like_out_of_place(inplace: bool) -> None:
    report = analyze(nn.ReLU(inplace=inplace), input_size=(4, 4), in_channels=3)
    assert report.mac_bytes == _bytes(2 * 3 * 16)


def test_elementwise_add_and_cat() -> None:
    class AddCat(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.cat((x + x, x), dim=1)

    c, h, w = 4, 3, 3
    n = c * h * w
    report = analyze(AddCat(), input_size=(h, w), in_channels=c)
    # add reads x once (the same tensor twice) and writes n; cat reads 2n and writes 2n
    assert report.mac_bytes == _bytes(n + n, 2 * n + 2 * n)


# ------------------------------------------------------- agreement and bookkeeping
@pytest.mark.parametrize("name", ["shufflenet_v2_se_0.5x", "shufflenet_v2star_0.5x"])
def test_macs_equal_flop_counter_mode(name: str) -> None:
    model = build_classifier(name, num_classes=10)
    x = torch.randn(2, 3, 64, 96)
    report = analyze(model, example=x)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    assert counter.get_total_flops() > 0
    assert report.macs * 2 == counter.get_total_flops()


def test_stage_rows_add_up_to_the_totals() -> None:
    report = analyze(build_classifier("shufflenet_v2_0.5x"), input_size=(64, 64))
    assert [s.name for s in report.stages] == ["stem", "stage2", "stage3", "stage4", "conv5", "head"]
    for key in ("params", "macs", "mac_bytes"):
        assert sum(getattr(s, key) for s in report.stages) == getattr(report, key), key
    head = report.stage("head")
    # the authors' ShuffleNet v2 FC has no bias (backbones.classifier.released_fc_bias)
    assert head.params == 1024 * 1000 and head.macs == 1024 * 1000
    assert report.stage("stage3").output_shape == (96, 4, 4) and report.stage("stage3").stride == 16


def test_bare_backbone_stops_at_its_last_output() -> None:
    """A backbone's forward stops after its last out_feature: later stages cost nothing
    but keep their params, so the rows still add up and no `head` row appears."""
    model = build_backbone("shufflenet_v2_0.5x", out_features=["stage2", "stage3"])
    report = analyze(model, input_size=(64, 64))
    assert [s.name for s in report.stages] == model.stage_names
    assert report.stage("conv5").output_shape == () and report.stage("conv5").macs == 0
    assert report.stage("conv5").params > 0
    assert sum(s.params for s in report.stages) == report.params
    assert report.output_shape == (48, 8, 8)  # the first output, stage2


def test_analyze_restores_training_flags() -> None:
    model = build_classifier("shufflenet_v2_0.5x").train()
    model.backbone.stages["stem"].eval()
    analyze(model, input_size=(32, 32))
    assert model.training and model.backbone.stages["stage2"].training
    assert not model.backbone.stages["stem"].training


# ------------------------------------------------------------------- fragmentation
class _Parallel(nn.Module):
    """The paper's 4-fragment-parallel block (appendix Fig. 1e)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        return sum(conv(x) for conv in self.convs)


class _Series(nn.Module):
    """4-fragment-series (appendix Fig. 1c)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(nn.Conv2d(c, c, 1) for _ in range(4)))

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x)


def test_fragments_and_branches_of_paper_blocks() -> None:
    model = nn.Sequential(OrderedDict(stage=nn.Sequential(_Parallel(), _Series(), _Parallel())))
    report = analyze(model, input_size=(5, 5), in_channels=8)
    stage = report.stage("stage")
    assert stage.fragments == [4, 4, 4]
    assert stage.branches == [4, 1, 4]


def test_shufflenet_v2_fragments() -> None:
    report = analyze(build_classifier("shufflenet_v2_0.5x"), input_size=(64, 64))
    stage2 = report.stage("stage2")
    # stride-2 unit: dw + pw on the shortcut, pw + dw + pw on the main branch, side by side
    assert stage2.fragments == [5, 3, 3, 3] and stage2.branches == [2, 1, 1, 1]
    assert report.stage("stage3").units == 8
    assert report.stage("stem").fragments == [2]  # conv + max-pool: a stage of bare layers
    assert report.stage("conv5").fragments == [1]
    assert report.stage("head").units == 0


# --------------------------------------------------------------------- JSON report
REQUIRED_KEYS = {"name", "params", "macs", "mac_bytes", "input_size", "stages", "paper_macs", "paper_params",
                 "macs_rel_diff", "params_rel_diff"}
STAGE_KEYS = {"name", "output_shape", "stride", "params", "macs", "mac_bytes", "units", "fragments_min",
              "fragments_max", "fragments_mean"}


def test_report_json_at_paper_resolution() -> None:
    report = analyze_variant("shufflenet_v2_0.5x")
    data = json.loads(json.dumps(report.to_dict()))
    assert REQUIRED_KEYS <= set(data)
    assert all(STAGE_KEYS <= set(stage) for stage in data["stages"])
    assert data["name"] == "shufflenet_v2_0.5x" and data["input_size"] == [224, 224]
    assert data["paper_macs"] == 41e6 and data["paper_params"] == 1.4e6
    assert data["macs_rel_diff"] == pytest.approx(data["macs"] / 41e6 - 1)
    assert data["params_rel_diff"] == pytest.approx(data["params"] / 1.4e6 - 1)


def test_report_away_from_224_has_no_macs_diff() -> None:
    report = analyze_variant("shufflenet_v2_0.5x", input_size=(64, 96))
    assert report.input_size == (64, 96)
    assert report.macs_rel_diff is None and report.params_rel_diff is not None
    assert report.to_dict()["stages"][0]["output_shape"] == [24, 16, 24]
