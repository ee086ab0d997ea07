"""Broken Pascal-VOC annotations: one-line DatasetError naming the file (line and column
for malformed XML), or counted drops; difficult flags kept."""
from __future__ import annotations

import logging

import pytest

from detection.data import BadSampleError, DatasetMapper, load_voc_instances
from detection.data.errors import DatasetError, ProblemLog

CLASSES = ("cat", "dog")


def _voc(corpus, tmp_path, xml=None):
    root = corpus.valid_voc(tmp_path / "VOC", n=2)
    if xml is not None:
        (root / "Annotations" / "im1.xml").write_text(xml)
    return root


OBJ = {"name": "cat", "x1": 2, "y1": 3, "x2": 12, "y2": 10}

ERRORS = {
    "malformed": ("<annotation>\n  <size><width>32</width>\n</annotation>\n", r"im1\.xml:3:3: malformed XML: mismatched tag"),
    "not_xml": ("just text", r"im1\.xml:1:1: malformed XML: syntax error"),
    "missing_name": (None, r"im1\.xml: <object> #1: missing <name>"),
    "missing_bndbox": (None, r"im1\.xml: <object> #1: <object> 'cat' has no <bndbox>"),
    "missing_xmax": (None, r"im1\.xml: <object> #1: missing <xmax>"),
    "non_numeric": (None, r"im1\.xml: <object> #1: <ymin> is not a number: 'abc'"),
    "nan_coordinate": (None, r"<xmin> is not a finite number: 'nan'"),
    "unknown_class": (None, r"VOC \(train\): 1 object\(s\) in 1 file\(s\) \(e\.g\. \S+/im1\.xml\) have classes not in the class "
                            r"list \(\['cat', 'dog'\]\): 'horse' \(1\)\. The files use the classes \['cat', 'dog', 'horse'\]"),
    "bad_difficult": (None, r"im1\.xml: <object> #1: <difficult> must be 0 or 1, got 'yes'"),
    "entity": ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>', r"im1\.xml: XML entity declarations are not allowed"),
}


#: the problem kind each case is reported under (tools/check_dataset.py, docs/check_dataset.md)
KINDS = {"malformed": "bad_xml", "not_xml": "bad_xml", "entity": "bad_xml", "unknown_class": "unknown_class"}


def _broken_xml(case, corpus):
    if ERRORS[case][0] is not None:
        return ERRORS[case][0]
    xml = corpus.voc_xml("im1", [OBJ])
    return {
        "missing_name": lambda: xml.replace("<name>cat</name>", ""),
        "missing_bndbox": lambda: xml.replace(xml[xml.index("<bndbox>"): xml.index("</bndbox>") + 9], ""),
        "missing_xmax": lambda: xml.replace("<xmax>12</xmax>", ""),
        "non_numeric": lambda: xml.replace("<ymin>3</ymin>", "<ymin>abc</ymin>"),
        "nan_coordinate": lambda: xml.replace("<xmin>2</xmin>", "<xmin>nan</xmin>"),
        "unknown_class": lambda: xml.replace("<name>cat</name>", "<name>horse</name>"),
        "bad_difficult": lambda: xml.replace("<difficult>0</difficult>", "<difficult>yes</difficult>"),
    }[case]()


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_error_names_file(case, corpus, tmp_path):
    root = _voc(corpus, tmp_path, _broken_xml(case, corpus))
    with pytest.raises(DatasetError, match=ERRORS[case][1]) as info:
        load_voc_instances(root, "train", CLASSES)
    assert "\n" not in str(info.value) and info.value.kind == KINDS.get(case, "bad_object")
    problems = ProblemLog(strict=False)  # check mode: collected, the other image still loads
    records = load_voc_instances(root, "train", CLASSES, problems=problems)
    assert problems.count("error") == 1 and [r["image_id"] for r in records][0] == "im0"
    assert list(problems.counts) == [("error", KINDS.get(case, "bad_object"))]


def test_inverted_and_outside_boxes_dropped_and_counted(corpus, tmp_path, caplog):
    objs = [
        {"name": "cat", "x1": 12, "y1": 3, "x2": 2, "y2": 10},  # inverted x
        {"name": "cat", "x1": 2, "y1": 10, "x2": 12, "y2": 3},  # inverted y
        {"name": "dog", "x1": 50, "y1": 50, "x2": 60, "y2": 60},  # outside the 32x24 image
        {"name": "dog", "x1": 20, "y1": 20, "x2": 40, "y2": 30},  # clipped
        {"name": "cat", "x1": 5, "y1": 5, "x2": 5, "y2": 5},  # a single pixel: valid in VOC's inclusive coordinates
    ]
    root = _voc(corpus, tmp_path, corpus.voc_xml("im1", objs))
    problems = ProblemLog()
    with caplog.at_level(logging.WARNING, logger="detection.data.voc"):
        records = load_voc_instances(root, "train", CLASSES, problems=problems)
    assert {k: n for (_, k), n in problems.counts.items()} == {"box_inverted": 2, "box_outside_image": 1, "box_clipped": 1}
    assert [a["bbox"] for a in records[1]["annotations"]] == [[19.0, 19.0, 32.0, 24.0], [4.0, 4.0, 5.0, 5.0]]
    assert "dropped 3 degenerate box(es), clipped 1 box(es)" in caplog.text


def test_difficult_flags_kept_and_dropped_for_training(corpus, tmp_path):
    root = _voc(corpus, tmp_path)
    records = load_voc_instances(root, "train", CLASSES)
    assert [a["difficult"] for a in records[0]["annotations"]] == [0, 1]
    out = DatasetMapper(is_train=True, min_size=(24,), max_size=100, random_flip="none")(records[0])
    assert out["instances"]["labels"].tolist() == [0]  # the difficult dog is not a target


def test_missing_image_and_annotation(corpus, tmp_path):
    root = _voc(corpus, tmp_path)
    (root / "JPEGImages" / "im1.jpg").unlink()
    records = load_voc_instances(root, "train", CLASSES)
    with pytest.raises(BadSampleError, match=r"JPEGImages/im1\.jpg: image file not found"):
        DatasetMapper(is_train=True, min_size=(24,), max_size=100)(records[1])
    (root / "Annotations" / "im1.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"Annotations/im1\.xml: VOC annotation not found \(listed in .*train\.txt\)"):
        load_voc_instances(root, "train", CLASSES)


def test_missing_size_falls_back_to_image_header_or_errors(corpus, tmp_path):
    xml = corpus.voc_xml("im1", [OBJ]).replace("<width>32</width>", "")
    root = _voc(corpus, tmp_path, xml)
    assert load_voc_instances(root, "train", CLASSES)[1]["width"] == 32  # read from the JPEG header
    (root / "JPEGImages" / "im1.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"im1\.xml: no valid <size> and the image .*im1\.jpg cannot be read"):
        load_voc_instances(root, "train", CLASSES)


def test_split_ids_cannot_escape_the_root(corpus, tmp_path):
    root = _voc(corpus, tmp_path)
    (root / "ImageSets" / "Main" / "train.txt").write_text("im0\n../../../etc/passwd\n")
    with pytest.raises(DatasetError, match=r"path '\.\./\.\./\.\./etc/passwd\.xml' points outside"):
        load_voc_instances(root, "train", CLASSES)
