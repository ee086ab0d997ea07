"""One ground-truth rule for training, checking and evaluation: the COCO evaluator scores what
the loader kept (clipped boxes, dropped ones absent, crowd / ``ignore`` / ``difficult`` boxes as
ignore regions, the json's ``area``), and anything the loader accepts can be scored. Every case
evaluates perfect detections of the loaded ground-truth boxes with both backends: AP is 100, or
the loader refuses the file with one line naming it."""
from __future__ import annotations

import json
import logging
import math
import uuid

import pytest
import torch

from detection.data import DatasetCatalog, MetadataCatalog, load_coco_json, register_coco_instances
from detection.data.conventions import usable_annotation
from detection.data.errors import DatasetError
from detection.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator, convert_to_coco_dict

BACKENDS = ["faster", "pycocotools"]


def _each_annotation(key, value, every=2):
    def mutate(d):
        for i, a in enumerate(d["annotations"]):
            if i % every == 0:
                a[key] = value
    return mutate


def _string_image_ids(d):
    for img in d["images"]:
        img["id"] = f"img_{img['id']}"
    for a in d["annotations"]:
        a["image_id"] = f"img_{a['image_id']}"


def _string_category_ids(d):
    for c in d["categories"]:
        c["id"] = f"cat_{c['id']}"
    for a in d["annotations"]:
        a["category_id"] = f"cat_{a['category_id']}"


def _huge_image_ids(d):
    for img in d["images"]:
        img["id"] += 2 ** 70
    for a in d["annotations"]:
        a["image_id"] += 2 ** 70


def _shift_category_ids(d, by):
    for c in d["categories"]:
        c["id"] += by
    for a in d["annotations"]:
        a["category_id"] += by


def _drop_key(key):
    def mutate(d):
        for a in d["annotations"]:
            a.pop(key)
    return mutate


def _first(key, value):
    return lambda d: d["annotations"][0].__setitem__(key, value)


ACCEPTED = {
    "ignore_1": _each_annotation("ignore", 1),
    "difficult_1": _each_annotation("difficult", 1),
    "iscrowd_true": _each_annotation("iscrowd", True),
    "annotation_id_0": _first("id", 0),
    "annotation_ids_repeated": _each_annotation("id", 7, every=1),
    "annotation_ids_missing": _drop_key("id"),
    "area_missing": _drop_key("area"),
    "area_0": _each_annotation("area", 0),
    "area_of_a_mask": _each_annotation("area", 12.5),
    "box_clipped": _first("bbox", [25, 2, 20, 5]),
    "box_nan": _first("bbox", [1, 1, math.nan, 5]),
    "box_empty": _first("bbox", [1, 1, 0, 5]),
    "string_image_ids": _string_image_ids,
    "string_category_ids": _string_category_ids,
    "image_ids_beyond_int64": _huge_image_ids,
    "category_id_0": lambda d: _shift_category_ids(d, -1),
}
REFUSED = {
    "ignore_text": (_first("ignore", "1"), "bad_ignore", r"annotation 1: 'ignore' must be 0 or 1, got '1'"),
    "ignore_2": (_first("ignore", 2), "bad_ignore", r"annotation 1: 'ignore' must be 0 or 1, got 2"),
    "area_negative": (_first("area", -1), "bad_area", r"annotation 1: 'area' must be a finite number >= 0"),
    "area_text": (_first("area", "80"), "bad_area", r"annotation 1: 'area' must be a finite number >= 0"),
    "area_dict": (_first("area", {}), "bad_area", r"annotation 1: 'area' must be a finite number >= 0"),
    "annotation_id_null": (_first("id", None), "bad_annotation", r"'id' must be an integer or a string, got None"),
}


def _dataset(corpus, tmp_path, mutate):
    path = corpus.valid_coco(tmp_path, n=3)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return path


def _perfect(records):
    """One output per record: exactly its ground-truth (not ignore-region) boxes."""
    outputs = []
    for r in records:
        kept = [a for a in r["annotations"] if usable_annotation(a)]
        outputs.append({
            "boxes": torch.tensor([a["bbox"] for a in kept], dtype=torch.float64).reshape(-1, 4),
            "scores": torch.ones(len(kept)),
            "labels": torch.tensor([a["category_id"] for a in kept], dtype=torch.int64),
        })
    return outputs


def _evaluate(evaluator, records):
    evaluator.reset()
    evaluator.prepare()
    for r, o in zip(records, _perfect(records)):
        evaluator.process([r], [o])
    return evaluator.evaluate()["bbox"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_accepted_files_score_100_with_perfect_detections(case, backend, corpus, tmp_path):
    path = _dataset(corpus, tmp_path, ACCEPTED[case])
    records = load_coco_json(path, tmp_path / "img")
    by_json = _evaluate(COCOEvaluator(json_file=str(path), backend=backend, distributed=False), records)
    assert by_json["AP"] == pytest.approx(100.0), by_json
    name = f"gt_rule_{uuid.uuid4().hex[:8]}"  # the registered dataset: what train_net evaluates
    register_coco_instances(name, path, tmp_path / "img")
    try:
        by_name = _evaluate(COCOEvaluator(name, backend=backend, distributed=False), DatasetCatalog.get(name))
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert by_name == pytest.approx(by_json, nan_ok=True)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_evaluation_could_not_score_is_refused_at_load(case, corpus, tmp_path):
    mutate, kind, pattern = REFUSED[case]
    path = _dataset(corpus, tmp_path, mutate)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_coco_json(path, tmp_path / "img")
    assert info.value.kind == kind and str(info.value).startswith(str(path))
    with pytest.raises(DatasetError, match=pattern):  # before inference: the evaluator's first step
        COCOEvaluator(json_file=str(path), distributed=False).prepare()


def test_ignore_and_difficult_boxes_absorb_detections(corpus, tmp_path):
    """A detection on an ignore region is neither a true nor a false positive (before: the
    json evaluator scored COCO "ignore": 1 boxes as ground truth, AP 50 with perfect detections)."""
    path = _dataset(corpus, tmp_path, _each_annotation("ignore", 1))
    records = load_coco_json(path, tmp_path / "img")
    all_boxes = [{"boxes": torch.tensor([a["bbox"] for a in r["annotations"]], dtype=torch.float64),
                  "scores": torch.full((len(r["annotations"]),), 0.9),
                  "labels": torch.tensor([a["category_id"] for a in r["annotations"]])} for r in records]
    for backend in BACKENDS:
        ev = COCOEvaluator(json_file=str(path), backend=backend, distributed=False)
        for r, o in zip(records, all_boxes):
            ev.process([r], [o])
        assert ev.evaluate()["bbox"]["AP"] == pytest.approx(100.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["crowd_only", "no_annotations"])
def test_no_ground_truth_gives_nan_and_a_warning(case, backend, corpus, tmp_path, caplog):
    mutate = _each_annotation("iscrowd", 1, every=1) if case == "crowd_only" else (lambda d: d.update(annotations=[]))
    path = _dataset(corpus, tmp_path, mutate)
    records = load_coco_json(path, tmp_path / "img")
    for outputs in ([], [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "scores": torch.ones(1),
                          "labels": torch.zeros(1, dtype=torch.int64)}]):  # with or without detections: NaN
        ev = COCOEvaluator(json_file=str(path), backend=backend, distributed=False)
        for r, o in zip(records, outputs):
            ev.process([r], [o])
        with caplog.at_level(logging.WARNING, logger="detection.evaluation.coco_evaluation"):
            res = ev.evaluate()["bbox"]
        assert all(math.isnan(v) for v in res.values()), res
        assert "the ground truth has no ground-truth box (none at all, or only crowd/ignore/difficult regions)" in caplog.text


def test_voc_difficult_boxes_are_ignore_regions_under_coco_metrics_too(corpus, tmp_path):
    """The same records through both protocols: a VOC-difficult box is not a miss for either."""
    from detection.data import load_voc_instances

    root = corpus.valid_voc(tmp_path / "VOC", n=3)  # each image: a cat and a difficult dog
    records = load_voc_instances(root, "train", ("cat", "dog"))
    coco_dict = convert_to_coco_dict(records, ["cat", "dog"])
    assert [a["iscrowd"] for a in coco_dict["annotations"]] == [0, 1] * 3
    coco = COCOEvaluator(dataset_dicts=records, thing_classes=["cat", "dog"], distributed=False)
    voc = PascalVOCDetectionEvaluator(dataset_dicts=records, thing_classes=["cat", "dog"], distributed=False)
    assert _evaluate(coco, records)["AP-cat"] == pytest.approx(100.0)
    result = _evaluate(voc, records)
    assert result["AP50-cat"] == pytest.approx(100.0) and math.isnan(result["AP50-dog"])
