"""ShuffleNet v2 units: the residual variant as the authors' ShuffleNetV2.Large, SE,
stride-2 shortcuts (the release's shortcut widths)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones import build_backbone, build_classifier
from backbones.shufflenet_v2 import ShuffleV2Block


def _conv_bn(x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """conv then eval-mode BN from the modules' tensors (F.* only, not the modules' forward)."""
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _se(x: Tensor, se: nn.Module) -> Tensor:
    s = x.mean(dim=(2, 3), keepdim=True)
    s = F.conv2d(F.relu(F.conv2d(s, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias)
    return x * torch.sigmoid(s)


def _authors_residual_unit(x: Tensor, unit: ShuffleV2Block) -> Tensor:
    """The residual form of ShuffleNetV2.Large/network.py L60-76 (megvii-model/ShuffleNet-Series)
    for a stride-1 unit, in our channel layout (the front half passes, the back half is the
    branch; concat + 2-group shuffle): branch 1x1-BN-ReLU, 3x3 depthwise-BN (v2's unit; the
    Large network's 3x3 is a grouped conv with a ReLU), 1x1-BN *without* ReLU; SE; add the
    branch input; ReLU."""
    passed, x2 = x.chunk(2, dim=1)
    b = unit.branch2
    y = F.relu(_conv_bn(x2, b[0], b[1]))
    y = _conv_bn(y, b[3], b[4])
    y = _conv_bn(y, b[5], b[6])
    if unit.se is not None:
        y = _se(y, unit.se)
    y = F.relu(y + x2)
    out = torch.empty(x.shape[0], 2 * y.shape[1], *y.shape[2:])
    out[:, 0::2], out[:, 1::2] = passed, y
    return out


@pytest.mark.parametrize("use_se", [False, True])
def test_residual_unit_adds_before_the_relu(use_se, randomize_norms):
    unit = randomize_norms(ShuffleV2Block(16, 16, 1, use_se=use_se, residual=True)).eval()
    x = torch.randn(2, 16, 9, 7)
    with torch.no_grad():
        out = unit(x)
        torch.testing.assert_close(out, _authors_residual_unit(x, unit), atol=1e-5, rtol=1e-5)
        # the branch ends linear: with the ReLU inside the branch (add after it, no ReLU
        # after the add) the unit computes something else
        passed, x2 = x.chunk(2, dim=1)
        branch = unit.branch2(x2)
        if unit.se is not None:
            branch = unit.se(branch)
        assert (branch < 0).any()
        assert not torch.allclose(out[:, 1::2], F.relu(branch) + x2)
    assert not isinstance(unit.branch2[-1], nn.ReLU) and isinstance(unit.branch2[-1], nn.BatchNorm2d)


def test_plain_unit_keeps_the_branch_relu(randomize_norms):
    unit = randomize_norms(ShuffleV2Block(16, 16, 1)).eval()
    assert isinstance(unit.branch2[-1], nn.ReLU) and not unit.residual
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        out = unit(x)
    passed, x2 = x.chunk(2, dim=1)
    torch.testing.assert_close(out[:, 0::2], passed)
    torch.testing.assert_close(out[:, 1::2], unit.branch2(x2).detach())


def test_stride2_units_have_no_residual(randomize_norms):
    """The authors' stride-2 units project the shortcut and add nothing: residual=True
    leaves them the plain v2 unit (same modules, same output)."""
    res = randomize_norms(ShuffleV2Block(16, 32, 2, residual=True)).eval()
    plain = ShuffleV2Block(16, 32, 2).eval()
    plain.load_state_dict(res.state_dict())
    assert not res.residual
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(res(x), plain(x))


def test_residual_variant_keeps_the_plain_layout():
    """Same parameters and names as shufflenet_v2 (ReLUs have none), so the plain variant's
    checkpoints load; every stride-1 unit is residual, every stride-2 unit not."""
    res, plain = build_backbone("shufflenet_v2_res_0.5x"), build_backbone("shufflenet_v2_0.5x")
    assert {k: v.shape for k, v in res.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    units = [u for name in ("stage2", "stage3", "stage4") for u in res.stages[name]]
    assert [u.residual for u in units] == [u.stride == 1 for u in units]
    res.load_state_dict(plain.state_dict())


def test_shortcut_keeps_input_macs() -> None:
    from backbones.analysis import analyze

    macs = analyze(build_classifier("shufflenet_v2_1.0x", shortcut_keeps_input=True)).macs
    assert abs(macs / 146e6 - 1) <= 0.05, f"{macs / 1e6:.2f}M MACs vs the paper's 146M"
    plain = analyze(build_classifier("shufflenet_v2_1.0x")).macs
    assert 0 < macs - plain < 0.01 * plain  # only stage2's first unit differs


def test_shortcut_channels_arguments() -> None:
    with pytest.raises(ValueError, match="stride-2 units only"):
        ShuffleV2Block(48, 48, 1, shortcut_channels=24)
    with pytest.raises(ValueError, match="shortcut_channels must be in"):
        ShuffleV2Block(24, 48, 2, shortcut_channels=48)
    unit = ShuffleV2Block(24, 116, 2, shortcut_channels=24)
    assert not any("channel_order" in k for k in unit.state_dict())  # a non-persistent buffer
    assert unit.eval()(torch.randn(1, 24, 8, 8)).shape == (1, 116, 4, 4)
