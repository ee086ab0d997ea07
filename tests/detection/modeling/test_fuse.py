"""Detector inference fast path: `RCNN.fuse` and the RPN's early-stopping NMS (the heads'
inference module itself: test_fast_heads.py)."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms, nms

from backbones.fast import WINOGRAD_MIN_CHANNELS, WinogradConv3x3, count_batchnorms, is_fused
from detection.config import get_cfg
from detection.modeling import build_model
from detection.modeling.fast_heads import ScoredPairRoIHeads
from detection.modeling.rpn import batched_nms_topk, nms_topk

CASES = [
    ("LightHeadRCNN", False, "shufflenet_v2_0.5x"),
    ("LightHeadRCNN", False, "mobilenet_v2_0.5x"),
    ("FasterRCNN", False, "shufflenet_v2_0.5x"),  # C4: ShuffleNet units as the box head
    ("FasterRCNN", True, "shufflenet_v1_g3_0.5x"),
]


@pytest.fixture
def tiny_detector(randomize_norms):
    def build(meta: str, fpn: bool, backbone: str, norm: str):
        cfg = get_cfg()
        cfg.MODEL.META_ARCHITECTURE = meta
        cfg.MODEL.BACKBONE.NAME = backbone
        cfg.MODEL.BACKBONE.NORM = norm
        cfg.MODEL.BACKBONE.FREEZE_AT = 2
        if fpn:
            cfg.MODEL.FPN.ENABLED = True
            cfg.MODEL.FPN.OUT_CHANNELS = 32
            cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128]]
            cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # keep detections so they can be compared
        cfg.MODEL.RPN.HEAD_CONV_DIM = 64  # wide enough for the fused RPN conv to run as Winograd
        cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 300
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 30
        cfg.MODEL.LIGHT_HEAD.FC_DIM = 64
        cfg.MODEL.LIGHT_HEAD.MID_CHANNELS = 16
        cfg.MODEL.LIGHT_HEAD.CHANNELS_PER_BIN = 2
        cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 8
        cfg.TEST.DETECTIONS_PER_IMAGE = 20
        return randomize_norms(build_model(cfg)).eval()

    return build


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
@pytest.mark.parametrize("meta,fpn,backbone", CASES)
def test_fused_detector_equals_unfused(meta, fpn, backbone, norm, tiny_detector):
    model = tiny_detector(meta, fpn, backbone, norm)
    fused = model.fuse()
    assert count_batchnorms(fused) == 0 and count_batchnorms(model) > 0
    assert isinstance(fused.roi_heads, ScoredPairRoIHeads) and is_fused(fused) and not is_fused(model)
    conv = model.rpn.head.conv
    wide = min(conv.in_channels, conv.out_channels) >= WINOGRAD_MIN_CHANNELS
    assert isinstance(fused.rpn.head.conv, WinogradConv3x3) is wide
    assert not any(isinstance(m, WinogradConv3x3) for m in model.fuse(channels_last=False).modules())  # export form
    image = torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = [{"image": image, "height": 128, "width": 160}]
    with torch.no_grad():
        batch = model.transform([image])
        feats, feats_fused = model.extract_features(batch.tensors), fused.extract_features(batch.tensors)
        assert list(feats) == list(feats_fused)
        for name in feats:
            torch.testing.assert_close(feats_fused[name], feats[name], atol=1e-4, rtol=1e-4)
        proposals = model.rpn(batch, feats)[0]
        heads = [
            m.roi_heads.box_predictor(m.roi_heads.box_head(m.roi_heads.box_roi_pool(f, proposals, batch.image_sizes)))
            for m, f in ((model, feats), (fused, feats_fused))
        ]
        for ref, out in zip(*heads):  # class logits, box deltas on the same proposals
            torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        ref, out = model(inputs)[0], fused(inputs)[0]
    assert len(ref["boxes"]) > 0
    torch.testing.assert_close(out["scores"].sort().values, ref["scores"].sort().values, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("score_thresh,detections_per_img", [(0.0, 100), (0.3, 100), (0.99, 100), (0.0, 7)])
def test_fused_detections_equal_unfused_at_score_thresholds(score_thresh, detections_per_img, tiny_detector):
    """The fused heads compute box deltas only for pairs above the score threshold, and
    stop NMS once ``detections_per_img`` boxes are kept."""
    torch.manual_seed(0)
    model = tiny_detector("LightHeadRCNN", False, "shufflenet_v2_0.5x", "FrozenBN")
    with torch.no_grad():  # spread the class scores so that thresholds select subsets
        model.roi_heads.box_predictor.cls_score.weight.mul_(300)
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 1.5, 0.5, -1.0]))
        model.roi_heads.box_predictor.bbox_pred.weight.mul_(100)
    model.roi_heads.score_thresh = score_thresh
    model.roi_heads.detections_per_img = detections_per_img
    fused = model.fuse()
    image = torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    inputs = [{"image": image, "height": 256, "width": 320}]
    with torch.no_grad():
        ref, out = model(inputs)[0], fused(inputs)[0]
    assert (len(ref["boxes"]) > 0) is (score_thresh < 0.9)
    assert len(ref["boxes"]) <= detections_per_img
    if detections_per_img < 100:
        assert len(ref["boxes"]) == detections_per_img
    assert torch.equal(out["labels"], ref["labels"])
    torch.testing.assert_close(out["scores"], ref["scores"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["boxes"], ref["boxes"], atol=1e-3, rtol=1e-4)


def test_fused_heads_trace_the_dense_path(tiny_detector):
    """Tracing (ONNX / TorchScript export) must not bake in a data-dependent pair count:
    the traced graph runs the dense heads (no gather of scored pairs, no ``unique``) and
    gives another image the detections that eager PyTorch gives it."""
    from detection.deploy.wrappers import TracingDetector

    model = tiny_detector("LightHeadRCNN", False, "shufflenet_v2_0.5x", "FrozenBN")
    with torch.no_grad():  # spread the class scores so that the threshold selects a data-dependent subset
        model.roi_heads.box_predictor.cls_score.weight.mul_(300)
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 1.5, 0.5, -1.0]))
    model.roi_heads.score_thresh = 0.3
    model.roi_heads.detections_per_img = 100
    fused = TracingDetector(model.fuse(channels_last=False))
    first, second = (torch.rand(1, 3, 128, 160, generator=torch.Generator().manual_seed(s)) * 255 for s in (0, 1))
    with torch.no_grad():
        traced = torch.jit.trace(fused, first, check_trace=False)
        expected, out = fused(second), traced(second)
    assert "unique" not in str(traced.inlined_graph)
    assert 0 < len(expected[0]) < 3 * 30  # some of the 30 RoIs x 3 classes pass the threshold, not all
    for a, b in zip(out, expected):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_fused_detector_refuses_training(tiny_detector):
    model = tiny_detector("LightHeadRCNN", False, "shufflenet_v2_0.5x", "FrozenBN")
    with pytest.raises(RuntimeError, match=r"call \.eval\(\) first"):
        model.train().fuse()
    fused = model.eval().fuse()
    with pytest.raises(RuntimeError, match="fused for inference"):
        fused.train()
    assert not any(m.training for m in fused.modules())  # refused before any submodule changed mode
    assert is_fused(fused) and not is_fused(model)
    twice = fused.fuse()
    assert [n for n, _ in twice.named_modules()] == [n for n, _ in fused.named_modules()]  # idempotent
    assert model.fuse(inplace=True) is model and is_fused(model)


def random_boxes(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 400
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 150 + 4], dim=1)
    # distinct scores: tied scores may be ordered either way by torchvision
    scores = torch.randperm(n, generator=g).float() / n
    return boxes, scores


@pytest.mark.parametrize("n,topk", [(3000, 100), (3000, 5000), (40, 10), (0, 10)])
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_nms_topk_equals_torchvision(n, topk, threshold):
    boxes, scores = random_boxes(n, n + topk)
    expected = nms(boxes, scores, threshold)[:topk]
    assert torch.equal(nms_topk(boxes, scores, threshold, topk, block=256), expected)


@pytest.mark.parametrize("n,groups,topk", [(3000, 3, 300), (200, 3, 300), (6000, 80, 100), (2000, 19, 5), (500, 1, 50)])
@pytest.mark.parametrize("clustered", [False, True])
def test_batched_nms_topk_equals_torchvision(n, groups, topk, clustered):
    """One pass over all groups in score order decides each group as NMS within it would;
    clustered boxes make most candidates suppressed, so many blocks are visited."""
    boxes, scores = random_boxes(n, 7)
    if clustered:  # 20 places, every box a small jitter of one of them
        g = torch.Generator().manual_seed(11)
        centres = random_boxes(20, 12)[0]
        boxes = centres[torch.randint(0, 20, (n,), generator=g)] + torch.rand(n, 4, generator=g) * 6
    labels = torch.randint(0, groups, (n,), generator=torch.Generator().manual_seed(3))
    expected = batched_nms(boxes, scores, labels, 0.5)[:topk]
    assert torch.equal(batched_nms_topk(boxes, scores, labels, 0.5, topk), expected)


def test_rpn_filter_proposals_equals_torchvision(tiny_detector):
    model = tiny_detector("FasterRCNN", True, "shufflenet_v1_g3_0.5x", "FrozenBN")
    rpn = model.rpn
    rpn._pre_nms_top_n["testing"], rpn._post_nms_top_n["testing"] = 500, 100
    levels = [1200, 300, 80]
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(2, sum(levels), 2, generator=g) * 150
    proposals = torch.cat([xy, xy + torch.rand(2, sum(levels), 2, generator=g) * 60 + 1], dim=2)
    objectness = torch.randperm(2 * sum(levels), generator=g).float().div(1000).reshape(-1, 1)
    sizes = [(128, 160), (160, 128)]
    ours = rpn.filter_proposals(proposals, objectness, sizes, levels)
    reference = type(rpn).__mro__[1].filter_proposals(rpn, proposals, objectness, sizes, levels)
    for a, b in zip(ours, reference):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert len(ours[0][0]) == 100


@pytest.mark.slow
def test_compiled_dense_part_equals_eager(tiny_detector):
    """The benchmark's fastest path: inductor (freezing) over the fused backbone, neck and RPN head."""
    import torch._inductor.config as inductor_config

    model = tiny_detector("LightHeadRCNN", False, "shufflenet_v2_0.5x", "FrozenBN")
    fused = model.fuse()
    compiled = model.fuse()
    compiled.backbone = torch.compile(compiled.backbone)
    compiled.neck = torch.compile(compiled.neck)
    compiled.rpn.head = torch.compile(compiled.rpn.head)
    image = torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = [{"image": image, "height": 128, "width": 160}]
    # torch's own patch, not pytest's monkeypatch: undoing a monkeypatch on a torch config
    # module deletes the key ("torch._inductor.config.freezing does not exist" afterwards)
    with torch.inference_mode(), inductor_config.patch(freezing=True):
        ref, out = fused(inputs)[0], compiled(inputs)[0]
    assert len(ref["boxes"]) > 0
    torch.testing.assert_close(out["boxes"], ref["boxes"], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(out["scores"], ref["scores"], atol=1e-4, rtol=1e-4)
