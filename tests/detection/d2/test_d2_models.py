"""litedet parts inside detectron2: backbones' shapes, the shipped configs/detectron2 YAMLs
building stock `GeneralizedRCNN` models that train one step and predict, OHEM, weights.

Needs detectron2 (built from source, docs/detectron2.md); skipped without it.
"""
from __future__ import annotations

import math
import os

import pytest
import torch

pytest.importorskip(
    "detectron2",
    reason="detectron2 is not installed (optional; build it from source as docs/detectron2.md explains)",
)

from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, build_model  # noqa: E402
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, FastRCNNOutputLayers  # noqa: E402
from detectron2.structures import Boxes, ImageList, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

import backbones  # noqa: E402
from detection.d2 import (  # noqa: E402
    LightHeadROIHeads,
    LitedetBackbone,
    LitedetC4ROIHeads,
    add_litedet_config,
    build_litedet_backbone,
    build_litedet_fpn_backbone,
    select_hard_examples,
)
from detection.modeling.backbone import stage_with_stride  # noqa: E402
from helpers import config_path, shipped_configs  # noqa: E402

D2_CONFIGS = shipped_configs("detectron2/*.yaml")
LEAVES = shipped_configs("detectron2/*.yaml", bases=False)
FAMILIES = sorted({backbones.get_variant(n).family for n in backbones.list_backbones()})


def paper_macs(name: str) -> float:
    macs = backbones.get_variant(name).paper.macs
    return math.inf if macs is None else macs


# The cheapest variant of each family (by its paper's multiply-adds): every family, quickly.
ONE_PER_FAMILY = [min(backbones.list_backbones(f, include_aliases=False), key=paper_macs) for f in FAMILIES]


def load_cfg(path: str):
    cfg = get_cfg()
    add_litedet_config(cfg)
    cfg.merge_from_file(path)
    return cfg


def shrink(cfg, num_classes: int = 3):
    """Tiny CPU version: half-width variant, few proposals and RoIs."""
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.LITEDET.BACKBONE = cfg.MODEL.LITEDET.BACKBONE.replace("1.0x", "0.5x")
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 40
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.LIGHT_HEAD.OHEM_TOPK = 12  # < 32 sampled RoIs: OHEM really selects
    cfg.MODEL.LIGHT_HEAD.FC_DIM = 256
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 128
    return cfg


def random_inputs(num_images: int = 2, height: int = 100, width: int = 140):
    generator = torch.Generator().manual_seed(0)
    inputs = []
    for _ in range(num_images):
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 60.0, 70.0], [50.0, 20.0, 130.0, 90.0]]))
        instances.gt_classes = torch.tensor([0, 2])
        image = torch.randint(0, 256, (3, height, width), generator=generator).float()
        inputs.append({"image": image, "instances": instances, "height": height, "width": width})
    return inputs


# ---------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("name", backbones.list_backbones())
def test_output_shape_matches_features(name):
    """Every registered variant: detectron2 ShapeSpecs match the features, on an input
    padded to ``size_divisibility`` from a size that is not a multiple of it."""
    cfg = get_cfg()
    add_litedet_config(cfg)
    cfg.MODEL.LITEDET.BACKBONE = name
    cfg.MODEL.LITEDET.OUT_FEATURES = backbones.build_backbone(name).stage_names
    backbone = build_litedet_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(backbone, LitedetBackbone)
    shapes = backbone.output_shape()
    assert list(shapes) == list(cfg.MODEL.LITEDET.OUT_FEATURES)
    assert all(isinstance(s, ShapeSpec) for s in shapes.values())
    assert backbone.size_divisibility == max(s.stride for s in shapes.values())
    images = ImageList.from_tensors([torch.randn(3, 45, 70)], backbone.size_divisibility)
    padded_h, padded_w = images.tensor.shape[-2:]
    assert padded_h % backbone.size_divisibility == 0 and padded_w % backbone.size_divisibility == 0
    with torch.no_grad():
        features = backbone.eval()(images.tensor)
    assert list(features) == list(shapes)
    for f, spec in shapes.items():
        assert tuple(features[f].shape) == (1, spec.channels, padded_h // spec.stride, padded_w // spec.stride), f


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_fpn_backbone_shapes(name):
    net = backbones.build_backbone(name)
    stages = [stage_with_stride(net, s) for s in (8, 16, 32)]
    cfg = get_cfg()
    add_litedet_config(cfg)
    cfg.MODEL.LITEDET.BACKBONE = name
    cfg.MODEL.FPN.IN_FEATURES = stages
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    fpn = build_litedet_fpn_backbone(cfg, ShapeSpec(channels=3))
    assert fpn.bottom_up.output_shape().keys() == set(stages)  # later stages dropped
    shapes = fpn.output_shape()
    assert list(shapes) == ["p3", "p4", "p5", "p6"]
    assert fpn.size_divisibility == 32  # detectron2's FPN: coarsest input stride (P6 rounds up)
    with torch.no_grad():
        features = fpn.eval()(torch.randn(1, 3, 96, 160))
    for f, spec in shapes.items():
        size = (math.ceil(96 / spec.stride), math.ceil(160 / spec.stride))
        assert tuple(features[f].shape) == (1, 32, *size), f


def test_freeze_at_and_norm():
    cfg = get_cfg()
    add_litedet_config(cfg)
    cfg.MODEL.LITEDET.BACKBONE = "shufflenet_v2_0.5x"
    cfg.MODEL.LITEDET.OUT_FEATURES = ["stage3"]
    cfg.MODEL.LITEDET.FREEZE_AT = 2
    cfg.MODEL.LITEDET.NORM = "FrozenBN"
    backbone = build_litedet_backbone(cfg, ShapeSpec(channels=3))
    stages = backbone.net.stages
    assert list(stages) == ["stem", "stage2", "stage3"]
    assert not any(p.requires_grad for n in ("stem", "stage2") for p in stages[n].parameters())
    assert all(p.requires_grad for p in stages["stage3"].parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())


def test_registries_and_config_keys():
    assert BACKBONE_REGISTRY.get("build_litedet_backbone") is build_litedet_backbone
    assert BACKBONE_REGISTRY.get("build_litedet_fpn_backbone") is build_litedet_fpn_backbone
    assert ROI_HEADS_REGISTRY.get("LightHeadROIHeads") is LightHeadROIHeads
    assert ROI_HEADS_REGISTRY.get("LitedetC4ROIHeads") is LitedetC4ROIHeads
    cfg = get_cfg()
    add_litedet_config(cfg)
    cfg.MODEL.LITEDET.BACKBONE = "mobilenet_v2_0.5x"
    add_litedet_config(cfg)  # a second call keeps values
    assert cfg.MODEL.LITEDET.BACKBONE == "mobilenet_v2_0.5x"
    assert (cfg.MODEL.LIGHT_HEAD.KERNEL_SIZE, cfg.MODEL.LIGHT_HEAD.MID_CHANNELS) == (15, 64)
    assert cfg.MODEL.LIGHT_HEAD.CHANNELS_PER_BIN * cfg.MODEL.LIGHT_HEAD.POOLER_RESOLUTION**2 == 490


def test_bad_stage_names_are_explained():
    cfg = load_cfg(config_path("detectron2", "lighthead_shufflenet_v2_1.0x.yaml"))
    shrink(cfg)
    cfg.MODEL.LITEDET.OUT_FEATURES = ["res4"]
    with pytest.raises(ValueError, match="unknown out_features.*res4.*stages are"):
        build_model(cfg)
    cfg.MODEL.LITEDET.OUT_FEATURES = ["stage3", "stage4"]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["res5"]
    with pytest.raises(ValueError, match="IN_FEATURES.*not a backbone output"):
        build_model(cfg)


def test_c4_head_needs_the_plain_backbone():
    cfg = load_cfg(config_path("detectron2", "fasterrcnn_fpn_mobilenet_v2_1.0x.yaml"))
    shrink(cfg)
    cfg.MODEL.ROI_HEADS.NAME = "LitedetC4ROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p4"]
    with pytest.raises(ValueError, match="not a stage of mobilenet_v2_0.5x"):
        build_model(cfg)


# ------------------------------------------------------------------ shipped YAMLs
def test_shipped_configs_found():
    names = {os.path.basename(p) for p in LEAVES}
    assert {"lighthead_shufflenet_v2_1.0x.yaml", "fasterrcnn_c4_shufflenet_v2_1.0x.yaml"} <= names
    assert "fasterrcnn_fpn_mobilenet_v2_1.0x.yaml" in names


@pytest.mark.parametrize("path", LEAVES, ids=os.path.basename)
def test_shipped_config_trains_and_predicts(path):
    cfg = shrink(load_cfg(path))
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"  # stock detectron2 detector
    model = build_model(cfg)
    inputs = random_inputs()

    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with EventStorage():
        losses = model(inputs)
    assert {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    total = sum(losses.values())
    assert math.isfinite(total.item()) and total.item() > 0
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any(n.startswith("roi_heads.") for n in changed) and any(n.startswith("backbone.") for n in changed)

    model.eval()
    with torch.no_grad():
        outputs = model([{k: v for k, v in item.items() if k != "instances"} for item in inputs])
    assert len(outputs) == len(inputs)
    for out, item in zip(outputs, inputs):
        inst = out["instances"]
        assert inst.image_size == (item["height"], item["width"])
        assert 0 < len(inst) <= cfg.TEST.DETECTIONS_PER_IMAGE
        boxes = inst.pred_boxes.tensor
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= item["width"]).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= item["height"]).all()
        assert ((inst.pred_classes >= 0) & (inst.pred_classes < cfg.MODEL.ROI_HEADS.NUM_CLASSES)).all()


HEAD_CONFIGS = {"light_head": "lighthead_shufflenet_v2_1.0x.yaml", "c4": "fasterrcnn_c4_shufflenet_v2_1.0x.yaml"}


@pytest.mark.parametrize("head", sorted(HEAD_CONFIGS))
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_every_family_under_light_head_and_c4(head, name):
    """The heads take their channels from the backbone: another family is only a change of
    variant and stage names."""
    cfg = shrink(load_cfg(config_path("detectron2", HEAD_CONFIGS[head])))
    net = backbones.build_backbone(name)
    s16, s32 = stage_with_stride(net, 16), stage_with_stride(net, 32)
    cfg.MODEL.LITEDET.BACKBONE = name
    cfg.MODEL.LITEDET.OUT_FEATURES = [s16, s32] if head == "light_head" else [s16]
    cfg.MODEL.RPN.IN_FEATURES = [s16]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = [s32] if head == "light_head" else [s16]
    model = build_model(cfg).train()
    with EventStorage():
        losses = model(random_inputs(num_images=1))
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 90, 120) * 255}])
    assert out["instances"].image_size == (90, 120) and len(out["instances"]) > 0


def test_lighthead_yaml_is_the_paper_head():
    cfg = load_cfg(config_path("detectron2", "lighthead_shufflenet_v2_1.0x.yaml"))
    assert (cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN) == ((800,), 1200)
    assert cfg.MODEL.LIGHT_HEAD.OHEM and cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT == 2.0
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    heads = model.roi_heads
    assert isinstance(heads, LightHeadROIHeads) and heads.in_feature == "stage4" and heads.ohem_topk == 256
    convs = [m for m in heads.thin_conv.modules() if isinstance(m, torch.nn.Conv2d)]
    assert {c.kernel_size for c in convs} == {(15, 1), (1, 15)}
    assert {c.out_channels for c in convs} == {64, 490}
    assert convs[0].in_channels == model.backbone.output_shape()["stage4"].channels == 464
    assert heads.box_predictor.cls_score.in_features == 2048
    assert heads.box_predictor.cls_score.out_features == 81
    assert model.proposal_generator.in_features == ["stage3"]
    # training and inference keep the thin map's stride-32 scale
    assert heads.spatial_scale == 1 / 32


def test_c4_yaml_runs_the_later_stages_per_roi():
    cfg = shrink(load_cfg(config_path("detectron2", "fasterrcnn_c4_shufflenet_v2_1.0x.yaml")))
    model = build_model(cfg)
    assert list(model.backbone.output_shape()) == ["stage3"]
    assert list(model.backbone.net.stages) == ["stem", "stage2", "stage3"]
    heads = model.roi_heads
    assert isinstance(heads, LitedetC4ROIHeads) and list(heads.res5._modules) == ["stage4", "conv5"]
    net = backbones.build_backbone("shufflenet_v2_0.5x")
    assert heads.box_predictor.cls_score.in_features == net.stage_shape("conv5").channels
    pooled = torch.randn(3, net.stage_shape("stage3").channels, 14, 14)
    assert heads.res5.eval()(pooled).shape == (3, net.stage_shape("conv5").channels, 7, 7)


def test_backbone_weights_reach_backbone_and_c4_head(tmp_path):
    from backbones.weights import save_backbone_checkpoint

    source = backbones.build_backbone("shufflenet_v2_0.5x")
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    checkpoint = save_backbone_checkpoint(source, tmp_path / "snv2.pth")
    cfg = shrink(load_cfg(config_path("detectron2", "fasterrcnn_c4_shufflenet_v2_1.0x.yaml")))
    cfg.MODEL.LITEDET.WEIGHTS = str(checkpoint)
    cfg.MODEL.LITEDET.NORM = "BN"
    model = build_model(cfg)
    expected = source.state_dict()
    got = {**{f"stages.{k}": v for k, v in model.backbone.net.stages.state_dict().items()},
           **{f"stages.{k}": v for k, v in model.roi_heads.res5.state_dict().items()}}
    compared = [k for k in got if not k.endswith("num_batches_tracked")]
    assert len(compared) > 50
    for key in compared:
        assert torch.equal(got[key], expected[key]), key


def test_checkpoint_input_format_mismatch_is_logged(tmp_path, caplog):
    from backbones.weights import save_backbone_checkpoint

    checkpoint = save_backbone_checkpoint(backbones.build_backbone("shufflenet_v2_0.5x"), tmp_path / "snv2.pth")
    cfg = get_cfg()  # detectron2's defaults: BGR, PIXEL_STD 1 (BGR 0-255), unlike litedet's weights
    add_litedet_config(cfg)
    cfg.MODEL.LITEDET.BACKBONE = "shufflenet_v2_0.5x"
    cfg.MODEL.LITEDET.WEIGHTS = str(checkpoint)
    with caplog.at_level("WARNING", logger="detection.config_checks"):
        build_litedet_backbone(cfg, ShapeSpec(channels=3))
    assert "expects normalised RGB input" in caplog.text and "INPUT.FORMAT=BGR" in caplog.text
    caplog.clear()
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    with caplog.at_level("WARNING", logger="detection.config_checks"):
        build_litedet_backbone(cfg, ShapeSpec(channels=3))
    assert "expects" not in caplog.text


# ---------------------------------------------------------------------------- OHEM
def _predictor(num_classes: int = 3) -> FastRCNNOutputLayers:
    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    return FastRCNNOutputLayers(cfg, ShapeSpec(channels=8))


def _proposals(num: int, gt_classes, boxes=None, gt_boxes=None) -> Instances:
    inst = Instances((100, 100))
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]]).repeat(num, 1)
    inst.proposal_boxes = Boxes(box if boxes is None else boxes)
    inst.gt_classes = torch.as_tensor(gt_classes)
    inst.gt_boxes = Boxes(box.clone() if gt_boxes is None else gt_boxes)
    return inst


def test_ohem_ranks_the_rois_of_all_images_together():
    """topk per image, ranked over the whole batch (the authors' 256 x images per GPU)."""
    predictor = _predictor()
    proposals = [_proposals(6, [3] * 6), _proposals(4, [3] * 4)]  # all background (class 3)
    scores = torch.zeros(10, 4)
    background_logit = torch.tensor([5.0, -1.0, 4.0, 0.0, 3.0, -2.0, 1.0, -3.0, 2.0, 0.5])
    scores[:, 3] = background_logit  # low background logit = high loss
    deltas = torch.zeros(10, 12)
    (kept_scores, kept_deltas), kept = select_hard_examples((scores, deltas), proposals, predictor, topk=3)
    # the 6 lowest logits: -3, -2, -1, 0, 0.5, 1 -> image 0 keeps 3 (1, 3, 5), image 1 keeps 3
    assert [len(p) for p in kept] == [3, 3]
    assert torch.equal(kept_scores[:, 3], torch.tensor([-1.0, 0.0, -2.0, 1.0, -3.0, 0.5]))
    assert kept_deltas.shape == (6, 12)
    with EventStorage():
        losses = predictor.losses((kept_scores, kept_deltas), kept)
    expected = torch.nn.functional.cross_entropy(kept_scores, torch.full((6,), 3))
    assert math.isclose(losses["loss_cls"].item(), expected.item(), rel_tol=1e-6)

    # one image holds all the hard RoIs: it gets all 6 places, the other none
    scores[:, 3] = torch.tensor([-5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 5.0, 4.0, 3.0, 2.0])
    (kept_scores, _), kept = select_hard_examples((scores, deltas), proposals, predictor, topk=3)
    assert [len(p) for p in kept] == [6, 0]
    assert torch.equal(kept_scores[:, 3], torch.tensor([-5.0, -4.0, -3.0, -2.0, -1.0, 0.0]))


def test_ohem_counts_the_box_loss_of_foreground_rois():
    predictor = _predictor()
    predictor.loss_weight = {"loss_box_reg": 2.0}
    gt = torch.tensor([[10.0, 10.0, 50.0, 50.0]]).repeat(3, 1)
    boxes = gt.clone()
    boxes[1] += torch.tensor([8.0, 0.0, 8.0, 0.0])  # badly placed proposal for RoI 1
    proposals = [_proposals(3, [1, 1, 1], boxes=boxes, gt_boxes=gt)]
    scores = torch.zeros(3, 4)  # same classification loss everywhere
    deltas = torch.zeros(3, 12)
    deltas[0, 4:8] = 0.05  # small error on RoI 0's class-1 deltas
    (_, kept_deltas), kept = select_hard_examples((scores, deltas), proposals, predictor, topk=1)
    assert torch.equal(kept[0].proposal_boxes.tensor, boxes[1:2])


def test_lighthead_trains_on_every_proposal():
    """MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE -1 (the shipped YAML's): every proposal and
    ground-truth box is a training RoI, labelled, none dropped."""
    cfg = shrink(load_cfg(config_path("detectron2", "lighthead_shufflenet_v2_1.0x.yaml")))
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = -1
    model = build_model(cfg).train()
    heads = model.roi_heads
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    keep, labels = heads._sample_proposals(
        torch.tensor([0, 1, 0, 1, 1]), torch.tensor([1, 0, 1, 1, 0]), torch.tensor([2, 0])
    )
    assert keep.tolist() == [0, 1, 2, 3, 4] and labels.tolist() == [2, num_classes, 2, 0, num_classes]
    keep, labels = heads._sample_proposals(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert keep.tolist() == [0, 1, 2] and labels.tolist() == [num_classes] * 3
    with EventStorage():
        losses = model(random_inputs(num_images=2))
    assert all(math.isfinite(v.item()) for v in losses.values())
