"""PASCAL VOC evaluator: hand-made cases whose AP is known exactly."""
from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Sequence

import numpy as np
import pytest

from detection.evaluation import PascalVOCDetectionEvaluator, voc_ap, voc_eval_class
from helpers.records import annotation, predictions, record

CLASSES = ["cat", "dog"]


def rec(image_id: Any, anns: Sequence[tuple], h: int = 100, w: int = 100) -> dict:
    """Record with annotations given as (bbox, category_id[, difficult])."""
    return record(image_id, [annotation(a[0], a[1], difficult=a[2] if len(a) > 2 else 0) for a in anns], h, w)


def out(dets: Sequence[tuple]) -> dict:
    """Model output from (bbox, score, label) triples."""
    return predictions([d[0] for d in dets], [d[1] for d in dets], [d[2] for d in dets])


def run_voc(records: List[dict], outputs: Dict[Any, List[tuple]], **kw) -> Dict[str, float]:
    ev = PascalVOCDetectionEvaluator(dataset_dicts=records, thing_classes=kw.pop("classes", CLASSES), **kw)
    ev.reset()
    for r in records:
        ev.process([r], [out(outputs.get(r["image_id"], []))])
    return ev.evaluate()["bbox"]


A = (10.0, 10.0, 50.0, 50.0)
B = (60.0, 20.0, 90.0, 80.0)
C = (5.0, 60.0, 40.0, 95.0)
FAR = (200.0, 200.0, 250.0, 250.0)  # overlaps nothing


# ----------------------------------------------------------------------------- voc_ap itself
def test_voc_ap_area_and_11pt_on_hand_curves() -> None:
    assert voc_ap([1.0], [1.0]) == 1.0
    assert voc_ap([1.0], [1.0], use_07_metric=True) == pytest.approx(1.0, abs=1e-15)
    # Recall reaches 0.5 at precision 1: area 0.5; 11-pt: t = 0..0.5 -> 6 points of 1.
    assert voc_ap([0.5], [1.0]) == 0.5
    assert voc_ap([0.5], [1.0], use_07_metric=True) == pytest.approx(6 / 11)
    # Non-monotone precision is replaced by its envelope.
    assert voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert voc_ap([], []) == 0.0
    assert voc_ap([], [], use_07_metric=True) == 0.0


# ----------------------------------------------------------------------------- protocol cases
def test_perfect_detections_score_100() -> None:
    records = [rec(1, [(A, 0), (B, 1)]), rec(2, [(C, 0)])]
    outputs = {1: [(A, 0.9, 0), (B, 0.8, 1)], 2: [(C, 0.7, 0)]}
    res = run_voc(records, outputs)
    for key in ("AP50", "AP50_07", "AP50-cat", "AP50-dog", "AP50_07-cat", "AP50_07-dog"):
        assert res[key] == pytest.approx(100.0, abs=1e-12), key


def test_one_missed_gt_of_two() -> None:
    # cat: two GTs, one found -> recall 0.5 at precision 1.
    records = [rec(1, [(A, 0), (B, 0)])]
    res = run_voc(records, {1: [(A, 0.9, 0)]}, classes=["cat"])
    assert res["AP50-cat"] == 50.0  # exactly
    # 11-point: recall >= t for t in {0, .1, .2, .3, .4, .5} -> 6 of 11 points at precision 1.
    assert res["AP50_07-cat"] == pytest.approx(100.0 * 6 / 11, abs=1e-12)
    assert res["AP50"] == 50.0


def test_false_positive_ranked_above_true_positive() -> None:
    # One GT; FP (0.9) then TP (0.8): rec = [0, 1], prec = [0, 1/2].
    records = [rec(1, [(A, 0)])]
    res = run_voc(records, {1: [(FAR, 0.9, 0), (A, 0.8, 0)]}, classes=["cat"])
    assert res["AP50-cat"] == pytest.approx(50.0, abs=1e-12)
    assert res["AP50_07-cat"] == pytest.approx(50.0, abs=1e-12)

    # Two GTs; TP (.95), FP (.9), TP (.8): rec = [.5, .5, 1], prec = [1, 1/2, 2/3].
    # Area: 0.5 * 1 + 0.5 * 2/3 = 5/6.  11-pt: t <= .5 -> 1 (6 points), t >= .6 -> 2/3 (5 points).
    records = [rec(1, [(A, 0), (B, 0)])]
    res = run_voc(records, {1: [(A, 0.95, 0), (FAR, 0.9, 0), (B, 0.8, 0)]}, classes=["cat"])
    assert res["AP50-cat"] == pytest.approx(100.0 * 5 / 6, abs=1e-12)
    assert res["AP50_07-cat"] == pytest.approx(100.0 * (6 + 5 * 2 / 3) / 11, abs=1e-12)


def test_duplicate_detection_is_false_positive() -> None:
    gt = {1: (np.array([A, B]), np.array([False, False]))}
    shifted = (A[0] + 1, A[1] + 1, A[2] + 1, A[3] + 1)  # IoU with A ~ 0.9: a duplicate
    r = voc_eval_class([1, 1, 1], [0.9, 0.85, 0.8], [A, shifted, B], gt)
    np.testing.assert_array_equal(r.tp, [1, 0, 1])
    np.testing.assert_array_equal(r.fp, [0, 1, 0])
    assert r.npos == 2
    assert r.ap == pytest.approx(5 / 6)  # same curve as a FP ranked second

    records = [rec(1, [(A, 0), (B, 0)])]
    res = run_voc(records, {1: [(A, 0.9, 0), (shifted, 0.85, 0), (B, 0.8, 0)]}, classes=["cat"])
    assert res["AP50-cat"] == pytest.approx(100.0 * 5 / 6, abs=1e-12)


def test_difficult_gt_is_ignored() -> None:
    # cat: A normal, B difficult. npos = 1.
    records = [rec(1, [(A, 0), (B, 0, 1)])]
    base = run_voc(records, {1: [(A, 0.5, 0)]}, classes=["cat"])
    assert base["AP50-cat"] == pytest.approx(100.0)  # B not found, yet recall is 1
    # A detection on the difficult box, even ranked first, is neither TP nor FP.
    with_diff = run_voc(records, {1: [(B, 0.9, 0), (A, 0.5, 0)]}, classes=["cat"])
    assert with_diff["AP50-cat"] == pytest.approx(100.0)
    assert with_diff["AP50_07-cat"] == pytest.approx(100.0)

    gt = {1: (np.array([A, B]), np.array([False, True]))}
    r = voc_eval_class([1, 1], [0.9, 0.5], [B, A], gt)
    assert r.npos == 1
    np.testing.assert_array_equal(r.tp, [0, 1])
    np.testing.assert_array_equal(r.fp, [0, 0])

    # Finding only the difficult box earns no recall: the normal box is still a miss.
    miss = run_voc(records, {1: [(B, 0.9, 0)]}, classes=["cat"])
    assert miss["AP50-cat"] == 0.0


def test_class_with_only_difficult_gt_is_left_out_of_the_mean(caplog: pytest.LogCaptureFixture) -> None:
    records = [rec(1, [(A, 0), (B, 1, 1)])]
    res = run_voc(records, {1: [(A, 0.9, 0), (B, 0.9, 1)]})
    assert res["AP50-cat"] == pytest.approx(100.0)
    assert math.isnan(res["AP50-dog"])
    assert res["AP50"] == pytest.approx(100.0)
    assert "AP undefined" in caplog.text


def test_iou_threshold_is_strict_and_plus_one_convention() -> None:
    gt_box = (0.0, 0.0, 10.0, 10.0)
    det = (0.0, 0.0, 10.0, 20.0)  # continuous IoU = 100 / 200 = 0.5 exactly -> not > 0.5 -> FP
    records = [rec(1, [(gt_box, 0)])]
    assert run_voc(records, {1: [(det, 0.9, 0)]}, classes=["cat"])["AP50-cat"] == 0.0
    # With +1 (inclusive pixels): 121 / 231 > 0.5 -> TP.
    res = run_voc(records, {1: [(det, 0.9, 0)]}, classes=["cat"], iou_plus_one=True)
    assert res["AP50-cat"] == pytest.approx(100.0)


def test_continuous_iou_on_shifted_records_equals_devkit_on_raw_xml() -> None:
    """Why ``iou_plus_one`` defaults to False: detectron2/devkit compare (pred x1+1, y1+1) with the
    raw 1-based XML boxes using +1 areas; on records whose x1/y1 were shifted by -1 at load time
    that is exactly continuous IoU."""
    rng = np.random.default_rng(0)
    n_img = 20
    xml: Dict[int, np.ndarray] = {}
    records = []
    for i in range(n_img):
        k = int(rng.integers(1, 5))
        x1 = rng.integers(1, 150, k)
        y1 = rng.integers(1, 150, k)
        boxes = np.stack([x1, y1, x1 + rng.integers(5, 60, k), y1 + rng.integers(5, 60, k)], 1).astype(np.float64)
        xml[i] = boxes
        shifted = boxes.copy()
        shifted[:, :2] -= 1.0
        records.append(rec(i, [(tuple(b), 0) for b in shifted]))
    ids, scores, dets = [], [], []
    for i in range(n_img):
        for b in records[i]["annotations"]:
            jitter = rng.normal(0, 3, 4)
            ids.append(i)
            scores.append(float(rng.random()))
            dets.append(np.asarray(b["bbox"]) + jitter)
    # devkit view: raw XML GT, predictions written with xmin/ymin + 1, +1 IoU.
    dev_dets = [d + np.array([1.0, 1.0, 0.0, 0.0]) for d in dets]
    xml_gt = {i: (b, np.zeros(len(b), bool)) for i, b in xml.items()}
    devkit = voc_eval_class(ids, scores, dev_dets, xml_gt, iou_plus_one=True)
    record_gt = {
        r["image_id"]: (np.array([a["bbox"] for a in r["annotations"]]), np.zeros(len(r["annotations"]), bool))
        for r in records
    }
    ours = voc_eval_class(ids, scores, dets, record_gt, iou_plus_one=False)
    np.testing.assert_array_equal(devkit.tp, ours.tp)
    assert 0.0 < ours.ap < 1.0
    assert devkit.ap == pytest.approx(ours.ap, abs=1e-12)
    assert devkit.ap07 == pytest.approx(ours.ap07, abs=1e-12)


def test_string_ids_unprocessed_images_and_output_json(tmp_path) -> None:
    records = [rec("2007_000001", [(A, 0)]), rec("2007_000002", [(B, 1), (C, 0)])]
    ev = PascalVOCDetectionEvaluator(dataset_dicts=records, thing_classes=CLASSES, output_dir=str(tmp_path))
    ev.reset()
    # Only the first image is processed: the second image's objects are misses.
    ev.process([records[0]], [out([(A, 0.9, 0)])])
    res = ev.evaluate()["bbox"]
    assert res["AP50-cat"] == 50.0
    assert res["AP50-dog"] == 0.0
    assert res["AP50"] == 25.0
    payload = json.loads((tmp_path / "voc_detection_results.json").read_text())
    assert payload["per_class"]["cat"]["num_gt"] == 2
    assert payload["per_class"]["cat"]["true_positives"] == 1
    assert payload["mAP"] == 25.0


def test_detections_sorted_by_score_across_images() -> None:
    # Score order, not processing order, decides the PR curve.
    records = [rec(1, [(A, 0)]), rec(2, [(B, 0)])]
    outputs = {1: [(FAR, 0.95, 0)], 2: [(B, 0.99, 0)]}
    # sorted: TP(.99), FP(.95); image 1's A is missed -> rec [.5,.5], prec [1,.5] -> area 0.5
    assert run_voc(records, outputs, classes=["cat"])["AP50-cat"] == pytest.approx(50.0)
