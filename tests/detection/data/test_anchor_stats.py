"""detection.data.anchor_stats: boxes at the input size, anchor coverage on the generator's
grid and by shape, the strides read from the built model, and the suggestion on datasets
whose answer is known."""
from __future__ import annotations

import ast
import math
import os

import numpy as np
import pytest

from detection.config import load_config
from detection.data import anchor_stats as A
from helpers import REPO_ROOT

QUICKSTART = os.path.join(REPO_ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml")
FPN = os.path.join(REPO_ROOT, "configs", "Base-FasterRCNN-FPN.yaml")


def cfg_with(*overrides, base=QUICKSTART):
    return load_config(base, [str(x) for x in overrides])


def record(h, w, boxes):
    return {"height": h, "width": w, "annotations": [{"bbox": list(b), "category_id": 0} for b in boxes]}


def squares_on_grid(side, size, stride=16, offset=0.0):
    """``size`` px squares centred on grid points (i * stride + offset) inside a side x side image."""
    half = size / 2
    points = [p + offset for p in range(stride, side - stride + 1, stride) if half <= p + offset <= side - half]
    return [(x - half, y - half, x + half, y + half) for x in points for y in points]


def test_boxes_scaled_as_the_resize_scales_them_once_per_short_side():
    recs = [record(100, 200, [(10, 20, 30, 60)]), record(50, 50, [(0, 0, 5, 5)])]
    recs[0]["annotations"].append({"bbox": [0, 0, 50, 50], "category_id": 0, "iscrowd": 1})  # ignore region
    boxes = A.boxes_at_input_size(recs, (200, 100), max_size=300)
    # 100x200 at short 200: capped by max 300 -> 150x300 (x1.5); at short 100: x1; 50x50: x4, x2
    np.testing.assert_allclose(boxes.boxes, [[15, 30, 45, 90], [10, 20, 30, 60], [0, 0, 20, 20], [0, 0, 10, 10]])
    np.testing.assert_allclose(boxes.image_hw, [[150, 300], [100, 200], [200, 200], [100, 100]])
    np.testing.assert_allclose(boxes.aspect_ratios, [2, 2, 1, 1])
    assert A.train_short_sides((200, 300), "range") == (200, 250, 300)
    with pytest.raises(ValueError, match="two sizes"):
        A.train_short_sides((200,), "range")


def test_statistics_percentiles():
    boxes = A.boxes_at_input_size([record(400, 400, [(0, 0, s, 2 * s) for s in range(1, 101)])], (400,), 0)
    stats = A.box_statistics(boxes)
    assert stats["width"]["p50"] == pytest.approx(50.5) and stats["height"]["p50"] == pytest.approx(101)
    assert stats["aspect_ratio"]["p5"] == pytest.approx(2.0) and stats["sqrt_area"]["p99"] == pytest.approx(
        np.percentile(np.sqrt(2) * np.arange(1, 101), 99))


def test_strides_and_anchors_come_from_the_built_model():
    layout = A.anchor_layout(cfg_with("MODEL.ANCHOR_GENERATOR.SIZES", "[[32]]", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0]]"))
    assert layout.strides == [16] and layout.levels[0].name == "stage3"
    np.testing.assert_array_equal(layout.levels[0].cell_anchors, [[-16, -16, 16, 16]])
    assert A.anchor_layout(cfg_with("MODEL.BACKBONE.RPN_FEATURE", "stage2")).strides == [8]
    fpn = A.anchor_layout(cfg_with("MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", base=FPN))
    assert fpn.strides == [8, 16, 32, 64]  # the FPN levels plus the max-pooled one
    with pytest.raises(ValueError, match="one size per"):
        A.anchor_layout(cfg_with("MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "MODEL.ANCHOR_GENERATOR.SIZES", "[[32, 64]]", base=FPN))


@pytest.mark.parametrize("sizes, grid, shape", [("[[32]]", 1.0, 1.0), ("[[512]]", 0.0, 0.0), ("[[16, 20]]", 0.0, 0.0)])
def test_coverage_of_32px_boxes_on_grid_points(sizes, grid, shape):
    boxes = A.boxes_at_input_size([record(256, 256, squares_on_grid(256, 32))], (256,), 400)
    layout = A.anchor_layout(cfg_with("MODEL.ANCHOR_GENERATOR.SIZES", sizes))
    assert A.coverage(boxes, layout) == {"grid": grid, "shape": shape}


def test_grid_placement_differs_from_shape_only():
    """32 px boxes halfway between grid points of stride 16: IoU with the 32 px anchor of the
    nearest point is 24*24 / (2*32*32 - 24*24) = 0.39, by shape alone 1."""
    boxes = A.boxes_at_input_size([record(256, 256, squares_on_grid(256, 32, offset=8))], (256,), 400)
    layout = A.anchor_layout(cfg_with("MODEL.ANCHOR_GENERATOR.SIZES", "[[32]]", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0]]"))
    grid, shape = A.best_anchor_iou(boxes, layout)
    np.testing.assert_allclose(grid, 576 / 1472)
    np.testing.assert_allclose(shape, 1.0)


def test_box_past_the_last_grid_point_uses_the_last_one():
    """A 256 px image (padded 256) has grid points 0..240 at stride 16: a box centred at 252
    is matched against the point 240, not a point 256 the generator never makes."""
    boxes = A.boxes_at_input_size([record(256, 256, [(236, 236, 268, 268)])], (256,), 400)
    layout = A.anchor_layout(cfg_with("MODEL.ANCHOR_GENERATOR.SIZES", "[[32]]", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0]]"))
    grid, _ = A.best_anchor_iou(boxes, layout)
    np.testing.assert_allclose(grid, (20 * 20) / (2 * 1024 - 400))


def test_kmeans_and_spread():
    centres = A.kmeans_1d(np.array([1.0, 1.1, 0.9, 5.0, 5.2, 4.8]), 2)
    np.testing.assert_allclose(centres, [1.0, 5.0])
    g = math.log(2)
    np.testing.assert_allclose(A.spread_apart(np.zeros(3), g), [-g, 0, g])
    np.testing.assert_allclose(A.spread_apart(np.array([0.0, 5.0]), g), [0.0, 5.0])  # already apart: unchanged


def test_suggestion_covers_boxes_the_current_anchors_miss():
    recs = [record(256, 256, squares_on_grid(256, 32))]
    cfg = cfg_with("MODEL.ANCHOR_GENERATOR.SIZES", "[[256, 512]]")
    result = A.analyse(recs, cfg)
    assert result["current"]["coverage"] == {"grid": 0.0, "shape": 0.0}
    assert result["suggested"]["coverage"] == {"grid": 1.0, "shape": 1.0}
    overrides = result["suggested"]["overrides"]
    assert overrides == {"MODEL.ANCHOR_GENERATOR.SIZES": "[[27,38]]", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": "[[0.71,1.0,1.41]]"}
    merged = cfg.clone()
    merged.defrost()
    merged.merge_from_list([x for kv in overrides.items() for x in kv])
    assert merged.MODEL.ANCHOR_GENERATOR.SIZES == [[27, 38]]
    assert A.analyse(recs, cfg) == result  # deterministic


def test_small_boxes_raise_the_input_size_and_large_ones_lower_it():
    """8 px boxes at 256 px, RPN stride 16: the 5 % quantile must reach 32 px, so x4 (1024);
    200 px boxes: lowered until it is at most 64 px."""
    small = A.analyse([record(256, 256, squares_on_grid(256, 8))], cfg_with())
    o = small["suggested"]["overrides"]
    assert (o["INPUT.MIN_SIZE_TRAIN"], o["INPUT.MAX_SIZE_TRAIN"], o["INPUT.MIN_SIZE_TEST"], o["INPUT.MAX_SIZE_TEST"]) == (
        "(1024,)", "1600", "1024", "1600")
    assert small["small_box"]["current"] == 8 and small["small_box"]["suggested"] == 32
    assert small["current"]["coverage"]["grid"] < 0.5 and small["suggested"]["coverage"]["grid"] == 1.0
    large = A.analyse([record(256, 256, [(28, 28, 228, 228)])], cfg_with())
    assert large["suggested"]["overrides"]["INPUT.MIN_SIZE_TRAIN"] == "(64,)"
    assert 32 <= large["small_box"]["suggested"] <= 64
    kept = A.analyse([record(256, 256, squares_on_grid(256, 48))], cfg_with())
    assert not any(k.startswith("INPUT.") for k in kept["suggested"]["overrides"])
    assert A.analyse([record(256, 256, squares_on_grid(256, 8))], cfg_with(), min_box=8)["suggested"]["overrides"].keys() == {
        "MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"}


@pytest.mark.parametrize("sizes, shape", [("[[32, 45], [64, 90], [128, 181], [256, 362]]", [2, 2, 2, 2]),
                                          ("[[32, 64, 128, 256]]", [4])])
def test_fpn_suggestion_keeps_the_configs_size_layout(sizes, shape):
    """Per-level lists stay per-level lists (sorted sizes split in order), one list of one
    size per level stays one list."""
    cfg = cfg_with("MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "INPUT.MIN_SIZE_TRAIN", "(256,)",
                   "MODEL.ANCHOR_GENERATOR.SIZES", sizes, base=FPN)
    boxes = [(x, y, x + s, y + s) for s, x, y in [(16, 0, 0), (32, 40, 0), (64, 80, 0), (128, 0, 100)]]
    result = A.analyse([record(256, 256, boxes)], cfg)
    suggested = ast.literal_eval(result["suggested"]["overrides"]["MODEL.ANCHOR_GENERATOR.SIZES"])
    assert [len(level) for level in suggested] == shape
    flat = [s for level in suggested for s in level]
    assert flat == sorted(flat) and flat[0] < 20 and flat[-1] > 100
    assert result["suggested"]["coverage"]["shape"] == 1.0


def test_no_boxes_no_suggestion():
    result = A.analyse([record(64, 64, [])], cfg_with())
    assert result["boxes"] == 0 and result["suggested"] is None and math.isnan(result["current"]["coverage"]["grid"])
    assert "No suggestion" in A.format_analysis(result)
