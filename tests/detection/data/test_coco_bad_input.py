"""Broken COCO json files: one-line DatasetError naming the file and the entry, or a
counted and logged drop/clip; the check-mode ProblemLog collects instead of raising."""
from __future__ import annotations

import json
import logging
import math
import re

import pytest

from detection.data import BadSampleError, DatasetMapper, load_coco_json
from detection.data.errors import DatasetError, ProblemLog


def _load(corpus, tmp_path, mutate):
    path = corpus.valid_coco(tmp_path, n=2)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def _set(obj, key, value):
    obj[key] = value


ERRORS = {
    "missing_images": (lambda d: d.pop("images"), r"ann\.json: not a COCO detection file \('images' is missing\)"),
    "categories_not_list": (lambda d: _set(d, "categories", {"id": 1}), r"'categories' is a dict, not a list"),
    "image_without_id": (lambda d: d["images"][0].pop("id"), r"ann\.json: images\[0\]: needs an integer or string 'id'"),
    "image_without_file_name": (lambda d: d["images"][1].pop("file_name"), r"image id 2: 'file_name' must be a non-empty string"),
    "image_zero_height": (lambda d: _set(d["images"][0], "height", 0), r"image id 1: 'height'/'width' must be positive integers, got 0/32"),
    "image_height_text": (lambda d: _set(d["images"][0], "height", "24"), r"'height'/'width' must be positive integers, got '24'/32"),
    "duplicate_image_id": (lambda d: _set(d["images"][1], "id", 1), r"image id 1: image id appears more than once"),
    "annotation_of_absent_image": (lambda d: _set(d["annotations"][0], "image_id", 42), r"annotation 1: image_id 42 is not in 'images'"),
    "unknown_category": (lambda d: _set(d["annotations"][2], "category_id", 9), r"annotation 3: category_id 9 is not in 'categories' \(ids \[1, 2\]\)"),
    "duplicate_category_id": (lambda d: d["categories"].append({"id": 2, "name": "c"}), r"categories\[2\]: category id 2 appears more than once"),
    "bbox_three_numbers": (lambda d: _set(d["annotations"][0], "bbox", [1, 2, 3]), r"annotation 1: 'bbox' must be 4 numbers"),
    "bbox_strings": (lambda d: _set(d["annotations"][0], "bbox", ["1", 2, 3, 4]), r"annotation 1: 'bbox' must be 4 numbers"),
    "iscrowd_text": (lambda d: _set(d["annotations"][1], "iscrowd", "yes"), r"annotation 2: 'iscrowd' must be 0 or 1, got 'yes'"),
    "iscrowd_two": (lambda d: _set(d["annotations"][1], "iscrowd", 2), r"'iscrowd' must be 0 or 1, got 2"),
    "path_escapes_root": (lambda d: _set(d["images"][0], "file_name", "../../etc/passwd"), r"image id 1: path '\.\./\.\./etc/passwd' points outside the image root .*ALLOW_PATHS_OUTSIDE_ROOT"),
    "absolute_path": (lambda d: _set(d["images"][0], "file_name", "/etc/passwd"), r"path '/etc/passwd' points outside the image root"),
    # what would make training, checking and evaluation disagree, or evaluation fail after training
    "ignore_text": (lambda d: _set(d["annotations"][1], "ignore", "1"), r"annotation 2: 'ignore' must be 0 or 1, got '1'"),
    "ignore_two": (lambda d: _set(d["annotations"][1], "ignore", 2), r"annotation 2: 'ignore' must be 0 or 1, got 2"),
    "difficult_text": (lambda d: _set(d["annotations"][0], "difficult", "1"), r"annotation 1: 'difficult' must be 0 or 1, got '1'"),
    "area_negative": (lambda d: _set(d["annotations"][0], "area", -1), r"annotation 1: 'area' must be a finite number >= 0, got -1"),
    "area_text": (lambda d: _set(d["annotations"][0], "area", "80"), r"annotation 1: 'area' must be a finite number >= 0, got '80'"),
    "area_null": (lambda d: _set(d["annotations"][0], "area", None), r"'area' must be a finite number >= 0, got None"),
    "annotation_id_list": (lambda d: _set(d["annotations"][0], "id", []), r"annotation #0: 'id' must be an integer or a string, got \[\]"),
    "no_categories": (lambda d: _set(d, "categories", []), r"ann\.json: 'categories' is empty: a detection dataset needs at least one class"),
    "category_without_name": (lambda d: _set(d["categories"][0], "name", " "), r"categories\[0\]: needs an integer or string 'id' and a non-empty 'name'"),
}

#: the problem kind of each case where it is not the generic one of its field (docs/check_dataset.md)
KINDS = {"ignore_text": "bad_ignore", "ignore_two": "bad_ignore", "difficult_text": "bad_difficult",
         "area_negative": "bad_area", "area_text": "bad_area", "area_null": "bad_area",
         "annotation_id_list": "bad_annotation", "no_categories": "no_categories", "category_without_name": "bad_category"}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_error_names_file_and_entry(case, corpus, tmp_path):
    mutate, pattern = ERRORS[case]
    path = _load(corpus, tmp_path, mutate)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_coco_json(path, tmp_path / "img")
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    if case in KINDS:
        assert info.value.kind == KINDS[case]
    # check mode: entry-level problems are collected (file-level ones still raise)
    problems = ProblemLog(strict=False)
    if case in ("missing_images", "categories_not_list"):
        with pytest.raises(DatasetError):
            load_coco_json(path, tmp_path / "img", problems=problems)
    else:
        load_coco_json(path, tmp_path / "img", problems=problems)
        found = [f"{p.where}: {p.message}" for (sev, _), ps in problems.examples.items() if sev == "error" for p in ps]
        assert any(re.search(pattern, line) for line in found), found


@pytest.mark.parametrize(
    "text, where",
    [("{\n  \"images\": [,]\n}", ":2:14: invalid JSON: Expecting value"), ("", ":1:1: invalid JSON"), ('{"a": 1', ":1:8: invalid JSON")],
)
def test_invalid_json_gives_line_and_column(text, where, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match="^" + str(path) + where):
        load_coco_json(path, tmp_path)


def test_not_utf8_and_top_level_list(tmp_path):
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(DatasetError, match=r"bin\.json: not UTF-8 text"):
        load_coco_json(tmp_path / "bin.json", tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match=r"list\.json: not a COCO detection file \(top level is a list"):
        load_coco_json(tmp_path / "list.json", tmp_path)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        load_coco_json(tmp_path / "absent.json", tmp_path)


def test_bad_boxes_dropped_or_clipped_and_counted(corpus, tmp_path, caplog):
    def mutate(d):
        a = d["annotations"]
        a[0]["bbox"] = [1, 1, -4, 5]  # negative width
        a[1]["bbox"] = [1, 1, 5, 0]  # zero height
        a[2]["bbox"] = [1, 1, math.nan, 5]  # NaN (json.dumps writes NaN, json.load reads it)
        a[3]["bbox"] = [100, 100, 5, 5]  # entirely outside the 32x24 image
        d["annotations"].append(  # clipped
            {"id": 9, "image_id": 1, "category_id": 1, "bbox": [-5, 20, 10, 10], "iscrowd": 0, "area": 100})
    path = _load(corpus, tmp_path, mutate)
    problems = ProblemLog(strict=True)
    with caplog.at_level(logging.INFO, logger="detection.data.coco"):
        records = load_coco_json(path, tmp_path / "img", problems=problems)
    assert sum(len(r["annotations"]) for r in records) == 1
    assert records[0]["annotations"][0]["bbox"] == [0.0, 20.0, 5.0, 24.0]
    kinds = {k: n for (_, k), n in problems.counts.items()}
    assert kinds == {"box_empty": 2, "box_not_finite": 1, "box_outside_image": 1, "box_clipped": 1}
    text = caplog.text
    assert "dropped 4 box(es)" in text and "clipped 1 box(es)" in text and str(path) in text
    assert "1 x box_not_finite (e.g. " in text and "annotation 3" in text


def test_iscrowd_kept_and_ignored_by_training(corpus, tmp_path):
    path = _load(corpus, tmp_path, lambda d: _set(d["annotations"][0], "iscrowd", 1))
    records = load_coco_json(path, tmp_path / "img")
    assert [a["iscrowd"] for a in records[0]["annotations"]] == [1, 0]
    out = DatasetMapper(is_train=True, min_size=(24,), max_size=100, random_flip="none")(records[0])
    assert out["instances"]["labels"].tolist() == [1]  # the crowd box (class 0) is not a training target


def test_non_ascii_file_names(corpus, tmp_path):
    def mutate(d):
        d["images"][0]["file_name"] = "ünï/画像.png"
    path = _load(corpus, tmp_path, mutate)
    (tmp_path / "img" / "ünï").mkdir()
    (tmp_path / "img" / "0.png").rename(tmp_path / "img" / "ünï" / "画像.png")
    records = load_coco_json(path, tmp_path / "img")
    assert records[0]["file_name"].endswith("ünï/画像.png")
    assert DatasetMapper(is_train=False, min_size=24, max_size=100)(records[0])["image"].shape == (3, 24, 32)


def test_paths_outside_root_allowed_when_configured(corpus, tmp_path):
    outside = tmp_path / "elsewhere.png"
    corpus.save_rgb(outside, corpus.noise(24, 32))
    path = _load(corpus, tmp_path, lambda d: _set(d["images"][0], "file_name", str(outside)))
    records = load_coco_json(path, tmp_path / "img", allow_outside_root=True)
    assert records[0]["file_name"] == str(outside)


def test_missing_image_is_a_bad_sample_naming_the_file(corpus, tmp_path):
    path = corpus.valid_coco(tmp_path, n=2)
    (tmp_path / "img" / "1.png").unlink()
    records = load_coco_json(path, tmp_path / "img")  # the loader does not stat images
    with pytest.raises(BadSampleError, match=r"img/1\.png: image file not found"):
        DatasetMapper(is_train=True, min_size=(24,), max_size=100)(records[1])


def test_config_key_reaches_the_loader(corpus, tmp_path):
    import uuid

    from detection.config import get_cfg
    from detection.data import DatasetCatalog, MetadataCatalog, register_from_cfg

    path = _load(corpus, tmp_path, lambda d: _set(d["images"][0], "file_name", "../0.png"))
    cfg = get_cfg()
    for allow in (False, True):
        name = f"bad_input_{uuid.uuid4().hex[:8]}"
        cfg.DATASETS.REGISTER_COCO = [[name, str(path), str(tmp_path / "img")]]
        cfg.DATASETS.ALLOW_PATHS_OUTSIDE_ROOT = allow
        register_from_cfg(cfg)
        try:
            if allow:
                assert len(DatasetCatalog.get(name)) == 2
            else:
                with pytest.raises(DatasetError, match="outside the image root"):
                    DatasetCatalog.get(name)
        finally:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_ignore_and_difficult_are_ignore_regions_like_crowd(corpus, tmp_path):
    """One rule (detection.data.conventions): COCO "ignore": 1 and "difficult": 1 boxes are kept
    with their flag, are not training targets, and are not counted as ground truth boxes."""
    from detection.data.conventions import usable_annotation

    def mutate(d):
        d["annotations"][0]["ignore"] = 1
        d["annotations"][1]["difficult"] = True  # JSON true is 1
        d["annotations"][2]["iscrowd"] = 1
    records = load_coco_json(_load(corpus, tmp_path, mutate), tmp_path / "img")
    flags = [(a.get("ignore", 0), a["difficult"], a["iscrowd"]) for r in records for a in r["annotations"]]
    assert flags == [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)]
    assert [usable_annotation(a) for r in records for a in r["annotations"]] == [False, False, False, True]
    mapper = DatasetMapper(is_train=True, min_size=(24,), max_size=100, random_flip="none")
    assert [mapper(r)["instances"]["labels"].tolist() for r in records] == [[], [1]]


def test_area_kept_where_it_differs_and_counted_where_missing(corpus, tmp_path):
    def mutate(d):
        d["annotations"][0]["area"] = 50.5  # e.g. a mask's area: the evaluator's size ranges use it
        d["annotations"][1].pop("area")
        d["annotations"][2]["area"] = 0
    problems = ProblemLog()
    records = load_coco_json(_load(corpus, tmp_path, mutate), tmp_path / "img", problems=problems)
    anns = [a for r in records for a in r["annotations"]]
    assert anns[0]["area"] == 50.5 and all("area" not in a for a in anns[1:])  # 36 / 80: the box's own area
    assert problems.counts == {("warning", "area_missing"): 2}
    assert [p.where.rsplit(": ", 1)[1] for p in problems.examples[("warning", "area_missing")]] == [
        "annotation 2", "annotation 3"]


def test_annotation_ids_optional_and_repeats_warned(corpus, tmp_path):
    def mutate(d):
        d["annotations"][0].pop("id")
        d["annotations"][2]["id"] = d["annotations"][1]["id"]
    problems = ProblemLog()
    records = load_coco_json(_load(corpus, tmp_path, mutate), tmp_path / "img", problems=problems)
    assert sum(len(r["annotations"]) for r in records) == 4
    assert problems.counts == {("warning", "duplicate_annotation_id"): 1}


def test_utf8_bom_is_accepted(corpus, tmp_path):
    path = corpus.valid_coco(tmp_path, n=2)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # what Windows editors write
    assert sum(len(r["annotations"]) for r in load_coco_json(path, tmp_path / "img")) == 4


def test_non_regular_and_binary_annotation_files(corpus, tmp_path):
    import os

    fifo = tmp_path / "ann_fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match=r"ann_fifo\.json: is a FIFO \(named pipe\), not a regular annotation file") as info:
        load_coco_json(fifo, tmp_path)  # refused without opening it for reading (that would block)
    assert info.value.kind == "not_a_regular_file"
    sparse = tmp_path / "zeros.json"
    with open(sparse, "wb") as f:
        f.truncate(64 << 20)  # 64 MiB of zero bytes, sparse on disk
    with pytest.raises(DatasetError, match=r"zeros\.json: not a JSON file \(binary data: starts with byte 0x00\)"):
        load_coco_json(sparse, tmp_path)
    with pytest.raises(DatasetError, match=r"ann\.json: is a directory, not a regular annotation file"):
        (tmp_path / "d" / "ann.json").mkdir(parents=True)
        load_coco_json(tmp_path / "d" / "ann.json", tmp_path)


def test_numbers_too_large_for_a_float(corpus, tmp_path):
    """JSON integers have no size limit: 10**400 is dropped as a non-finite box or refused as a
    size, never an OverflowError."""
    def mutate(d):
        d["annotations"][0]["bbox"] = [1, 1, 10 ** 400, 5]
        d["annotations"][1]["area"] = 10 ** 400
    path = _load(corpus, tmp_path, mutate)
    problems = ProblemLog(strict=False)
    records = load_coco_json(path, tmp_path / "img", problems=problems)
    assert sum(len(r["annotations"]) for r in records) == 2
    assert problems.counts == {("warning", "box_not_finite"): 1, ("error", "bad_area"): 1}
    path = _load(corpus, tmp_path, lambda d: _set(d["images"][0], "height", 10 ** 400))
    with pytest.raises(DatasetError, match=r"image id 1: 'height'/'width' must be positive integers"):
        load_coco_json(path, tmp_path / "img")


def _boxes_as(kind, d):
    """Every box rewritten in another convention, on 480x640 images (the loader reads no image)."""
    for img in d["images"]:
        img["height"], img["width"] = 480, 640
    boxes = [(50, 60, 250, 300), (300, 200, 600, 420)]  # x1, y1, x2, y2
    for i, a in enumerate(d["annotations"]):
        x1, y1, x2, y2 = boxes[i % 2]
        a.pop("area")
        a["bbox"] = {"normalised": [x1 / 640, y1 / 480, (x2 - x1) / 640, (y2 - y1) / 480],
                     "xyxy": [x1, y1, x2, y2], "right": [x1, y1, x2 - x1, y2 - y1]}[kind]


@pytest.mark.parametrize("kind, warning", [
    ("normalised", r"all 4 boxes have coordinates in \[0, 1\] on images of at least 480 pixels a side: normalised"),
    ("xyxy", r"2 of 4 boxes reach past the image when read as COCO \[x, y, w, h\], and every box has w > x and h > y"),
    ("right", None),
])
def test_boxes_in_another_convention_are_warned_at_load(kind, warning, corpus, tmp_path, caplog):
    path = _load(corpus, tmp_path, lambda d: _boxes_as(kind, d))
    problems = ProblemLog()
    with caplog.at_level(logging.WARNING, logger="detection.data.coco"):
        load_coco_json(path, tmp_path / "img", problems=problems)
    kinds = {k for (_, k) in problems.counts} - {"area_missing", "box_clipped"}
    if warning is None:
        assert not kinds and "normalised" not in caplog.text
        return
    expected = {"normalised": "normalised_boxes", "xyxy": "xyxy_boxes"}[kind]
    assert kinds == {expected} and problems.counts[("warning", expected)] == 1
    assert re.search(str(path) + ": " + warning, caplog.text)  # in the training log too
