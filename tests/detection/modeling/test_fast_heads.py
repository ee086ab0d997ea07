"""`detection.modeling.fast_heads`: the RoI heads' inference module and its box deltas."""
from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from detection.modeling.fast_heads import ScoredPairRoIHeads, class_box_deltas
from detection.modeling.roi_heads import FastRCNNPredictor, FCBoxHead, LiteRoIHeads


# every branch: no pair; per-class GEMMs; dense over all rows and classes; dense over the
# rows involved; dense over the classes present; dense over a block of both
@pytest.mark.parametrize(
    "pairs,roi_range,class_range",
    [(0, 200, 81), (100, 200, 81), (3000, 200, 81), (300, 40, 81), (600, 200, 5), (40, 30, 5)],
)
def test_class_box_deltas(pairs, roi_range, class_range):
    g = torch.Generator().manual_seed(pairs)
    predictor = FastRCNNPredictor(32, 80).eval()
    torch.nn.init.normal_(predictor.bbox_pred.weight, generator=g)
    torch.nn.init.normal_(predictor.bbox_pred.bias, generator=g)
    x = torch.randn(200, 32, generator=g)
    rows = torch.randint(0, roi_range, (pairs,), generator=g)
    classes = torch.randint(0, class_range, (pairs,), generator=g)
    expected = predictor.bbox_pred(x).view(200, 81, 4)[rows, classes]
    torch.testing.assert_close(class_box_deltas(predictor.bbox_pred, x, rows, classes), expected, atol=1e-5, rtol=1e-5)


def heads(predictor: torch.nn.Module, score_thresh: float, detections_per_img: int = 100) -> LiteRoIHeads:
    return LiteRoIHeads(
        MultiScaleRoIAlign(["x"], 2, 2), FCBoxHead(16, [32]), predictor, fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=64,
        positive_fraction=0.25, bbox_reg_weights=(10.0, 10.0, 5.0, 5.0), score_thresh=score_thresh, nms_thresh=0.5,
        detections_per_img=detections_per_img, box_loss_weight=2.0, ohem_topk=8,
    ).eval()


@pytest.mark.parametrize("score_thresh,detections_per_img", [(0.0, 100), (0.2, 100), (0.2, 5), (0.99, 100)])
def test_scored_pair_heads_equal_trained_heads(score_thresh, detections_per_img):
    g = torch.Generator().manual_seed(3)
    predictor = FastRCNNPredictor(32, 4)
    with torch.no_grad():
        for p in predictor.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    trained = heads(predictor, score_thresh, detections_per_img)
    fast = ScoredPairRoIHeads.from_heads(trained)
    xy = torch.rand(2, 30, 2, generator=g) * 80
    proposals = list(torch.cat([xy, xy + 8 + torch.rand(2, 30, 2, generator=g) * 40], dim=2))
    features = {"x": torch.randn(2, 4, 16, 16, generator=g)}  # stride 8 of the 128 x 128 batch
    sizes = [(128, 128), (100, 120)]
    with torch.no_grad():
        ref, _ = trained(features, proposals, sizes)
        out, _ = fast(features, proposals, sizes)
    for r, o in zip(ref, out):
        assert torch.equal(o["labels"], r["labels"])
        torch.testing.assert_close(o["scores"], r["scores"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(o["boxes"], r["boxes"], atol=1e-4, rtol=1e-4)
    assert (sum(len(r["boxes"]) for r in ref) > 0) is (score_thresh < 0.9)
    # same settings, same (shared) modules; inference only
    for name in ("score_thresh", "nms_thresh", "detections_per_img", "box_loss_weight", "ohem_topk"):
        assert getattr(fast, name) == getattr(trained, name)
    assert fast.box_predictor is trained.box_predictor and fast.box_coder.weights == trained.box_coder.weights
    with pytest.raises(RuntimeError, match="ScoredPairRoIHeads was fused for inference"):
        fast.train()


def test_scored_pair_heads_need_class_scores_and_box_deltas():
    class Other(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(TypeError, match="needs a FastRCNNPredictor"):
        ScoredPairRoIHeads.from_heads(heads(Other(), 0.05))
    assert issubclass(ScoredPairRoIHeads, RoIHeads)
