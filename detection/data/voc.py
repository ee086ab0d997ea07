"""Pascal-VOC-format (XML per image) annotation loading into litedet records.

Layout under ``dirname``: ``ImageSets/Main/<split>.txt`` (one image id per line),
``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``. VOC pixel coordinates are 1-based
and inclusive; as in detectron2, 1 is subtracted from ``xmin``/``ymin`` only, which turns
them into the 0-based continuous ``[x1, y1, x2, y2]`` the rest of litedet uses.
"""
from __future__ import annotations

import logging
import math
import os
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .conventions import check_box_convention
from .errors import BadSampleError, DatasetError, ProblemLog, visible
from .files import read_annotation_file
from .images import join_under_root, read_image_info

__all__ = ["VOC_CLASSES", "load_voc_instances", "parse_voc_xml"]

logger = logging.getLogger(__name__)

#: The 20 Pascal VOC classes in the standard (devkit) order; contiguous id = index.
VOC_CLASSES: Tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

PathLike = Union[str, "os.PathLike[str]"]

#: Largest annotation xml / split list read (guards against devices and runaway files).
MAX_XML_BYTES = 64 << 20
MAX_SPLIT_BYTES = 1 << 30
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: What a VOC id leaving the root can do about it (DATASETS.ALLOW_PATHS_OUTSIDE_ROOT is for COCO).
_VOC_ID_HINT = "VOC ids name files under Annotations/ and JPEGImages/"


def _local(tag: Any) -> str:
    """An element's name without namespace, lower-cased (``{uri}Object`` -> ``object``);
    "" for comments and processing instructions."""
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _children(node: ET.Element, name: str) -> List[ET.Element]:
    return [child for child in node if _local(child.tag) == name]


def _child(node: Optional[ET.Element], name: str, where: str, kind: str = "bad_object") -> Optional[ET.Element]:
    """The one child ``<name>`` (any case, any namespace), None when absent; two are an
    error (which one would be meant?)."""
    if node is None:
        return None
    found = _children(node, name)
    if len(found) > 1:
        raise DatasetError(f"{where}: {len(found)} <{name}> elements where one is expected", kind)
    return found[0] if found else None


def _text(node: Optional[ET.Element], tag: str, where: str, default: Optional[str] = None) -> str:
    child = _child(node, tag, where)
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise DatasetError(f"{where}: missing <{tag}>", "bad_object")
    return child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> Tuple[float, str]:
    """The value of ``<tag>`` and its text as written (for messages)."""
    raw = _text(node, tag, where)
    try:
        value = float(raw)
    except ValueError:
        raise DatasetError(f"{where}: <{tag}> is not a number: {raw!r}", "bad_object") from None
    if not math.isfinite(value):
        raise DatasetError(f"{where}: <{tag}> is not a finite number: {raw!r}", "bad_object")
    return value, raw


def parse_voc_xml(xml_file: str) -> ET.Element:
    """Parse one annotation file and check its layout; errors name the file (malformed XML
    with line and column).

    Entity declarations are refused: VOC files never need them and they are the vehicle
    of XML expansion ("billion laughs") attacks. Element names are matched without
    namespace and case (``<Object>``, ``<v:annotation xmlns:v=...>``). A layout the loader
    would not read completely is refused rather than read partly: a root other than
    ``<annotation>``, an ``<object>`` that is not a direct child of it (objects wrapped in
    another element), a ``<bndbox>`` outside any object.
    """
    data = read_annotation_file(xml_file, MAX_XML_BYTES, None, "bad_xml")  # the caller checked it is there
    if b"<!ENTITY" in data:
        raise DatasetError(f"{xml_file}: XML entity declarations are not allowed in annotation files", "bad_xml")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        line, col = err.position
        msg = str(err).split(":")[0]
        raise DatasetError(f"{xml_file}:{line}:{col + 1}: malformed XML: {msg}", "bad_xml") from None
    if _local(root.tag) != "annotation":
        raise DatasetError(f"{xml_file}: the root element is <{root.tag}>, not <annotation>: not a VOC annotation", "bad_xml")
    _check_layout(root, xml_file)
    return root


def _check_layout(root: ET.Element, xml_file: str) -> None:
    """Refuse ``<object>`` elements not directly under the root and ``<bndbox>`` elements
    outside every object (object parts, ``<object><part><bndbox>``, are fine)."""

    todo = [(root, "annotation", False)]  # a stack, not recursion: nesting depth is the file's choice
    while todo:
        node, path, in_object = todo.pop()
        for child in node:
            name = _local(child.tag)
            where = f"{path}/{name}"
            if name == "object" and node is not root:
                raise DatasetError(
                    f"{xml_file}: <object> at {where} is not directly under <annotation>; litedet reads "
                    "annotation/object only", "bad_xml",
                )
            if name == "bndbox" and not in_object:
                raise DatasetError(f"{xml_file}: <bndbox> at {where} is outside every <object>", "bad_xml")
            todo.append((child, where, in_object or name == "object"))


def _image_size(root: ET.Element, xml_file: str, jpeg: str, log: ProblemLog) -> Tuple[int, int]:
    """(height, width) from ``<size>``; a few real VOC-style files have it missing or 0,
    in which case the image header is read instead of failing the whole dataset (counted
    as ``size_from_image``)."""
    size = _child(root, "size", xml_file, "bad_xml")
    try:
        h, w = int(float(_text(size, "height", xml_file))), int(float(_text(size, "width", xml_file)))
    except (ValueError, OverflowError):  # DatasetError (missing, repeated) is a ValueError too
        h = w = 0
    if h > 0 and w > 0:
        return h, w
    try:
        h, w = read_image_info(jpeg).display_hw  # the decoded (EXIF-rotated) frame, as the mapper checks
    except BadSampleError as err:
        raise DatasetError(f"{xml_file}: no valid <size> and the image {jpeg} cannot be read ({err.reason})", "bad_xml") from None
    log.warn("size_from_image", xml_file, f"no valid <size>; took {w}x{h} from {jpeg}")
    return int(h), int(w)


def _read_split(split_file: str) -> List[str]:
    """Image ids of an ImageSets file (first word of each line; a UTF-8 BOM is accepted)."""
    data = read_annotation_file(split_file, MAX_SPLIT_BYTES, "VOC split file not found")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{split_file}: not UTF-8 text (byte {err.start})") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _missing_annotation_hint(image_id: str) -> str:
    if image_id.lower().endswith(_IMAGE_EXTENSIONS + (".xml",)):
        return " (ImageSets lists ids without extension: write the id without its extension)"
    if "\\" in image_id:
        return " (a backslash in the id: a Windows path? use '/')"
    return ""


class _UnknownClasses:
    """Objects whose class is not in the class list, reported once for the whole split:
    usually the list is wrong (VOC's 20 classes by default), not thousands of objects."""

    def __init__(self) -> None:
        self.counts: Dict[str, int] = {}
        self.files: List[str] = []
        self.used: Dict[str, None] = {}  # every class name met

    def add(self, name: str, xml_file: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        if not self.files or self.files[-1] != xml_file:
            self.files.append(xml_file)

    def report(self, where: str, classes: Sequence[str], class_option: str, log: ProblemLog) -> None:
        if not self.counts:
            return
        n = sum(self.counts.values())
        unknown = ", ".join(f"{c!r} ({k})" for c, k in sorted(self.counts.items()))  # repr: invisible characters show
        listed = "VOC's 20 classes" if tuple(classes) == VOC_CLASSES else repr(list(classes))
        near = [f"{u!r} ~ {c!r}" for u in sorted(self.counts) for c in classes if u.lower() == c.lower()]
        used = ",".join(sorted(self.used))
        message = (
            f"{n} object(s) in {len(set(self.files))} file(s) (e.g. {self.files[0]}) have classes not in the class "
            f"list ({listed}): {unknown}"
            + (f"; differing only in case: {', '.join(near)}" if near else "")
            + f". The files use the classes {sorted(self.used)}: if these are the dataset's classes, "
            f"{class_option} {used}"
        )
        log.error("unknown_class", where, message)


def load_voc_instances(
    dirname: PathLike,
    split: str,
    class_names: Sequence[str] = VOC_CLASSES,
    *,
    problems: Optional[ProblemLog] = None,
    class_option: str = "give them as its class list:",
) -> List[Dict[str, Any]]:
    """Read a VOC-layout split into litedet records.

    The ``difficult`` flag (0/1) is kept (a difficult box is an ignore region for training
    and evaluation, `detection.data.conventions`). Boxes are clipped to the image;
    inverted (``xmax < xmin``), empty and entirely-outside boxes are dropped (each kind
    counted, one warning line); boxes that look normalised are warned about. Element names
    are read without namespace and case; a missing ``<size>`` is taken from the image
    (counted as ``size_from_image``). Errors raise `DatasetError` naming the file:
    malformed XML (line and column), layouts the loader would not read completely (see
    `parse_voc_xml`), missing or repeated fields, non-numeric coordinates, a bad
    ``difficult`` value, and objects whose class is not in ``class_names`` (reported once
    for the split, with the classes the files use: it usually means the wrong class list;
    ``class_option`` is how the caller's user gives the list, e.g. ``"pass --classes"``).
    Image ids that would leave ``dirname`` are refused. ``problems``: see
    `detection.data.coco.load_coco_json`.
    """
    dirname = os.fspath(dirname)
    log = problems if problems is not None else ProblemLog(strict=True)
    before = dict(log.counts)
    classes = list(class_names)
    index = {c: i for i, c in enumerate(classes)}
    split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    ids = _read_split(split_file)
    if len(set(ids)) != len(ids):
        dup = sorted({visible(i) for i in ids if ids.count(i) > 1})
        log.warn("duplicate_image_id", split_file, f"image ids listed more than once: {dup[:5]}")

    records: List[Dict[str, Any]] = []
    unknown = _UnknownClasses()
    raw_boxes: List[List[float]] = []
    raw_hw: List[Tuple[int, int]] = []
    n_difficult = n_boxes = 0
    for image_id in dict.fromkeys(ids):
        try:
            xml_file = join_under_root(os.path.join(dirname, "Annotations"), f"{image_id}.xml", hint=_VOC_ID_HINT)
            jpeg = join_under_root(os.path.join(dirname, "JPEGImages"), f"{image_id}.jpg", hint=_VOC_ID_HINT)
        except ValueError as err:
            log.error("path_outside_root", split_file, str(err))
            continue
        if not os.path.lexists(xml_file):
            log.error(
                "missing_annotation",
                visible(xml_file),
                f"VOC annotation not found (listed in {split_file}){_missing_annotation_hint(image_id)}",
                FileNotFoundError,
            )
            continue
        try:
            root = parse_voc_xml(xml_file)
            height, width = _image_size(root, xml_file, jpeg, log)
            objects = _children(root, "object")
        except DatasetError as err:
            log.error_from(err)
            continue
        annotations = []
        for k, obj in enumerate(objects):
            where = f"{xml_file}: <object> #{k + 1}"
            try:
                name = _text(obj, "name", where)
                box = _child(obj, "bndbox", where)
                if box is None:
                    raise DatasetError(f"{where}: <object> {name!r} has no <bndbox>", "bad_object")
                (x1, rx1), (y1, ry1) = _number(box, "xmin", where), _number(box, "ymin", where)
                (x2, rx2), (y2, ry2) = _number(box, "xmax", where), _number(box, "ymax", where)
                raw_difficult = _text(obj, "difficult", where, default="0")
                if raw_difficult not in ("0", "1"):
                    raise DatasetError(f"{where}: <difficult> must be 0 or 1, got {raw_difficult!r}", "bad_object")
            except DatasetError as err:
                log.error_from(err)
                continue
            unknown.used[name] = None
            if name not in index:
                unknown.add(name, xml_file)
                continue
            raw_boxes.append([x1, y1, x2, y2])
            raw_hw.append((height, width))
            x1, y1 = x1 - 1.0, y1 - 1.0  # 1-based inclusive pixels -> 0-based continuous
            written = f"[{rx1}, {ry1}, {rx2}, {ry2}]"
            if x2 < x1 + 1 or y2 < y1 + 1:  # in VOC's inclusive pixels, xmax < xmin
                log.warn("box_inverted", where, f"box {written} has xmax < xmin or ymax < ymin; dropped")
                continue
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
            if cx2 <= cx1 or cy2 <= cy1:
                log.warn("box_outside_image", where, f"box {written} is empty or outside the {width}x{height} image; dropped")
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                log.warn("box_clipped", where, f"box {written} reaches outside the {width}x{height} image; clipped")
            difficult = int(raw_difficult)
            n_difficult += difficult
            n_boxes += 1
            annotations.append(
                {"bbox": [cx1, cy1, cx2, cy2], "category_id": index[name], "iscrowd": 0, "difficult": difficult}
            )
        records.append(
            {"file_name": jpeg, "image_id": image_id, "height": height, "width": width, "annotations": annotations}
        )
    unknown.report(f"{dirname} ({split})", classes, class_option, log)
    if raw_boxes:
        check_box_convention(np.asarray(raw_boxes), np.asarray(raw_hw), "xyxy", f"{dirname} ({split})", log, logger)
    counts = {kind: n - before.get((sev, kind), 0) for (sev, kind), n in log.counts.items() if sev == "warning"}
    n_dropped = sum(counts.get(k, 0) for k in ("box_inverted", "box_outside_image"))
    if n_dropped or counts.get("box_clipped"):
        logger.warning(
            "%s (%s): dropped %d degenerate box(es), clipped %d box(es) to the image",
            dirname,
            split,
            n_dropped,
            counts.get("box_clipped", 0),
        )
    if counts.get("size_from_image"):
        logger.warning(
            "%s (%s): %d annotation file(s) without a valid <size>: took the size from the image",
            dirname, split, counts["size_from_image"],
        )
    log.log_warnings(logger, f"{dirname} ({split})", since=before, level=logging.INFO)
    logger.info(
        "Loaded %d images, %d boxes (%d difficult) from %s split %r", len(records), n_boxes, n_difficult, dirname, split
    )
    return records
