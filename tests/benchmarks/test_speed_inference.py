"""The helpers behind benchmarks/speed_inference.py's target-2 lines (the timings
themselves are the script's job, never a unit test's)."""
import pytest
import torch

from helpers.detectors import small_lighthead

TOPK = ["MODEL.RPN.PRE_NMS_TOPK_TEST", 200, "MODEL.RPN.POST_NMS_TOPK_TEST", 40]


@pytest.mark.parametrize("classes_per_roi", [1, 19])
def test_with_scored_pairs_scores_exactly_k_classes_of_every_roi(load_benchmark, classes_per_roi):
    bench = load_benchmark("speed_inference")
    model = small_lighthead("MODEL.ROI_HEADS.NUM_CLASSES", 20, *TOPK).fuse()
    original_bias = model.roi_heads.box_predictor.cls_score.bias.clone()
    image = torch.rand(3, 128, 160) * 255
    with torch.inference_mode():
        batch = model.transform([image])
        features = model.extract_features(batch.tensors)
        proposals = model.rpn(batch, features)[0]
        heads = model.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, batch.image_sizes))
        loaded = bench.with_scored_pairs(model, classes_per_roi, box_features)
        scores = torch.softmax(loaded.roi_heads.box_predictor.cls_score(box_features.flatten(1)), -1)[:, 1:]
        detections = loaded([{"image": image, "height": 128, "width": 160}])[0]
    above = scores > heads.score_thresh
    assert above.sum(dim=1).eq(classes_per_roi).all()
    assert above[:, :classes_per_roi].all()
    assert len(detections["boxes"]) > 0 and int(detections["labels"].max()) <= classes_per_roi
    # the dense part is shared, the original head untouched
    assert loaded.backbone is model.backbone and loaded.roi_heads is not model.roi_heads
    assert torch.equal(model.roi_heads.box_predictor.cls_score.bias, original_bias)


def test_with_scored_pairs_refuses_an_impossible_count(load_benchmark):
    bench = load_benchmark("speed_inference")
    model = small_lighthead("MODEL.ROI_HEADS.NUM_CLASSES", 30, *TOPK).fuse()
    with pytest.raises(ValueError, match="cannot all score above"):
        bench.with_scored_pairs(model, 20, torch.rand(5, 10))  # 20 x 0.052 > 1
