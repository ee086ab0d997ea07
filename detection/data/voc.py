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

from .errors import DatasetError, ProblemLog
from .images import join_under_root

__all__ = ["VOC_CLASSES", "load_voc_instances", "parse_voc_xml"]

logger = logging.getLogger(__name__)

#: The 20 Pascal VOC classes in the standard (devkit) order; contiguous id = index.
VOC_CLASSES: Tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

PathLike = Union[str, "os.PathLike[str]"]


def _text(node: Optional[ET.Element], tag: str, where: str, default: Optional[str] = None) -> str:
    child = node.find(tag) if node is not None else None
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise DatasetError(f"{where}: missing <{tag}>", "bad_object")
    return child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    raw = _text(node, tag, where)
    try:
        value = float(raw)
    except ValueError:
        raise DatasetError(f"{where}: <{tag}> is not a number: {raw!r}", "bad_object") from None
    if not math.isfinite(value):
        raise DatasetError(f"{where}: <{tag}> is not a finite number: {raw!r}", "bad_object")
    return value


def parse_voc_xml(xml_file: str) -> ET.Element:
    """Parse one annotation file; errors name the file, line and column.

    Entity declarations are refused: VOC files never need them and they are the vehicle
    of XML expansion ("billion laughs") attacks.
    """
    try:
        with open(xml_file, "rb") as f:
            data = f.read()
    except OSError as err:
        raise DatasetError(f"{xml_file}: cannot read ({err.strerror or err})", "bad_xml") from None
    if b"<!ENTITY" in data:
        raise DatasetError(f"{xml_file}: XML entity declarations are not allowed in annotation files", "bad_xml")
    try:
        return ET.fromstring(data)
    except ET.ParseError as err:
        line, col = err.position
        msg = str(err).split(":")[0]
        raise DatasetError(f"{xml_file}:{line}:{col + 1}: malformed XML: {msg}", "bad_xml") from None


def _image_size(root: ET.Element, xml_file: str, jpeg: str) -> Tuple[int, int]:
    """(height, width) from ``<size>``; a few real VOC-style files have it missing or 0,
    in which case the image header is read instead of failing the whole dataset."""
    size = root.find("size")
    try:
        h, w = int(float(_text(size, "height", xml_file))), int(float(_text(size, "width", xml_file)))
    except (ValueError, OverflowError):  # DatasetError is a ValueError too
        h = w = 0
    if h > 0 and w > 0:
        return h, w
    from PIL import Image

    try:
        with Image.open(jpeg) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - any failure means the same thing here
        raise DatasetError(f"{xml_file}: no valid <size> and the image {jpeg} cannot be read", "bad_xml") from None
    logger.warning("%s: no valid <size>; took %dx%d from %s", xml_file, w, h, jpeg)
    return int(h), int(w)


def load_voc_instances(
    dirname: PathLike,
    split: str,
    class_names: Sequence[str] = VOC_CLASSES,
    *,
    problems: Optional[ProblemLog] = None,
) -> List[Dict[str, Any]]:
    """Read a VOC-layout split into litedet records.

    The ``difficult`` flag (0/1) is kept (training drops those boxes, the VOC evaluator
    ignores them). Boxes are clipped to the image; inverted (``xmax < xmin``), empty and
    entirely-outside boxes are dropped (each kind counted, one warning line). Errors
    raise `DatasetError` naming the file: malformed XML (line and column), missing
    fields, non-numeric coordinates, a bad ``difficult`` value, and an object whose class
    is not in ``class_names`` (rather than a silent skip: it usually means the wrong
    class list). Image ids that would leave ``dirname`` are refused. ``problems``: see
    `detection.data.coco.load_coco_json`.
    """
    dirname = os.fspath(dirname)
    log = problems if problems is not None else ProblemLog(strict=True)
    before = dict(log.counts)
    classes = list(class_names)
    index = {c: i for i, c in enumerate(classes)}
    split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"VOC split file not found: {split_file}")
    try:
        with open(split_file, encoding="utf-8") as f:
            ids = [line.split()[0] for line in f if line.strip()]
    except UnicodeDecodeError as err:
        raise DatasetError(f"{split_file}: not UTF-8 text (byte {err.start})") from None
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        log.warn("duplicate_image_id", split_file, f"image ids listed more than once: {dup[:5]}")

    records: List[Dict[str, Any]] = []
    n_difficult = n_boxes = 0
    for image_id in dict.fromkeys(ids):
        try:
            xml_file = join_under_root(os.path.join(dirname, "Annotations"), f"{image_id}.xml")
            jpeg = join_under_root(os.path.join(dirname, "JPEGImages"), f"{image_id}.jpg")
        except ValueError as err:
            log.error("path_outside_root", split_file, str(err))
            continue
        if not os.path.isfile(xml_file):
            log.error(
                "missing_annotation", xml_file, f"VOC annotation not found (listed in {split_file})", FileNotFoundError
            )
            continue
        try:
            root = parse_voc_xml(xml_file)
            height, width = _image_size(root, xml_file, jpeg)
        except DatasetError as err:
            log.error_from(err)
            continue
        annotations = []
        for k, obj in enumerate(root.findall("object")):
            where = f"{xml_file}: <object> #{k + 1}"
            try:
                name = _text(obj, "name", where)
                if name not in index:
                    raise DatasetError(
                        f"{where}: class {name!r} is not in the dataset's class list {classes}", "unknown_class"
                    )
                box = obj.find("bndbox")
                if box is None:
                    raise DatasetError(f"{where}: <object> {name!r} has no <bndbox>", "bad_object")
                x1 = _number(box, "xmin", where) - 1.0
                y1 = _number(box, "ymin", where) - 1.0
                x2 = _number(box, "xmax", where)
                y2 = _number(box, "ymax", where)
                raw_difficult = _text(obj, "difficult", where, default="0")
                if raw_difficult not in ("0", "1"):
                    raise DatasetError(f"{where}: <difficult> must be 0 or 1, got {raw_difficult!r}", "bad_object")
            except DatasetError as err:
                log.error_from(err)
                continue
            coords = [x1 + 1, y1 + 1, x2, y2]
            if x2 < x1 + 1 or y2 < y1 + 1:  # in VOC's inclusive pixels, xmax < xmin
                log.warn("box_inverted", where, f"box {coords} has xmax < xmin or ymax < ymin; dropped")
                continue
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
            if cx2 <= cx1 or cy2 <= cy1:
                log.warn("box_outside_image", where, f"box {coords} is empty or outside the {width}x{height} image; dropped")
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                log.warn("box_clipped", where, f"box {coords} reaches outside the {width}x{height} image; clipped")
            difficult = int(raw_difficult)
            n_difficult += difficult
            n_boxes += 1
            annotations.append(
                {"bbox": [cx1, cy1, cx2, cy2], "category_id": index[name], "iscrowd": 0, "difficult": difficult}
            )
        records.append(
            {"file_name": jpeg, "image_id": image_id, "height": height, "width": width, "annotations": annotations}
        )
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
    log.log_warnings(logger, f"{dirname} ({split})", since=before, level=logging.INFO)
    logger.info(
        "Loaded %d images, %d boxes (%d difficult) from %s split %r", len(records), n_boxes, n_difficult, dirname, split
    )
    return records
