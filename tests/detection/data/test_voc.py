"""load_voc_instances on a tiny VOC tree: 1-based coordinates, difficult flag, errors."""
from __future__ import annotations

import os

import pytest

from detection.data import VOC_CLASSES, load_voc_instances


def _xml(objects, w=200, h=100, size=True):
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    size_xml = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><filename>x.jpg</filename>{size_xml}{objs}</annotation>"


def _voc_tree(root, files, split="train"):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(root / sub, exist_ok=True)
    for stem, text in files.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in files))
    return str(root)


def test_records_coordinates_and_difficult(tmp_path):
    root = _voc_tree(
        tmp_path,
        {
            "000001": _xml([("dog", (11, 21, 50, 60), 0), ("person", (1, 1, 200, 100), 1)]),
            "000002": _xml([], w=64, h=48),
        },
    )
    recs = load_voc_instances(root, "train", VOC_CLASSES)
    assert [r["image_id"] for r in recs] == ["000001", "000002"]
    a = recs[0]
    assert a["file_name"] == os.path.join(root, "JPEGImages", "000001.jpg")
    assert (a["height"], a["width"]) == (100, 200)
    # 1 subtracted from xmin/ymin only (detectron2's convention)
    assert a["annotations"][0] == {
        "bbox": [10.0, 20.0, 50.0, 60.0], "category_id": VOC_CLASSES.index("dog"), "iscrowd": 0, "difficult": 0,
    }
    assert a["annotations"][1]["difficult"] == 1
    assert a["annotations"][1]["bbox"] == [0.0, 0.0, 200.0, 100.0]
    assert recs[1]["annotations"] == [] and (recs[1]["height"], recs[1]["width"]) == (48, 64)


def test_custom_classes(tmp_path):
    root = _voc_tree(tmp_path, {"a": _xml([("circle", (5, 5, 20, 20), 0)])})
    recs = load_voc_instances(root, "train", ["square", "circle"])
    assert recs[0]["annotations"][0]["category_id"] == 1
    with pytest.raises(ValueError, match=r"a\.xml.*'circle'"):
        load_voc_instances(root, "train", ["square"])


def test_malformed_xml_names_file(tmp_path):
    root = _voc_tree(tmp_path, {"good": _xml([]), "broken": "<annotation><size>"})
    with pytest.raises(ValueError, match=r"broken\.xml.*malformed"):
        load_voc_instances(root, "train", VOC_CLASSES)


def test_missing_files(tmp_path):
    root = _voc_tree(tmp_path, {"a": _xml([])})
    with pytest.raises(FileNotFoundError, match="val.txt"):
        load_voc_instances(root, "val", VOC_CLASSES)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\nmissing\n")
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        load_voc_instances(root, "train", VOC_CLASSES)


def test_bad_number_names_file(tmp_path):
    root = _voc_tree(tmp_path, {"n": _xml([("dog", ("x", 1, 5, 5), 0)])})
    with pytest.raises(ValueError, match=r"n\.xml.*xmin"):
        load_voc_instances(root, "train", VOC_CLASSES)
