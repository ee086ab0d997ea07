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
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_error_names_file_and_entry(case, corpus, tmp_path):
    mutate, pattern = ERRORS[case]
    path = _load(corpus, tmp_path, mutate)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_coco_json(path, tmp_path / "img")
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
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
