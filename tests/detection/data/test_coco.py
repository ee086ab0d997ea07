"""load_coco_json on a tiny hand-written file covering the awkward cases."""
from __future__ import annotations

import json
import logging
import os
import uuid

import pytest

from detection.data import MetadataCatalog, load_coco_json


def _tiny_coco(tmp_path):
    """3 images (the third without annotations); non-contiguous category ids 3 and 7;
    a crowd box, a zero-width box, a box entirely outside and one partly outside."""
    data = {
        "images": [
            {"id": 10, "file_name": "a.jpg", "height": 100, "width": 200},
            {"id": 11, "file_name": "sub/b.jpg", "height": 50, "width": 60},
            {"id": 12, "file_name": "c.jpg", "height": 30, "width": 40},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 7, "bbox": [0, 0, 50, 50], "iscrowd": 1},
            {"id": 3, "image_id": 10, "category_id": 7, "bbox": [5, 5, 0, 10], "iscrowd": 0},  # zero width
            {"id": 4, "image_id": 11, "category_id": 7, "bbox": [100, 100, 10, 10], "iscrowd": 0},  # outside
            {"id": 5, "image_id": 11, "category_id": 3, "bbox": [50, 40, 20, 20], "iscrowd": 0},  # clipped
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_records_boxes_and_ids(tmp_path, caplog):
    name = f"coco_test_{uuid.uuid4().hex[:8]}"
    json_file = _tiny_coco(tmp_path)
    with caplog.at_level(logging.WARNING, logger="detection.data.coco"):
        records = load_coco_json(json_file, str(tmp_path / "img"), dataset_name=name)
    try:
        assert [r["image_id"] for r in records] == [10, 11, 12]
        a, b, c = records
        assert a["file_name"] == os.path.join(str(tmp_path / "img"), "a.jpg")
        assert b["file_name"] == os.path.join(str(tmp_path / "img"), "sub/b.jpg")
        assert (a["height"], a["width"]) == (100, 200)
        # xywh -> xyxy; category ids sorted (3 -> 0 "cat", 7 -> 1 "dog")
        assert a["annotations"][0] == {"bbox": [10.0, 20.0, 40.0, 60.0], "category_id": 0, "iscrowd": 0, "difficult": 0}
        assert a["annotations"][1]["iscrowd"] == 1 and a["annotations"][1]["category_id"] == 1
        assert len(a["annotations"]) == 2  # zero-width box dropped
        assert b["annotations"] == [{"bbox": [50.0, 40.0, 60.0, 50.0], "category_id": 0, "iscrowd": 0, "difficult": 0}]
        assert c["annotations"] == []  # kept as a negative
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["cat", "dog"]
        assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}
        warning = " ".join(r.getMessage() for r in caplog.records)
        assert "dropped 2 box" in warning and "clipped 1 box" in warning and json_file in warning
    finally:
        MetadataCatalog.remove(name)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_json(str(tmp_path / "nope.json"), str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_coco_json(str(bad), str(tmp_path))


def test_unknown_category_names_file(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 99, "bbox": [1, 1, 2, 2]}],
        "categories": [{"id": 1, "name": "a"}],
    }
    path = tmp_path / "cats.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"cats\.json.*category_id 99"):
        load_coco_json(str(path), str(tmp_path))
