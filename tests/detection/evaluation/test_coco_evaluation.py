"""COCO evaluator: known APs, crowd handling, and equality with raw pycocotools."""
from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Any, Dict, List, Sequence

import numpy as np
import pytest

from detection.evaluation import COCOEvaluator, convert_to_coco_dict
from helpers.records import annotation, predictions, record

CLASSES = ["person", "car", "dog"]
BACKENDS = ["faster", "pycocotools"]


def rec(image_id: Any, anns: Sequence[tuple], h: int = 480, w: int = 640) -> dict:
    """Record from (xyxy, category_id[, iscrowd]) tuples."""
    anns = [annotation([float(v) for v in a[0]], a[1], iscrowd=a[2] if len(a) > 2 else 0) for a in anns]
    return record(image_id, anns, h, w)


out = predictions  # out(boxes, scores, labels): one image's detections


def evaluate(records: List[dict], outputs: Dict[Any, dict], **kw) -> Dict[str, float]:
    kw.setdefault("thing_classes", CLASSES)
    ev = COCOEvaluator(dataset_dicts=records if "json_file" not in kw else None, **kw)
    ev.reset()
    for r in records:
        if r["image_id"] in outputs:
            ev.process([r], [outputs[r["image_id"]]])
    res = ev.evaluate()["bbox"]
    res["_stats"] = ev.stats  # type: ignore[assignment]
    return res


A = (10.0, 10.0, 110.0, 90.0)  # 100 x 80: medium
B = (200.0, 50.0, 420.0, 300.0)  # large
C = (300.0, 300.0, 320.0, 315.0)  # small


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_detections_score_100(backend: str) -> None:
    records = [rec(1, [(A, 0), (B, 1)]), rec(2, [(C, 2), (A, 0)])]
    outputs = {
        1: out([A, B], [0.9, 0.8], [0, 1]),
        2: out([C, A], [0.7, 0.95], [2, 0]),
    }
    res = evaluate(records, outputs, backend=backend)
    for key in ("AP", "AP50", "AP75", "AP-person", "AP-car", "AP-dog", "APs", "APm", "APl"):
        assert res[key] == pytest.approx(100.0, abs=1e-9), key


@pytest.mark.parametrize("backend", BACKENDS)
def test_crowd_regions_absorb_detections_and_are_not_misses(backend: str) -> None:
    crowd = (300.0, 200.0, 600.0, 450.0)
    inside = (320.0, 220.0, 380.0, 300.0)  # small IoU with the crowd box, but inside it
    records = [rec(1, [(A, 0), (crowd, 0, 1)])]
    # A crowd GT found by nobody is not a miss; a detection inside it is not a false positive,
    # even when it outranks the true positive.
    res = evaluate(records, {1: out([A, inside], [0.5, 0.9], [0, 0])}, backend=backend)
    assert res["AP-person"] == pytest.approx(100.0, abs=1e-9)
    # Same boxes without the crowd flag: the crowd box is a missed object and `inside` a FP.
    plain = [rec(1, [(A, 0), (crowd, 0, 0)])]
    res_plain = evaluate(plain, {1: out([A, inside], [0.5, 0.9], [0, 0])}, backend=backend)
    assert res_plain["AP-person"] < 50.0


def test_convert_to_coco_dict_keeps_crowd_and_box_area() -> None:
    records = [rec(5, [(A, 0), (B, 2, 1)])]
    d = convert_to_coco_dict(records, CLASSES, contiguous_to_dataset_id={0: 1, 1: 3, 2: 18})
    assert [c["id"] for c in d["categories"]] == [1, 3, 18]
    a0, a1 = d["annotations"]
    assert a0["bbox"] == [10.0, 10.0, 100.0, 80.0] and a0["area"] == 8000.0 and a0["iscrowd"] == 0
    assert a1["category_id"] == 18 and a1["iscrowd"] == 1 and a1["area"] == 220.0 * 250.0
    assert a0["id"] == 1 and a1["id"] == 2  # ids start at 1 (pycocotools treats 0 as "no match")
    assert d["images"][0]["id"] == 5


# ----------------------------------------------------------------------------- against raw pycocotools
def random_set(seed: int, n_images: int = 12):
    """Random GT (all three size ranges, some crowd) and noisy detections as float32 tensors."""
    rng = np.random.default_rng(seed)
    records, outputs = [], {}
    for i in range(n_images):
        image_id = 100 + 7 * i
        anns = []
        for _ in range(int(rng.integers(0, 7))):
            w, h = rng.choice([rng.uniform(4, 30), rng.uniform(35, 90), rng.uniform(100, 300)], 2)
            x1, y1 = rng.uniform(0, 300, 2)
            anns.append(((x1, y1, x1 + w, y1 + h), int(rng.integers(0, 3)), int(rng.random() < 0.1)))
        r = rec(image_id, anns)
        records.append(r)
        boxes, scores, labels = [], [], []
        for a in r["annotations"]:
            if rng.random() < 0.8:
                b = np.asarray(a["bbox"])
                size = np.array([b[2] - b[0], b[3] - b[1]] * 2)
                boxes.append(b + rng.normal(0, 0.08, 4) * size)
                scores.append(rng.random())
                labels.append(a["category_id"] if rng.random() < 0.85 else int(rng.integers(0, 3)))
        for _ in range(int(rng.integers(0, 5))):
            x1, y1 = rng.uniform(0, 400, 2)
            w, h = rng.uniform(5, 200, 2)
            boxes.append([x1, y1, x1 + w, y1 + h])
            scores.append(rng.random())
            labels.append(int(rng.integers(0, 3)))
        if boxes or rng.random() < 0.5:  # some images are processed with no detections at all
            outputs[image_id] = out(boxes, scores, labels)
    return records, outputs


def raw_pycocotools(records: List[dict], outputs: Dict[Any, dict], tmp_path, dataset_ids: Sequence[int]):
    """Reference: GT json written independently, pycocotools run exactly as its README says."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns = [], []
    for r in records:
        images.append({"id": r["image_id"], "width": r["width"], "height": r["height"], "file_name": r["file_name"]})
        for a in r["annotations"]:
            x1, y1, x2, y2 = a["bbox"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": r["image_id"],
                    "category_id": dataset_ids[a["category_id"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": a["iscrowd"],
                }
            )
    categories = [{"id": c, "name": n} for c, n in zip(dataset_ids, CLASSES)]
    gt = {"images": images, "annotations": anns, "categories": categories}
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    dets = []
    for image_id, o in outputs.items():
        for b, s, l in zip(o["boxes"].tolist(), o["scores"].tolist(), o["labels"].tolist()):
            xywh = [b[0], b[1], b[2] - b[0], b[3] - b[1]]
            dets.append({"image_id": image_id, "category_id": dataset_ids[l], "bbox": xywh, "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(dets)
        e = COCOeval(coco_gt, coco_dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    per_class = {}
    for k, cat in enumerate(e.params.catIds):
        p = e.eval["precision"][:, :, k, 0, -1]
        p = p[p > -1]
        per_class[CLASSES[dataset_ids.index(cat)]] = float(np.mean(p)) * 100 if p.size else float("nan")
    return np.asarray(e.stats), per_class, gt_path


def assert_matches(res: Dict[str, Any], stats: np.ndarray, per_class: Dict[str, float]) -> None:
    np.testing.assert_allclose(res["_stats"], stats, atol=1e-6, rtol=0)
    for i, name in enumerate(["AP", "AP50", "AP75", "APs", "APm", "APl"]):
        expected = stats[i] * 100 if stats[i] >= 0 else float("nan")
        assert res[name] == pytest.approx(expected, abs=1e-6, nan_ok=True), name
    for name, ap in per_class.items():
        assert res[f"AP-{name}"] == pytest.approx(ap, abs=1e-6, nan_ok=True), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_raw_pycocotools_and_backends_agree(seed: int, tmp_path) -> None:
    records, outputs = random_set(seed)
    stats, per_class, _ = raw_pycocotools(records, outputs, tmp_path, [0, 1, 2])
    assert 0.05 < stats[0] < 0.95  # a non-trivial case
    results = {b: evaluate(records, outputs, backend=b) for b in BACKENDS}
    for b in BACKENDS:
        assert_matches(results[b], stats, per_class)
    np.testing.assert_allclose(results["faster"]["_stats"], results["pycocotools"]["_stats"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_ground_truth_with_dataset_category_ids(backend: str, tmp_path) -> None:
    dataset_ids = [1, 5, 9]  # non-contiguous, as in COCO; contiguous i = i-th smallest id
    records, outputs = random_set(7)
    for r in records:  # every box inside its image: the json is read by the loader, which clips boxes to the image
        r["height"] = r["width"] = 640
    stats, per_class, gt_path = raw_pycocotools(records, outputs, tmp_path, dataset_ids)
    res = evaluate(records, outputs, backend=backend, json_file=str(gt_path), output_dir=str(tmp_path / "out"))
    assert_matches(res, stats, per_class)
    written = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert written and set(written[0]) == {"image_id", "category_id", "bbox", "score"}
    assert {d["category_id"] for d in written} <= set(dataset_ids)
    # Standard result format: XYWH.
    first_id = written[0]["image_id"]
    b = outputs[first_id]["boxes"][0].tolist()
    assert written[0]["bbox"] == pytest.approx([b[0], b[1], b[2] - b[0], b[3] - b[1]])


def test_string_image_ids_are_remapped() -> None:
    records = [rec("2007_000001", [(A, 0)]), rec("2007_000002", [(B, 1)])]
    outputs = {"2007_000001": out([A], [0.9], [0]), "2007_000002": out([A], [0.9], [1])}
    res = evaluate(records, outputs, backend="faster")
    assert res["AP-person"] == pytest.approx(100.0)
    assert res["AP-car"] == 0.0
    assert math.isnan(res["AP-dog"])  # no ground truth for that class


def test_no_predictions_gives_zeros_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    records = [rec(1, [(A, 0)])]
    res = evaluate(records, {1: out([], [], [])}, backend="pycocotools")
    assert {k: v for k, v in res.items() if k != "_stats"} == {
        "AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "APm": 0.0, "APl": 0.0,
        "AP-person": 0.0, "AP-car": 0.0, "AP-dog": 0.0,
    }
    assert "No predictions" in caplog.text


def test_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        COCOEvaluator(dataset_dicts=[], thing_classes=CLASSES, backend="detectron")


def test_library_output_is_not_printed(capsys: pytest.CaptureFixture) -> None:
    records, outputs = random_set(3, n_images=3)
    for b in BACKENDS:
        evaluate(records, outputs, backend=b)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- speed paths
def random_coco(seed: int, n_images: int = 60, n_cats: int = 12):
    """A COCO gt dict and result list that exercise every branch of the protocol: crowd and
    json-``ignore`` ground truth, a json ``area`` unlike the box area, duplicate and
    crowd-covered boxes (IoU ties, ignored vs. regular candidates), empty images, images
    with detections but no ground truth, categories without any ground truth or detections,
    tied scores, degenerate boxes and one (image, category) with more than 100 detections."""
    rng = np.random.default_rng(seed)
    cat_ids = [int(c) for c in sorted(rng.choice(np.arange(1, 200), size=n_cats, replace=False))]
    images, anns, dets = [], [], []
    for img in rng.choice(np.arange(1, 10_000), size=n_images, replace=False).tolist():
        images.append({"id": img, "width": 640, "height": 480})
        used = cat_ids[: n_cats - 2]  # the last two categories never get ground truth
        n_gt = 0 if rng.random() < 0.15 else int(rng.integers(1, 12))
        for _ in range(n_gt):
            side = np.exp(rng.uniform(np.log(4), np.log(300), size=2))
            x, y = rng.uniform(0, 640 - side[0]), rng.uniform(0, 480 - side[1])
            box = [float(x), float(y), float(side[0]), float(side[1])]
            area = box[2] * box[3] * (rng.uniform(0.5, 1.0) if rng.random() < 0.3 else 1.0)
            a = {"id": len(anns) + 1, "image_id": img, "category_id": int(rng.choice(used)), "bbox": box,
                 "area": area, "iscrowd": int(rng.random() < 0.12)}
            if rng.random() < 0.1:
                a["ignore"] = 1  # COCO gives iscrowd precedence: this flag must change nothing
            anns.append(a)
            if rng.random() < 0.25:  # an overlapping twin: exact copy (IoU ties) or a crowd region
                twin = dict(a, id=len(anns) + 1, iscrowd=int(rng.random() < 0.5), area=box[2] * box[3])
                twin.pop("ignore", None)
                if rng.random() < 0.5:
                    twin["bbox"] = [box[0] - 2.0, box[1] - 2.0, box[2] + 4.0, box[3] + 4.0]
                anns.append(twin)
        gts = [a for a in anns if a["image_id"] == img]
        for a in gts:
            if rng.random() < 0.8:
                b = np.asarray(a["bbox"]) + rng.normal(0, 0.15, 4) * np.r_[a["bbox"][2:], a["bbox"][2:]]
                cat = a["category_id"] if rng.random() < 0.85 else int(rng.choice(cat_ids))
                dets.append((img, cat, b, float(np.round(rng.random(), 1))))  # rounded: many ties
        for _ in range(int(rng.integers(0, 6))):
            b = np.r_[rng.uniform(0, 600, 2), np.exp(rng.uniform(0, np.log(300), 2))]
            if rng.random() < 0.05:
                b[2] = 0.0  # degenerate
            dets.append((img, int(rng.choice(cat_ids)), b, float(rng.random())))
    crowded = images[0]["id"]  # > maxDets (100) detections in one (image, category)
    for _ in range(130):
        b = np.r_[rng.uniform(0, 300, 2), rng.uniform(10, 200, 2)]
        dets.append((crowded, cat_ids[0], b, float(np.round(rng.random(), 2))))
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cat_ids]}
    results = [{"image_id": i, "category_id": c, "bbox": [float(v) for v in b], "score": s} for i, c, b, s in dets]
    return gt, results


@pytest.mark.parametrize("seed,restrict", [(0, False), (1, False), (2, True)])
def test_fast_path_equals_library_and_pycocotools(seed: int, restrict: bool) -> None:
    """``evaluate_boxes`` (array input, vectorised IoU, numpy matching and accumulation) gives
    pycocotools' precision/recall/scores arrays and stats bit for bit and faster-coco-eval's
    to 1e-12, also on an image subset."""
    from faster_coco_eval import COCO as FCOCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detection.evaluation.fast_coco import BoxGroundTruth, evaluate_boxes

    gt, results = random_coco(seed)
    img_ids = [img["id"] for img in gt["images"][::3]] if restrict else None
    quiet = lambda *a, **k: None  # noqa: E731
    with contextlib.redirect_stdout(io.StringIO()):
        lib_gt = FCOCO(json.loads(json.dumps(gt)), print_function=quiet)
        lib = COCOeval_faster(lib_gt, lib_gt.loadRes(json.loads(json.dumps(results))), "bbox", print_function=quiet)
        ref_gt = COCO()
        ref_gt.dataset = json.loads(json.dumps(gt))
        ref_gt.createIndex()
        ref = COCOeval(ref_gt, ref_gt.loadRes(json.loads(json.dumps(results))), "bbox")
        for e in (lib, ref):
            if img_ids is not None:
                e.params.imgIds = list(img_ids)
            e.evaluate()
            e.accumulate()
            e.summarize()
        fast = evaluate_boxes(
            BoxGroundTruth(gt),
            np.asarray([r["image_id"] for r in results]),
            np.asarray([r["category_id"] for r in results]),
            np.asarray([r["bbox"] for r in results], dtype=np.float64),
            np.asarray([r["score"] for r in results]),
            img_ids,
        )
    assert 0.05 < ref.stats[0] < 0.95
    for key in ("precision", "recall", "scores"):  # the reference, bit for bit
        np.testing.assert_array_equal(fast.eval[key], ref.eval[key], err_msg=key)
    np.testing.assert_array_equal(fast.stats, ref.stats[: len(fast.stats)])
    # faster-coco-eval's C++ differs from pycocotools by rounding only (precision 1.0 where the
    # COCO API's tp / (tp + fp + eps) gives 1 - 2e-16).
    for key in ("precision", "recall", "scores"):
        np.testing.assert_allclose(fast.eval[key], lib.eval[key], rtol=0, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(fast.stats, lib.stats, rtol=0, atol=1e-12)


def test_fast_path_iou_ties_go_to_the_later_ground_truth() -> None:
    """Two ground-truth boxes with exactly the same IoU to the best detection: the COCO rule
    gives it the later one, leaving the first for the next detection (recall 1, not 0.5)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detection.evaluation.fast_coco import BoxGroundTruth, evaluate_boxes

    boxes = [[22.0, 20.0, 10.0, 10.0], [18.0, 20.0, 10.0, 10.0]]  # mirror images around the detection
    gt = {
        "images": [{"id": 1, "width": 64, "height": 64}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 100.0, "iscrowd": 0}
            for i, b in enumerate(boxes)
        ],
    }
    dets = [([20.0, 20.0, 10.0, 10.0], 0.9), ([22.0, 20.0, 10.0, 10.0], 0.8)]
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = COCO()
        ref_gt.dataset = json.loads(json.dumps(gt))
        ref_gt.createIndex()
        ref = COCOeval(ref_gt, ref_gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": b, "score": s}
                                                 for b, s in dets]), "bbox")
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
        fast = evaluate_boxes(BoxGroundTruth(gt), np.array([1, 1]), np.array([1, 1]),
                              np.array([b for b, _ in dets]), np.array([s for _, s in dets]))
    assert ref.eval["recall"][0, 0, 0, -1] == 1.0
    np.testing.assert_array_equal(fast.eval["recall"], ref.eval["recall"])
    np.testing.assert_array_equal(fast.eval["precision"], ref.eval["precision"])


def test_fast_path_ground_truth_is_reused_and_unchanged() -> None:
    """The evaluator indexes the ground truth once and reuses it: a second ``evaluate`` on new
    predictions gives the numbers a fresh evaluator gives."""
    records, outputs = random_set(4)
    ev = COCOEvaluator(dataset_dicts=records, thing_classes=CLASSES, backend="faster", distributed=False)
    ev.evaluate()  # no predictions yet
    for r in records:
        if r["image_id"] in outputs:
            ev.process([r], [outputs[r["image_id"]]])
    second = ev.evaluate()["bbox"]
    box_gt = ev._box_gt
    third = ev.evaluate()["bbox"]
    assert ev._box_gt is box_gt is not None
    fresh = evaluate(records, outputs, backend="faster")
    reference = evaluate(records, outputs, backend="pycocotools")
    np.testing.assert_allclose(fresh.pop("_stats"), reference.pop("_stats"), rtol=0, atol=1e-12)
    assert 0 < fresh["AP"] < 100
    assert second == pytest.approx(fresh, nan_ok=True) and third == pytest.approx(fresh, nan_ok=True)
    assert reference == pytest.approx(fresh, nan_ok=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_twice_and_dropped_predictions(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """Predictions are stored as arrays: a second ``evaluate`` gives the same numbers, and
    unknown images / labels are dropped with a warning."""
    records, outputs = random_set(5)
    ev = COCOEvaluator(dataset_dicts=records, thing_classes=CLASSES, backend=backend)
    for r in records:
        if r["image_id"] in outputs:
            ev.process([r], [outputs[r["image_id"]]])
    ev.process([{"image_id": 999999}], [out([A], [0.9], [0])])  # not in the ground truth
    ev.process([{"image_id": records[0]["image_id"]}], [out([A], [0.9], [7])])  # label outside the classes
    first = ev.evaluate()["bbox"]
    second = ev.evaluate()["bbox"]
    assert first == pytest.approx(second, nan_ok=True)
    assert "1 predictions refer to images that are not in the ground truth" in caplog.text
    assert "1 predictions have labels outside the 3 known classes" in caplog.text


def test_evaluate_restores_garbage_collector_state() -> None:
    """evaluate() pauses the cyclic GC for speed and must leave it as it found it."""
    import gc

    records, outputs = random_set(2, n_images=4)
    was = gc.isenabled()
    try:
        for state in (True, False):
            (gc.enable if state else gc.disable)()
            evaluate(records, outputs, backend="faster")
            assert gc.isenabled() is state
    finally:
        (gc.enable if was else gc.disable)()


def test_fast_path_only_for_integer_ids() -> None:
    """Arrays hold integer ids; a json with other ids is left to the library's own path."""
    from detection.evaluation.fast_coco import BoxGroundTruth

    gt, _ = random_coco(3, n_images=5)
    assert BoxGroundTruth.supports(gt)
    assert not BoxGroundTruth.supports(dict(gt, images=[dict(i, id=str(i["id"])) for i in gt["images"]]))
    assert not BoxGroundTruth.supports(dict(gt, annotations=[dict(a, category_id=True) for a in gt["annotations"]]))
