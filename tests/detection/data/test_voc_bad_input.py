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


# ------------------------------------------------------------------ element names, layouts


def _retag(xml, fn):
    """Apply ``fn`` to every element name of ``xml`` (start and end tags)."""
    import re

    return re.sub(r"<(/?)([A-Za-z_][\w.-]*)", lambda m: f"<{m.group(1)}{fn(m.group(2))}", xml)


SPELLINGS = {
    "default_namespace": lambda x: x.replace("<annotation>", '<annotation xmlns="http://example.org/voc">'),
    "prefixed_namespace": lambda x: _retag(x, lambda t: f"v:{t}").replace(
        "<v:annotation>", '<v:annotation xmlns:v="http://example.org/voc">'),
    "Object": lambda x: x.replace("<object>", "<Object>").replace("</object>", "</Object>"),
    "all_caps": lambda x: _retag(x, str.upper),
    "Name_BndBox_Size_Difficult": lambda x: _retag(
        x, lambda t: {"name": "Name", "bndbox": "BndBox", "size": "Size", "difficult": "Difficult"}.get(t, t)),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_element_names_are_read_without_namespace_and_case(spelling, corpus, tmp_path):
    """Namespaced or differently cased files give exactly the plain file's records (the
    difficult dog included), never "0 boxes"."""
    plain = load_voc_instances(corpus.valid_voc(tmp_path / "plain", n=2), "train", CLASSES)
    root = corpus.valid_voc(tmp_path / "VOC", n=2)
    for xml in (root / "Annotations").glob("*.xml"):
        xml.write_text(SPELLINGS[spelling](xml.read_text()))
    problems = ProblemLog()
    records = load_voc_instances(root, "train", CLASSES, problems=problems)
    assert [r["annotations"] for r in records] == [r["annotations"] for r in plain]
    assert [a["difficult"] for a in records[0]["annotations"]] == [0, 1]
    assert [(r["height"], r["width"]) for r in records] == [(24, 32)] * 2 and not problems.counts


LAYOUTS = {
    "wrapped_objects": (lambda x: x.replace("  <object>", "  <objects><object>", 1).replace("</object>\n", "</object></objects>\n", 1),
                        "bad_xml", r"im1\.xml: <object> at annotation/objects/object is not directly under <annotation>"),
    "two_bndbox": (lambda x: x.replace("</bndbox>", "</bndbox><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>3</ymax></bndbox>", 1),
                   "bad_object", r"im1\.xml: <object> #1: 2 <bndbox> elements where one is expected"),
    "two_names": (lambda x: x.replace("<name>cat</name>", "<name>cat</name><name>dog</name>"),
                  "bad_object", r"<object> #1: 2 <name> elements where one is expected"),
    "root_not_annotation": (lambda x: x.replace("<annotation>", "<annotations>").replace("</annotation>", "</annotations>"),
                            "bad_xml", r"im1\.xml: the root element is <annotations>, not <annotation>"),
    "bndbox_outside_object": (lambda x: x.replace("</annotation>", "<bndbox><xmin>1</xmin></bndbox></annotation>"),
                              "bad_xml", r"im1\.xml: <bndbox> at annotation/bndbox is outside every <object>"),
    "two_sizes": (lambda x: x.replace("<size>", "<size><width>1</width></size><size>", 1),
                  "bad_xml", r"im1\.xml: 2 <size> elements where one is expected"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_that_would_be_read_partly_are_refused(layout, corpus, tmp_path):
    mutate, kind, pattern = LAYOUTS[layout]
    root = _voc(corpus, tmp_path, mutate(corpus.voc_xml("im1", [OBJ, dict(OBJ, name="dog")])))
    with pytest.raises(DatasetError, match=pattern) as info:
        load_voc_instances(root, "train", CLASSES)
    assert info.value.kind == kind and "\n" not in str(info.value)
    problems = ProblemLog(strict=False)
    load_voc_instances(root, "train", CLASSES, problems=problems)
    assert problems.counts == {("error", kind): 1}


def test_object_parts_are_not_objects(corpus, tmp_path):
    """VOC person layout: <part> elements with their own <bndbox> inside an object are legal."""
    part = "<part><name>head</name><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>6</xmax><ymax>7</ymax></bndbox></part>"
    root = _voc(corpus, tmp_path, corpus.voc_xml("im1", [OBJ]).replace("</bndbox></object>", f"</bndbox>{part}</object>"))
    records = load_voc_instances(root, "train", CLASSES)
    assert [a["bbox"] for a in records[1]["annotations"]] == [[1.0, 2.0, 12.0, 10.0]]


def test_size_fallback_is_counted_and_uses_the_displayed_frame(corpus, tmp_path, caplog):
    from PIL import Image

    xml = corpus.voc_xml("im1", [OBJ]).replace("<size><width>32</width><height>24</height><depth>3</depth></size>", "")
    root = _voc(corpus, tmp_path, xml)
    im = Image.fromarray(corpus.noise(24, 32))  # stored 32 wide, 24 high; EXIF 6 displays it 24 x 32
    exif = im.getexif()
    exif[corpus.EXIF_ORIENTATION] = 6
    im.save(root / "JPEGImages" / "im1.jpg", exif=exif)
    problems = ProblemLog()
    with caplog.at_level(logging.WARNING, logger="detection.data.voc"):
        records = load_voc_instances(root, "train", CLASSES, problems=problems)
    assert (records[1]["height"], records[1]["width"]) == (32, 24)  # what the mapper decodes
    assert problems.counts == {("warning", "size_from_image"): 1}
    assert "1 annotation file(s) without a valid <size>: took the size from the image" in caplog.text
    DatasetMapper(is_train=False, min_size=24, max_size=100)(records[1])  # no size mismatch


def test_split_file_with_bom_and_invisible_characters(corpus, tmp_path):
    root = corpus.valid_voc(tmp_path / "VOC", n=3)
    split = root / "ImageSets" / "Main" / "train.txt"
    split.write_text("\ufeffim0\r\nim1\r\nim2\r\n", encoding="utf-8")  # Windows: BOM + CRLF
    assert [r["image_id"] for r in load_voc_instances(root, "train", CLASSES)] == ["im0", "im1", "im2"]
    split.write_text("im0\nim1\u200b\n", encoding="utf-8")  # a zero-width space after an id
    with pytest.raises(FileNotFoundError, match=r"'\S+/Annotations/im1\\u200b\.xml': VOC annotation not found"):
        load_voc_instances(root, "train", CLASSES)


def test_missing_file_hints(corpus, tmp_path):
    root = corpus.valid_voc(tmp_path / "VOC", n=2)
    (root / "ImageSets" / "Main" / "train.txt").write_text("im0.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"im0\.jpg\.xml: VOC annotation not found .*\(ImageSets lists ids without extension"):
        load_voc_instances(root, "train", CLASSES)
    (root / "ImageSets" / "Main" / "train.txt").write_text("im0\n")
    corpus.save_rgb(root / "JPEGImages" / "im0.png", corpus.noise(24, 32))
    (root / "JPEGImages" / "im0.jpg").unlink()
    record = load_voc_instances(root, "train", CLASSES)[0]
    with pytest.raises(BadSampleError, match=r"im0\.jpg: image file not found \(but im0\.png exists: another extension; "
                                             r"the VOC layout names images JPEGImages/<id>\.jpg\)"):
        DatasetMapper(is_train=False, min_size=24, max_size=100)(record)


def test_ids_outside_the_root_get_no_coco_setting_hint(corpus, tmp_path):
    root = corpus.valid_voc(tmp_path / "VOC", n=1)
    (root / "ImageSets" / "Main" / "train.txt").write_text("../../x\n")
    with pytest.raises(DatasetError, match=r"points outside the image root .*\(VOC ids name files under Annotations/") as info:
        load_voc_instances(root, "train", CLASSES)
    assert "ALLOW_PATHS_OUTSIDE_ROOT" not in str(info.value)


def test_unknown_classes_reported_once_with_the_classes_the_files_use(corpus, tmp_path):
    """A non-VOC dataset checked against VOC's classes: one error naming the classes the files
    use (and the near miss in case), not one per object."""
    root = corpus.valid_voc(tmp_path / "VOC", n=30)  # cat and dog objects, 30 files
    for xml in (root / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<name>cat</name>", "<name>widget</name>").replace("<name>dog</name>", "<name>Dog</name>"))
    problems = ProblemLog(strict=False)
    records = load_voc_instances(root, "train", problems=problems, class_option="pass --classes")
    assert len(records) == 30 and problems.counts == {("error", "unknown_class"): 1}
    message = problems.examples[("error", "unknown_class")][0].message
    assert message.startswith("60 object(s) in 30 file(s) (e.g. ")
    assert "have classes not in the class list (VOC's 20 classes): 'Dog' (30), 'widget' (30); " in message
    assert "differing only in case: 'Dog' ~ 'dog'" in message
    assert message.endswith("The files use the classes ['Dog', 'widget']: if these are the dataset's classes, pass --classes Dog,widget")


def test_normalised_voc_coordinates_are_warned(corpus, tmp_path):
    root = corpus.valid_voc(tmp_path / "VOC", n=2)
    for xml in (root / "Annotations").glob("*.xml"):
        xml.write_text(corpus.voc_xml(xml.stem, [{"name": "cat", "x1": 0.1, "y1": 0.2, "x2": 0.5, "y2": 0.6}], h=480, w=640))
    problems = ProblemLog()
    load_voc_instances(root, "train", CLASSES, problems=problems)
    assert problems.counts[("warning", "normalised_boxes")] == 1
    assert "all 2 boxes have coordinates in [0, 1] on images of at least 480 pixels" in problems.examples[("warning", "normalised_boxes")][0].message
