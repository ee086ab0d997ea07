"""Detectors: every head on several backbones trains one step and predicts."""
from __future__ import annotations

import math

import pytest
import torch

import backbones
from detection.config import get_cfg
from detection.modeling import build_model

HEADS = {
    "light_head": dict(META_ARCHITECTURE="LightHeadRCNN"),
    "faster_c4": dict(META_ARCHITECTURE="FasterRCNN"),
    "faster_fpn": dict(META_ARCHITECTURE="FasterRCNN", FPN=True),
}
# One small variant per family; test_all_pairs sweeps the whole registry.
BACKBONES = [
    "shufflenet_v2_0.5x",
    "shufflenet_v2star_0.5x",
    "shufflenet_v1_g3_0.5x",
    "mobilenet_v2_0.5x",
    "fd_mobilenet_0.25x",
    "seesaw_shuffle_0.5d",
    "mobilenet_v1_0.25x",
]


def tiny_cfg(head: str, backbone: str, num_classes: int = 3):
    cfg = get_cfg()
    spec = HEADS[head]
    cfg.MODEL.META_ARCHITECTURE = spec["META_ARCHITECTURE"]
    if spec.get("FPN"):
        cfg.MODEL.FPN.ENABLED = True
        cfg.MODEL.FPN.OUT_CHANNELS = 32
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128]]
        cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.HEAD_CONV_DIM = 32
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.MODEL.LIGHT_HEAD.FC_DIM = 64
    cfg.MODEL.LIGHT_HEAD.MID_CHANNELS = 16
    cfg.MODEL.LIGHT_HEAD.CHANNELS_PER_BIN = 2
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 8
    cfg.TEST.DETECTIONS_PER_IMAGE = 10
    return cfg


def make_inputs(with_objects: bool = True):
    g = torch.Generator().manual_seed(0)
    first = {
        "image": torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=g),
        "height": 192,
        "width": 256,
        "file_name": "a.jpg",
        "instances": {
            "boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 90.0]]),
            "labels": torch.tensor([0, 2]),
        },
    }
    empty = {
        "image": torch.randint(0, 256, (3, 128, 96), dtype=torch.uint8, generator=g),
        "height": 128,
        "width": 96,
        "file_name": "empty.jpg",
        "instances": {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    }
    return [first, empty] if with_objects else [empty]


def check_train_and_eval(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    losses = model(make_inputs())
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values()), losses
    total = sum(losses.values())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    with_grad = [g for g in grads if g is not None]
    assert with_grad, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in with_grad)
    # Every trainable parameter is used: unused ones would break DDP.
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused

    # Images without objects alone are valid negatives.
    model.zero_grad()
    neg = model(make_inputs(with_objects=False))
    assert all(math.isfinite(v.item()) for v in neg.values())

    model.eval()
    with torch.no_grad():
        outputs = model(make_inputs())
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(192, 256), (128, 96)]):
        n = out["boxes"].shape[0]
        assert out["boxes"].shape == (n, 4) and out["scores"].shape == (n,) and out["labels"].shape == (n,)
        assert n <= cfg.TEST.DETECTIONS_PER_IMAGE
        if n:
            assert out["labels"].min() >= 0 and out["labels"].max() < cfg.MODEL.ROI_HEADS.NUM_CLASSES
            assert out["boxes"][:, 0::2].max() <= w and out["boxes"][:, 1::2].max() <= h
            assert out["boxes"].min() >= 0
            assert (out["scores"] >= cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST).all()


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_head_on_backbone_trains_and_predicts(head, backbone):
    check_train_and_eval(tiny_cfg(head, backbone))


def test_channels_come_from_output_shape():
    cfg = tiny_cfg("light_head", "shufflenet_v2_1.0x")
    model = build_model(cfg)
    shapes = model.backbone.output_shape()
    assert set(shapes) == {"stage3", "stage4"}
    assert model.rpn.head.conv.in_channels == shapes["stage3"].channels == 232
    sep = model.neck.conv
    assert sep.col_first[0].in_channels == shapes["stage4"].channels == 464
    k = cfg.MODEL.LIGHT_HEAD.POOLER_RESOLUTION
    assert sep.col_first[-1].out_channels == cfg.MODEL.LIGHT_HEAD.CHANNELS_PER_BIN * k * k == 2 * 7 * 7
    assert model.roi_heads.box_roi_pool.spatial_scale == 1 / 32
    # conv5 is not part of the Light-Head backbone (it would sit unused).
    assert "conv5" not in model.backbone.stage_names


def test_c4_uses_later_stages_as_box_head():
    model = build_model(tiny_cfg("faster_c4", "shufflenet_v2_0.5x"))
    assert model.backbone.stage_names == ["stem", "stage2", "stage3"]
    assert list(model.roi_heads.box_head.stages) == ["stage4", "conv5"]
    assert model.roi_heads.box_predictor.cls_score.in_features == 1024
    assert model.roi_heads.box_roi_pool.spatial_scale == 1 / 16


def test_default_light_head_settings_match_paper():
    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 80
    model = build_model(cfg)
    sep = model.neck.conv
    assert sep.col_first[0].kernel_size == (15, 1) and sep.col_first[1].kernel_size == (1, 15)
    assert sep.row_first[0].kernel_size == (1, 15) and sep.row_first[1].kernel_size == (15, 1)
    assert sep.col_first[0].out_channels == 64
    assert sep.col_first[1].out_channels == 490  # 10 x 7 x 7
    fc = model.roi_heads.box_head.fcs[1]
    assert (fc.in_features, fc.out_features) == (490, 2048)
    assert model.rpn.head.conv.out_channels == 256
    assert model.rpn.anchor_generator.num_anchors_per_location() == [15]


@pytest.mark.parametrize("std", [0.01, 0.0])
def test_light_head_fc_initialisation(std):
    """FC_INIT_STD > 0: weights ~ N(0, std), zero biases (the authors'); 0: PyTorch's default,
    uniform in +-1/sqrt(fan_in) with non-zero biases."""
    cfg = tiny_cfg("light_head", "shufflenet_v2_0.5x")
    cfg.MODEL.LIGHT_HEAD.FC_DIM = 512
    cfg.MODEL.LIGHT_HEAD.FC_INIT_STD = std
    fc = build_model(cfg).roi_heads.box_head.fcs[1]
    fan_in = fc.weight.shape[1]
    if std:
        assert fc.weight.std().item() == pytest.approx(std, rel=0.05)
        assert not fc.bias.any()
    else:
        bound = 1 / math.sqrt(fan_in)
        assert fc.weight.abs().max().item() <= bound
        assert fc.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert fc.bias.abs().max().item() <= bound and fc.bias.any()


def test_bad_stage_name_is_reported():
    cfg = tiny_cfg("light_head", "shufflenet_v2_0.5x")
    cfg.MODEL.BACKBONE.RPN_FEATURE = "stage9"
    with pytest.raises(ValueError, match="stage9.*stages"):
        build_model(cfg)


def test_unknown_meta_architecture_lists_registered():
    cfg = tiny_cfg("light_head", "shufflenet_v2_0.5x")
    cfg.MODEL.META_ARCHITECTURE = "LightHeadRCN"
    with pytest.raises(KeyError, match="LightHeadRCNN"):
        build_model(cfg)


def test_frozen_bn_option():
    from torchvision.ops import FrozenBatchNorm2d

    cfg = tiny_cfg("faster_c4", "shufflenet_v2_0.5x")
    cfg.MODEL.BACKBONE.NORM = "FrozenBN"
    model = build_model(cfg)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.roi_heads.box_head.modules())


@pytest.mark.parametrize("backbone", backbones.list_backbones(include_aliases=False))
@pytest.mark.parametrize("head", sorted(HEADS))
def test_all_pairs(head, backbone):
    check_train_and_eval(tiny_cfg(head, backbone))
