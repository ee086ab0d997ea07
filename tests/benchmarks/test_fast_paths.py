"""The helpers behind benchmarks/fast_paths.py (the timings themselves are the script's job)."""
import pytest
import torch

from backbones.fast import CHANNELS_LAST_MODULES, WinogradConv3x3, is_fused
from detection.modeling.fast_heads import HEAD_MODULES, ScoredPairRoIHeads
from helpers.detectors import small_lighthead


def test_variants_leave_out_exactly_one_part(load_benchmark):
    bench = load_benchmark("fast_paths")
    model = small_lighthead(
        "MODEL.RPN.HEAD_CONV_DIM", 64,  # wide enough for Winograd
        "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,  # detections to compare
    )
    everything = bench.fused_variant(model, {**CHANNELS_LAST_MODULES, **HEAD_MODULES})
    bench.check_same_form(model.fuse(), everything)
    no_winograd = bench.fused_variant(model, HEAD_MODULES)
    assert isinstance(everything.rpn.head.conv, WinogradConv3x3)
    assert type(no_winograd.rpn.head.conv) is torch.nn.Conv2d and isinstance(no_winograd.roi_heads, ScoredPairRoIHeads)
    no_heads = bench.fused_variant(model, CHANNELS_LAST_MODULES)
    assert not isinstance(no_heads.roi_heads, ScoredPairRoIHeads) and isinstance(no_heads.rpn.head.conv, WinogradConv3x3)
    nchw = bench.fused_variant(model, {}, channels_last=False)
    assert is_fused(nchw) and not nchw.backbone.stages["stem"].conv1[0].weight.is_contiguous(
        memory_format=torch.channels_last
    )
    with pytest.raises(RuntimeError, match="differs from fuse"):
        bench.check_same_form(model.fuse(), no_heads)
    image = torch.rand(3, 96, 128) * 255
    with torch.inference_mode():
        outputs = [m([{"image": image}])[0]["scores"] for m in (everything, no_winograd, no_heads, nchw, model)]
    assert len(outputs[-1]) > 0
    for out in outputs[:-1]:
        torch.testing.assert_close(out.sort().values, outputs[-1].sort().values, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("ratios,expected", [([1.06, 1.08], "keep"), ([1.01, 1.04], "drop"), ([1.04, 1.07], "borderline")])
def test_verdict(load_benchmark, ratios, expected):
    assert load_benchmark("fast_paths").verdict(ratios) == expected
