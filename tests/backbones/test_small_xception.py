"""Light-Head R-CNN's small Xception-like backbone: Table 7's stages, Xception units with a
receptive field of 7, widths at the ShuffleNet v2 paper's four complexity levels."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones import build_backbone, get_variant, list_backbones
from backbones.small_xception import SmallXception, XceptionUnit, stage_widths

NAMES = ["stem", "stage2", "stage3", "stage4"]


def test_registered_variants() -> None:
    assert list_backbones("small_xception") == [f"small_xception_{w}x" for w in ("0.45", "1.0", "1.45", "1.9")]
    assert get_variant("small_xception_1.0x").paper.macs == 145e6
    assert "Light-Head R-CNN, Table 7" in get_variant("small_xception_1.0x").paper.source
    levels = [get_variant(f"small_xception_{w}x").paper for w in ("0.45", "1.45", "1.9")]
    assert [p.macs for p in levels] == [40e6, 300e6, 500e6]
    assert all("ShuffleNet v2, Table 7" in p.source for p in levels)
    # not ShuffleNet v1 g=1, which keeps the name xception_like_*
    assert get_variant("xception_like_1.0x").family == "shufflenet_v1"


def test_light_head_table7_layout() -> None:
    net = build_backbone("small_xception_1.0x", out_features=NAMES)
    shapes = net.output_shape()
    assert [shapes[n].channels for n in NAMES] == [24, 144, 288, 576]
    assert [shapes[n].stride for n in NAMES] == [4, 8, 16, 32]
    assert [len(net.stages[n]) for n in NAMES[1:]] == [4, 8, 4]
    assert [u.stride for n in NAMES[1:] for u in net.stages[n]] == [2, 1, 1, 1, 2] + [1] * 7 + [2, 1, 1, 1]
    assert isinstance(net.stages["stem"].maxpool, nn.MaxPool2d) and net.stages["stem"].first_conv[0].stride == (2, 2)


def test_width_multiplier() -> None:
    assert stage_widths(1.0) == (144, 288, 576)
    assert stage_widths(0.45) == (64, 128, 256) and stage_widths(1.9) == (272, 544, 1096)
    net = SmallXception(width_mult=1.45)
    assert net.output_shape()["stage4"].channels == 832
    with pytest.raises(ValueError, match="width_mult"):
        SmallXception(width_mult=0)


def test_unit_is_three_separable_convs() -> None:
    unit = XceptionUnit(144, 144, 1)
    convs = [m for m in unit.branch_main if isinstance(m, nn.Conv2d)]
    kinds = [("dw" if c.groups == c.in_channels > 1 else "pw", c.kernel_size[0]) for c in convs]
    assert kinds == [("dw", 3), ("pw", 1)] * 3
    assert [(c.in_channels, c.out_channels) for c in convs if c.kernel_size[0] == 1] == [(144, 36), (36, 36), (36, 144)]
    relus = [i for i, m in enumerate(unit.branch_main) if isinstance(m, nn.ReLU)]
    assert len(relus) == 2  # after the first two pointwise convs; the last one is linear
    down = XceptionUnit(24, 144, 2)  # branch: 144 - 24 = 120 channels, bottleneck 30
    convs = [m for m in down.branch_main if isinstance(m, nn.Conv2d)]
    assert convs[0].stride == (2, 2) and all(c.stride == (1, 1) for c in convs[1:])
    assert (convs[1].out_channels, convs[-1].out_channels) == (30, 120)


def test_receptive_field_is_7() -> None:
    """The ShuffleNet v2 paper's reason for v2*: an Xception unit sees 7x7 (three 3x3 dw)."""
    torch.manual_seed(0)
    branch = XceptionUnit(16, 16, 1).branch_main.eval()
    x = torch.randn(1, 16, 15, 15)
    y = x.clone()
    y[:, :, 7, 7] += 10.0
    with torch.no_grad():
        changed = (branch(x) - branch(y)).abs().sum(1)[0] > 1e-6
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (4, 10, 4, 10)


def test_shortcuts() -> None:
    unit = XceptionUnit(8, 24, 2).eval()
    nn.init.zeros_(unit.branch_main[-1].weight)
    nn.init.zeros_(unit.branch_main[-1].bias)  # the main branch now outputs 0
    x = torch.randn(1, 8, 6, 10)
    with torch.no_grad():
        out = unit(x)
    assert out.shape == (1, 24, 3, 5)
    torch.testing.assert_close(out[:, :8], torch.relu(nn.AvgPool2d(3, 2, 1)(x)))
    assert torch.count_nonzero(out[:, 8:]) == 0
    same = XceptionUnit(8, 8, 1).eval()
    nn.init.zeros_(same.branch_main[-1].weight)
    nn.init.zeros_(same.branch_main[-1].bias)
    with torch.no_grad():
        torch.testing.assert_close(same(x), torch.relu(x))


def test_bad_units() -> None:
    with pytest.raises(ValueError, match="stride"):
        XceptionUnit(8, 8, 3)
    with pytest.raises(ValueError, match="in == out"):
        XceptionUnit(8, 16, 1)
    with pytest.raises(ValueError, match="multiple of 4"):
        XceptionUnit(8, 14, 2)
