"""ShuffleNet v1: unit structure, width rules, stage shapes, freezing, registry entries."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from backbones import build_backbone, get_variant, list_backbones
from backbones.layers import SqueezeExcite
from backbones.shufflenet_v1 import BASE_STAGE_WIDTHS, STEM_WIDTHS, ShuffleNetV1, ShuffleV1Block, stage_widths
from helpers.models import check_stage_outputs, randomize_norms

torch.manual_seed(0)


# ------------------------------------------------------------------ widths
@pytest.mark.parametrize("groups", sorted(BASE_STAGE_WIDTHS))
@pytest.mark.parametrize("width", sorted(STEM_WIDTHS))
def test_widths_are_divisible(groups: int, width: float) -> None:
    stem, *stages = stage_widths(groups, width)
    assert stem % groups == 0  # the first unit's pw-linear outputs stage2 - stem channels in g groups
    for w, base in zip(stages, BASE_STAGE_WIDTHS[groups]):
        assert w % (4 * groups) == 0
        assert abs(w - base * width) <= 2 * groups  # nearest multiple of 4g


@pytest.mark.parametrize(
    "groups, width, expected",
    [
        (3, 1.0, (24, 240, 480, 960)),  # Table 1
        (1, 1.0, (24, 144, 288, 576)),
        (8, 1.0, (24, 384, 768, 1536)),
        (3, 0.5, (12, 120, 240, 480)),  # the authors' released widths
        (3, 1.5, (24, 360, 720, 1440)),
        (3, 2.0, (48, 480, 960, 1920)),
        (8, 0.5, (16, 192, 384, 768)),  # stem 12 -> 16 so that 192 - stem splits into 8 groups
        (2, 0.5, (12, 104, 200, 400)),  # 100 is a tie between 96 and 104: rounds up
        (4, 0.25, (8, 64, 144, 272)),
    ],
)
def test_stage_widths_values(groups: int, width: float, expected: tuple) -> None:
    assert stage_widths(groups, width) == expected


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="groups must be one of"):
        ShuffleNetV1(groups=5)
    with pytest.raises(ValueError, match="width_mult must be one of"):
        ShuffleNetV1(groups=3, width_mult=0.75)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        ShuffleV1Block(24, 24, 3, groups=3)
    with pytest.raises(ValueError, match="in == out"):
        ShuffleV1Block(24, 48, 1, groups=3)
    with pytest.raises(ValueError, match="multiple of 3"):
        ShuffleV1Block(24, 100, 2, groups=3)  # bottleneck 25 does not split into 3 groups


# ------------------------------------------------------------------- units
def test_stride2_unit_concatenates_pooled_shortcut() -> None:
    unit = ShuffleV1Block(24, 60, stride=2, groups=3).eval()
    randomize_norms(unit)
    assert isinstance(unit.branch_proj, nn.AvgPool2d)
    assert unit.branch_main_2[0].out_channels == 60 - 24  # branch only adds the missing width
    x = torch.rand(2, 24, 10, 14)  # non-negative, like every ReLU output it follows
    with torch.no_grad():
        y = unit(x)
    assert y.shape == (2, 60, 5, 7)
    # First the shortcut (3x3 avg-pool s2), then the branch; ReLU after the concat.
    torch.testing.assert_close(y[:, :24], F.avg_pool2d(x, 3, 2, 1))
    assert (y >= 0).all()


def test_stride1_unit_adds_identity_then_relu() -> None:
    unit = ShuffleV1Block(48, 48, stride=1, groups=4).eval()
    assert unit.branch_proj is None
    bn_last = unit.branch_main_2[1]
    nn.init.zeros_(bn_last.weight)
    nn.init.zeros_(bn_last.bias)  # residual branch now outputs zeros
    x = torch.randn(2, 48, 6, 9)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), torch.relu(x))


def test_unit_layout_has_no_relu_after_depthwise() -> None:
    unit = ShuffleV1Block(48, 48, stride=1, groups=3)
    kinds = [type(m) for m in unit.branch_main_1]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert [type(m) for m in unit.branch_main_2] == [nn.Conv2d, nn.BatchNorm2d]
    pw, dw, pw_linear = unit.branch_main_1[0], unit.branch_main_1[3], unit.branch_main_2[0]
    assert pw.groups == 3 and pw.out_channels == 12  # bottleneck = out / 4
    assert dw.groups == dw.in_channels == 12 and dw.kernel_size == (3, 3)
    assert pw_linear.groups == 3


def test_unit_matches_released_code_computation() -> None:
    """Shuffle as in megvii's ShuffleNet-Series (after dw, channels viewed as (C/g, g)), so
    their checkpoints load key for key and compute the same function."""
    g = 3
    unit = ShuffleV1Block(48, 48, stride=1, groups=g).eval()
    randomize_norms(unit)
    x = torch.randn(2, 48, 5, 7)
    with torch.no_grad():
        z = unit.branch_main_1(x)
        n, c, h, w = z.shape
        z = z.reshape(n, c // g, g, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
        expected = torch.relu(unit.branch_main_2(z) + x)
        torch.testing.assert_close(unit(x), expected)


def test_se_gates_the_residual_branch() -> None:
    unit = ShuffleV1Block(24, 96, stride=2, groups=3, use_se=True)
    assert isinstance(unit.se, SqueezeExcite)
    assert unit.se.fc1.in_channels == 96 - 24
    assert ShuffleV1Block(24, 96, stride=2, groups=3).se is None


# ---------------------------------------------------------------- backbone
def test_only_first_stage2_pointwise_is_dense() -> None:
    net = ShuffleNetV1(groups=3, width_mult=0.25)
    units = [u for s in ("stage2", "stage3", "stage4") for u in net.stages[s]]
    assert len(units) == 4 + 8 + 4
    assert [u.stride for u in units] == [2, 1, 1, 1] + [2] + [1] * 7 + [2, 1, 1, 1]
    first_pw = [u.branch_main_1[0].groups for u in units]
    assert first_pw == [1] + [3] * 15
    assert all(u.branch_main_2[0].groups == 3 for u in units)


def test_stage_shapes_match_outputs_at_non_square_input() -> None:
    names = ["stem", "stage2", "stage3", "stage4"]
    net = ShuffleNetV1(groups=8, width_mult=0.25, out_features=names).eval()
    shapes = net.output_shape()
    assert [shapes[n].stride for n in names] == [4, 8, 16, 32]
    assert [shapes[n].channels for n in names] == list(stage_widths(8, 0.25))
    check_stage_outputs(net, names)


def test_checkpoint_key_layout() -> None:
    keys = ShuffleNetV1(groups=3, width_mult=0.25).state_dict().keys()
    for key in (
        "stages.stem.first_conv.0.weight",
        "stages.stem.first_conv.1.running_var",
        "stages.stage2.0.branch_main_1.3.weight",  # dw
        "stages.stage4.3.branch_main_2.1.bias",
    ):
        assert key in keys


def test_freeze_at() -> None:
    net = ShuffleNetV1(groups=3, width_mult=0.25, freeze_at=2)
    for name in ("stem", "stage2"):
        stage = net.stages[name]
        assert not any(p.requires_grad for p in stage.parameters())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in stage.modules())
        assert any(isinstance(m, FrozenBatchNorm2d) for m in stage.modules())
    assert all(p.requires_grad for p in net.stages["stage3"].parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.stages["stage3"].modules())


# ---------------------------------------------------------------- registry
def test_registry_names_and_aliases() -> None:
    names = set(list_backbones(family="shufflenet_v1"))
    for g in (1, 2, 3, 4, 8):
        for w in ("0.25x", "0.5x", "1.0x", "1.5x", "2.0x"):
            assert f"shufflenet_v1_g{g}_{w}" in names
            assert f"shufflenet_v1_g{g}_{w}_se" in names
    for w in ("0.25x", "0.5x", "1.0x", "1.5x", "2.0x"):
        alias = get_variant(f"xception_like_{w}")
        target = get_variant(f"shufflenet_v1_g1_{w}")
        assert alias.alias_of == target.name
        assert alias.identity == target.identity
    se = build_backbone("shufflenet_v1_g3_0.25x_se")
    assert any(isinstance(m, SqueezeExcite) for m in se.modules())
    assert get_variant("shufflenet_v1_g3_2.0x").paper.macs == 524e6
    assert get_variant("shufflenet_v1_g3_2.0x_se").paper.top1_error == 24.7
