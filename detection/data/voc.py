"""Pascal-VOC-format (XML per image) annotation loading into litedet records.

Layout under ``dirname``: ``ImageSets/Main/<split>.txt`` (one image id per line),
``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``. VOC pixel coordinates are 1-based
and inclusive; as in detectron2, 1 is subtracted from ``xmin``/``ymin`` only, which turns
them into the 0-based continuous ``[x1, y1, x2, y2]`` the rest of litedet uses.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["VOC_CLASSES", "load_voc_instances"]

logger = logging.getLogger(__name__)

#: The 20 Pascal VOC classes in the standard (devkit) order; contiguous id = index.
VOC_CLASSES: Tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

PathLike = Union[str, "os.PathLike[str]"]


def _text(node: Optional[ET.Element], tag: str, xml_file: str, default: Optional[str] = None) -> str:
    child = node.find(tag) if node is not None else None
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise ValueError(f"{xml_file}: missing <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, xml_file: str) -> float:
    raw = _text(node, tag, xml_file)
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{xml_file}: <{tag}> is not a number: {raw!r}") from None


def _image_size(root: ET.Element, xml_file: str, jpeg: str) -> Tuple[int, int]:
    """(height, width) from ``<size>``; a few real VOC-style files have it missing or 0,
    in which case the image header is read instead of failing the whole dataset."""
    size = root.find("size")
    try:
        h, w = int(float(_text(size, "height", xml_file))), int(float(_text(size, "width", xml_file)))
    except ValueError:
        h = w = 0
    if h > 0 and w > 0:
        return h, w
    import cv2

    img = cv2.imread(jpeg, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{xml_file}: no valid <size> and the image {jpeg} cannot be read")
    logger.warning("%s: no valid <size>; took %dx%d from %s", xml_file, img.shape[1], img.shape[0], jpeg)
    return int(img.shape[0]), int(img.shape[1])


def load_voc_instances(
    dirname: PathLike, split: str, class_names: Sequence[str] = VOC_CLASSES
) -> List[Dict[str, Any]]:
    """Read a VOC-layout split into litedet records.

    The ``difficult`` flag is kept (training drops those boxes, the VOC evaluator ignores
    them); boxes are clipped to the image and degenerate ones dropped (counted, one
    warning). An object whose class is not in ``class_names`` raises ``ValueError``
    rather than being skipped silently, since that usually means the wrong class list.
    Malformed XML raises ``ValueError`` naming the file.
    """
    dirname = os.fspath(dirname)
    classes = list(class_names)
    index = {c: i for i, c in enumerate(classes)}
    split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"VOC split file not found: {split_file}")
    with open(split_file, encoding="utf-8") as f:
        ids = [line.split()[0] for line in f if line.strip()]

    records: List[Dict[str, Any]] = []
    n_dropped = n_clipped = n_difficult = n_boxes = 0
    for image_id in ids:
        xml_file = os.path.join(dirname, "Annotations", f"{image_id}.xml")
        jpeg = os.path.join(dirname, "JPEGImages", f"{image_id}.jpg")
        if not os.path.isfile(xml_file):
            raise FileNotFoundError(f"VOC annotation not found: {xml_file} (listed in {split_file})")
        try:
            root = ET.parse(xml_file).getroot()
        except ET.ParseError as err:
            raise ValueError(f"{xml_file}: malformed XML: {err}") from None
        height, width = _image_size(root, xml_file, jpeg)
        annotations = []
        for obj in root.findall("object"):
            name = _text(obj, "name", xml_file)
            if name not in index:
                raise ValueError(
                    f"{xml_file}: object class {name!r} is not in the dataset's class list {classes}"
                )
            box = obj.find("bndbox")
            if box is None:
                raise ValueError(f"{xml_file}: <object> {name!r} has no <bndbox>")
            x1 = _number(box, "xmin", xml_file) - 1.0
            y1 = _number(box, "ymin", xml_file) - 1.0
            x2 = _number(box, "xmax", xml_file)
            y2 = _number(box, "ymax", xml_file)
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
            if cx2 <= cx1 or cy2 <= cy1:
                n_dropped += 1
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                n_clipped += 1
            difficult = int(float(_text(obj, "difficult", xml_file, default="0")))
            n_difficult += difficult
            n_boxes += 1
            annotations.append(
                {"bbox": [cx1, cy1, cx2, cy2], "category_id": index[name], "iscrowd": 0, "difficult": difficult}
            )
        records.append(
            {"file_name": jpeg, "image_id": image_id, "height": height, "width": width, "annotations": annotations}
        )
    if n_dropped or n_clipped:
        logger.warning(
            "%s (%s): dropped %d degenerate box(es), clipped %d box(es) to the image",
            dirname,
            split,
            n_dropped,
            n_clipped,
        )
    logger.info(
        "Loaded %d images, %d boxes (%d difficult) from %s split %r", len(records), n_boxes, n_difficult, dirname, split
    )
    return records
