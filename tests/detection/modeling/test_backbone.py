"""MODEL.BACKBONE.NORM applied to the model: "" = auto (FrozenBN with pretrained backbone
weights, BN from scratch), explicit values win (the policy itself: tests/detection/test_config_checks.py)."""
import pytest
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detection.config import get_cfg
from detection.modeling import build_model
from detection.modeling.backbone import convert_norm


def _cfg(norm, weights="", device="cpu"):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NORM = norm
    cfg.MODEL.BACKBONE.WEIGHTS = weights
    cfg.MODEL.DEVICE = device
    return cfg


def test_convert_norm_to_syncbn_and_invalid_value():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert isinstance(convert_norm(net, "SyncBN")[1], nn.SyncBatchNorm)
    with pytest.raises(ValueError, match="got 'GN'"):
        convert_norm(net, "GN")


@pytest.mark.parametrize("norm, frozen", [("", True), ("BN", False)])
def test_auto_freezes_bn_of_a_pretrained_backbone(tmp_path, norm, frozen):
    import backbones
    from backbones.weights import save_backbone_checkpoint

    path = save_backbone_checkpoint(backbones.build_backbone("shufflenet_v2_0.5x"), str(tmp_path / "bb.pth"))
    cfg = _cfg(norm, weights=path)
    cfg.MODEL.BACKBONE.NAME = "shufflenet_v2_0.5x"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.LIGHT_HEAD.FC_DIM = 64
    cfg.MODEL.LIGHT_HEAD.MID_CHANNELS = 16
    model = build_model(cfg)
    bn = [m for m in model.backbone.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert bn and all(isinstance(m, FrozenBatchNorm2d) == frozen for m in bn)
    # without weights, auto means trainable BN
    cfg.MODEL.BACKBONE.WEIGHTS = ""
    cfg.MODEL.BACKBONE.NORM = ""
    scratch = build_model(cfg)
    assert any(isinstance(m, nn.BatchNorm2d) and m.weight.requires_grad for m in scratch.backbone.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in scratch.backbone.modules())


def test_shipped_base_configs_leave_the_norm_policy_automatic():
    # an explicit FrozenBN in a Base config would freeze random statistics when training from scratch
    from detection.config import get_cfg
    from helpers import shipped_configs

    bases = shipped_configs("Base-*.yaml")
    assert bases
    for path in bases:
        cfg = get_cfg()
        cfg.merge_from_file(path)
        assert cfg.MODEL.BACKBONE.NORM == "", path
