"""The litedet_shapes generator: valid COCO + VOC with identical boxes, idempotence, CLI."""
from __future__ import annotations

import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest

from detection.data import DatasetCatalog, SHAPES_CLASSES, generate_shapes_dataset, load_coco_json, load_voc_instances
from detection.data.shapes import main, render_shapes_image, shapes_paths

def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


SMALL = dict(num_train=6, num_val=3, image_size=(96, 128), seed=0)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    generate_shapes_dataset(root, **SMALL)
    return root


def test_coco_is_valid_and_matches_voc(shapes_root):
    from pycocotools.coco import COCO

    paths = shapes_paths(shapes_root)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(paths.json_file("train"))
    assert len(coco.getImgIds()) == 6
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPES_CLASSES)
    for split, n in (("train", 6), ("val", 3)):
        c = load_coco_json(paths.json_file(split), paths.image_dir(split))
        v = load_voc_instances(paths.voc_dir, split, SHAPES_CLASSES)
        assert len(c) == len(v) == n
        for rc, rv in zip(c, v):
            assert os.path.basename(rc["file_name"]) == os.path.basename(rv["file_name"])
            assert os.path.isfile(rc["file_name"]) and os.path.isfile(rv["file_name"])
            assert _without_area(rc["annotations"]) == rv["annotations"]
            json_areas = {tuple(a["bbox"]): a["area"] for a in coco.imgToAnns[rc["image_id"]]} if split == "train" else None
            for a in rc["annotations"]:  # the COCO form keeps the visible (mask) area for the evaluator's size ranges
                x1, y1, x2, y2 = a["bbox"]
                assert a.get("area", (x2 - x1) * (y2 - y1)) <= (x2 - x1) * (y2 - y1)
                if json_areas is not None:
                    assert a.get("area", (x2 - x1) * (y2 - y1)) == json_areas[(x1, y1, x2 - x1, y2 - y1)]
            assert (rc["height"], rc["width"]) == (rv["height"], rv["width"]) == (96, 128)
            img = cv2.imread(rc["file_name"])
            assert img.shape == (96, 128, 3)
            for a in rc["annotations"]:
                x1, y1, x2, y2 = a["bbox"]
                assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 96
                assert min(x2 - x1, y2 - y1) >= 10
                assert 0 <= a["category_id"] < len(SHAPES_CLASSES)


def test_idempotent_and_regenerates_on_new_settings(shapes_root):
    paths = shapes_paths(shapes_root)
    before = os.path.getmtime(paths.manifest)
    manifest = generate_shapes_dataset(shapes_root, **SMALL)
    assert os.path.getmtime(paths.manifest) == before
    assert manifest["counts"]["train"]["images"] == 6


def test_regenerate_replaces_and_is_deterministic(tmp_path):
    root = str(tmp_path)
    first = generate_shapes_dataset(root, num_train=2, num_val=1, image_size=(80, 96), seed=4)
    ann1 = _read_json(shapes_paths(root).json_file("train"))["annotations"]
    again = generate_shapes_dataset(root, num_train=3, num_val=1, image_size=(80, 96), seed=4)
    assert again["num_train"] == 3 and first["num_train"] == 2
    assert len(os.listdir(shapes_paths(root).image_dir("train"))) == 3
    ann2 = _read_json(shapes_paths(root).json_file("train"))["annotations"]
    # image i depends only on (seed, split, i): the first two images keep their boxes
    assert [a["bbox"] for a in ann2 if a["image_id"] <= 2] == [a["bbox"] for a in ann1]
    assert not [d for d in os.listdir(root) if d.startswith(".litedet_shapes")]  # no temp dirs left


def test_builtin_datasets_use_existing_data(shapes_root, monkeypatch):
    monkeypatch.setenv("LITEDET_DATASETS", shapes_root)
    coco = DatasetCatalog.get("litedet_shapes_val")
    voc = DatasetCatalog.get("litedet_shapes_voc_val")
    assert len(coco) == len(voc) == 3  # the small dataset is used as is, not regenerated
    assert [_without_area(r["annotations"]) for r in coco] == [r["annotations"] for r in voc]


def _without_area(annotations):
    """COCO records keep a json ``area`` that differs from the box's (the shapes' visible area);
    VOC has no such field."""
    return [{k: v for k, v in a.items() if k != "area"} for a in annotations]


def test_render_properties():
    rng = np.random.default_rng(0)
    img, objs = render_shapes_image(rng, (128, 160), empty_prob=1.0)
    assert img.dtype == np.uint8 and img.shape == (128, 160, 3) and objs == []
    counts = [len(render_shapes_image(np.random.default_rng([1, i]), (128, 160))[1]) for i in range(8)]
    assert max(counts) <= 4 and sum(counts) > 0


def test_cli(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "--num-train", "2", "--num-val", "1", "--image-size", "80", "96"]) == 0
    out = capsys.readouterr().out
    assert "litedet_shapes at" in out and "train: 2 images" in out and "val: 1 images" in out


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        generate_shapes_dataset(str(tmp_path), num_train=1, num_val=1, image_size=(10, 10))
