"""COCO-format annotation loading into litedet records.

Record format (shared by every loader; see `detection.data`):
``{"file_name", "image_id", "height", "width", "annotations": [{"bbox": [x1, y1, x2, y2],
"category_id": contiguous 0..K-1, "iscrowd", "difficult"[, "ignore"][, "area"]}]}``
(``"ignore"`` only where set, ``"area"`` only where the json's differs from the box's).

COCO stores boxes as ``[x, y, w, h]`` with arbitrary category ids; both are normalised
here once so that nothing downstream has to know the source format.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .conventions import check_box_convention
from .errors import DatasetError, ProblemLog
from .files import read_annotation_file
from .images import join_under_root

__all__ = ["load_coco_json", "parse_coco_json", "CocoDataset", "COCO_CATEGORIES"]

logger = logging.getLogger(__name__)

# The 80 COCO detection categories with their (non-contiguous) dataset ids, so that the
# built-in COCO datasets have class names before their json is read (evaluators, demos).
_COCO_NAMES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"),
    (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"),
    (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"),
    (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
    (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
    (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
COCO_CATEGORIES: List[Dict[str, Any]] = [{"id": i, "name": n} for i, n in _COCO_NAMES]

PathLike = Union[str, "os.PathLike[str]"]

#: Largest COCO json read (a guard against devices and runaway files, far above real sets).
MAX_JSON_BYTES = 16 << 30
_FLAG_KINDS = {"iscrowd": "bad_iscrowd", "ignore": "bad_ignore", "difficult": "bad_difficult"}


@dataclass
class CocoDataset:
    """What `parse_coco_json` read: the records, the class names in contiguous-id order and
    the json's category id of each contiguous id's class."""

    records: List[Dict[str, Any]]
    thing_classes: List[str]
    dataset_id_to_contiguous_id: Dict[Any, int]


def _read_json(json_file: str) -> Any:
    """Parse ``json_file`` (a UTF-8 BOM is accepted); errors name the file (syntax errors
    with line:column)."""
    missing = "COCO annotation file not found"
    # a few bytes first: binary data (a sparse or device-like file) is refused without reading it all
    first = read_annotation_file(json_file, MAX_JSON_BYTES, missing, head=64).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first and first[0] < 0x20:
        raise DatasetError(f"{json_file}: not a JSON file (binary data: starts with byte {first[0]:#04x})")
    data = read_annotation_file(json_file, MAX_JSON_BYTES, missing)
    try:
        return json.loads(data.decode("utf-8-sig"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{json_file}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"{json_file}: not UTF-8 text (byte {err.start}): is this a JSON file?") from None
    except RecursionError:
        raise DatasetError(f"{json_file}: JSON nested too deeply") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_float(v: Any) -> Optional[float]:
    """``v`` as a finite float, else None (JSON integers can be too large for a float)."""
    if not _is_number(v):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _bbox_values(bbox: Any) -> Optional[List[float]]:
    """The 4 numbers of a bbox as floats (NaN for JSON numbers no float holds), None when it
    is not 4 numbers. Written for speed: it runs once per box of COCO-sized files."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    values = []
    for v in bbox:
        kind = type(v)
        if kind is float:
            values.append(v)
        elif kind is int:  # not bool: type() is exact
            values.append(float(v) if -1e300 < v < 1e300 else math.nan)
        else:
            return None
    return values


def _is_size(v: Any) -> bool:
    """A positive integral number (JSON may write 640 as 640.0)."""
    f = _as_float(v)
    return f is not None and f > 0 and f == int(f)


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def _list_field(data: Dict[str, Any], key: str, json_file: str, required: bool = True) -> List[Any]:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        what = "missing" if key not in data else f"a {type(value).__name__}, not a list"
        raise DatasetError(f"{json_file}: not a COCO detection file ({key!r} is {what})")
    return value


def _parse_categories(categories: List[Any], json_file: str, log: ProblemLog) -> Dict[Any, str]:
    """``{category id: name}`` of the valid ``categories`` entries."""
    if not categories:
        log.error("no_categories", json_file, "'categories' is empty: a detection dataset needs at least one class")
    names_by_id: Dict[Any, str] = {}
    for i, cat in enumerate(categories):
        where = f"{json_file}: categories[{i}]"
        name = cat.get("name") if isinstance(cat, dict) else None
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(name, str) or not name.strip():
            log.error("bad_category", where, f"needs an integer or string 'id' and a non-empty 'name', got {_short(cat)}")
            continue
        if cat["id"] in names_by_id:
            log.error("duplicate_category_id", where, f"category id {cat['id']!r} appears more than once")
            continue
        names_by_id[cat["id"]] = name
    names = list(names_by_id.values())
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        log.warn("duplicate_category_name", json_file, f"category names {dup} are used by several ids")
    return names_by_id


def _parse_images(
    images: List[Any], json_file: str, image_root: str, allow_outside_root: bool, log: ProblemLog
) -> Tuple[Dict[Any, Dict[str, Any]], set]:
    """Records (without annotations) by image id, and the ids of entries in error (check
    mode keeps going; their annotations are then not reported a second time)."""
    records_by_id: Dict[Any, Dict[str, Any]] = {}
    rejected: set = set()
    for i, img in enumerate(images):
        where = f"{json_file}: images[{i}]"
        if not isinstance(img, dict) or not _is_id(img.get("id")):
            log.error("bad_image_entry", where, f"needs an integer or string 'id', got {_short(img)}")
            continue
        img_id = img["id"]
        where = f"{json_file}: image id {img_id!r}"
        fname, height, width = img.get("file_name"), img.get("height"), img.get("width")
        problem = None
        if img_id in records_by_id:
            problem = ("duplicate_image_id", "image id appears more than once in 'images'")
        elif not isinstance(fname, str) or not fname.strip():
            problem = ("bad_image_entry", f"'file_name' must be a non-empty string, got {fname!r}")
        elif not (_is_size(height) and _is_size(width)):
            problem = ("bad_image_entry", f"'height'/'width' must be positive integers, got {height!r}/{width!r}")
        else:
            try:
                path = join_under_root(image_root, fname, allow_outside_root)
            except ValueError as err:
                problem = ("path_outside_root", str(err))
        if problem is not None:
            if img_id not in records_by_id:
                rejected.add(img_id)
            log.error(problem[0], where, problem[1])
            continue
        rejected.discard(img_id)
        records_by_id[img_id] = {
            "file_name": path,
            "image_id": img_id,
            "height": int(height),
            "width": int(width),
            "annotations": [],
        }
    return records_by_id, rejected


def _clipped_box(
    bbox: Sequence[Any], values: Sequence[float], width: int, height: int, where: str, log: ProblemLog
) -> Optional[List[float]]:
    """COCO ``[x, y, w, h]`` (``values``: `_bbox_values` of ``bbox``) -> ``[x1, y1, x2, y2]``
    clipped to the image, or ``None`` (with a warning recorded) for a box that is
    non-finite, empty or entirely outside."""
    x, y, w, h = values
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(w) and math.isfinite(h)):
        log.warn("box_not_finite", where, f"bbox {_short(list(bbox))} has NaN/inf; dropped")
        return None
    if not (w > 0 and h > 0):
        log.warn("box_empty", where, f"bbox {list(bbox)} has zero/negative width or height; dropped")
        return None
    x1, y1, x2, y2 = x, y, x + w, y + h
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if cx2 <= cx1 or cy2 <= cy1:
        log.warn("box_outside_image", where, f"bbox {list(bbox)} lies outside the {width}x{height} image; dropped")
        return None
    if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
        log.warn("box_clipped", where, f"bbox {list(bbox)} reaches outside the {width}x{height} image; clipped")
    return [cx1, cy1, cx2, cy2]


def _flags(ann: Dict[str, Any], where: str, log: ProblemLog) -> Optional[Dict[str, int]]:
    """``iscrowd`` / ``difficult`` as 0/1 (absent = 0) and ``ignore`` when it is 1, or None
    after an error: each must be 0 or 1 (``true``/``false`` too); ``"1"``, 2 or 0.5 are
    refused rather than guessed (a wrong guess would train on or score an ignore region)."""
    crowd, difficult, ignore = ann.get("iscrowd", 0), ann.get("difficult", 0), ann.get("ignore", 0)
    for key, value in (("iscrowd", crowd), ("difficult", difficult), ("ignore", ignore)):
        if value not in (0, 1):  # also refuses "1", None, [] and 0.5
            log.error(_FLAG_KINDS[key], where, f"{key!r} must be 0 or 1, got {_short(value)}")
            return None
    flags = {"iscrowd": int(crowd), "difficult": int(difficult)}
    if ignore:  # only where set: the record format has no such field otherwise
        flags["ignore"] = 1
    return flags


def _area(ann: Dict[str, Any], where: str, log: ProblemLog) -> Tuple[bool, Optional[float]]:
    """``(ok, area)``: the json's ``area`` (the COCO size ranges APs/APm/APl use it), None
    when missing or 0 (the evaluator then uses the box area; counted as ``area_missing``);
    ``ok`` False after an error (negative, not a finite number)."""
    if "area" not in ann:
        log.warn("area_missing", where, "no 'area': the box area is used for the COCO size ranges (APs/APm/APl)")
        return True, None
    area = _as_float(ann["area"])
    if area is None or area < 0:
        log.error("bad_area", where, f"'area' must be a finite number >= 0, got {_short(ann['area'])}")
        return False, None
    if area == 0:
        log.warn("area_missing", where, "'area' is 0: the box area is used for the COCO size ranges (APs/APm/APl)")
        return True, None
    return True, area


def parse_coco_json(
    json_file: PathLike,
    image_root: PathLike,
    *,
    allow_outside_root: bool = False,
    problems: Optional[ProblemLog] = None,
) -> CocoDataset:
    """Read a COCO instances json: records, class names and the category-id mapping (see
    `load_coco_json` for the rules; this is its implementation without the metadata)."""
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    log = problems if problems is not None else ProblemLog(strict=True)
    before = dict(log.counts)
    data = _read_json(json_file)
    if not isinstance(data, dict):
        raise DatasetError(f"{json_file}: not a COCO detection file (top level is a {type(data).__name__}, not an object)")
    images = _list_field(data, "images", json_file)
    categories = _list_field(data, "categories", json_file)
    anns = _list_field(data, "annotations", json_file, required=False)

    names_by_id = _parse_categories(categories, json_file, log)
    cat_ids = sorted(names_by_id, key=lambda c: (isinstance(c, str), c))
    thing_classes = [names_by_id[c] for c in cat_ids]
    id_map = {cid: i for i, cid in enumerate(cat_ids)}

    records_by_id, rejected = _parse_images(images, json_file, image_root, allow_outside_root, log)

    ann_ids: set = set()
    n_ignored = n_ann = 0
    raw_boxes: List[List[float]] = []  # as written, for the convention statistics
    raw_hw: List[Tuple[int, int]] = []
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            log.error("bad_annotation", f"{json_file}: annotations[{i}]", f"not an object: {_short(ann)}")
            continue
        ann_id = ann.get("id")
        where = f"{json_file}: annotation {repr(ann_id) if _is_id(ann_id) else f'#{i}'}"
        if "id" in ann and not _is_id(ann_id):
            log.error("bad_annotation", where, f"'id' must be an integer or a string, got {_short(ann_id)}")
            continue
        if ann_id in ann_ids:
            log.warn("duplicate_annotation_id", where, "annotation id appears more than once")
        elif ann_id is not None:
            ann_ids.add(ann_id)
        img_id = ann.get("image_id")
        if _is_id(img_id) and img_id in rejected:
            continue
        if not _is_id(img_id) or img_id not in records_by_id:
            log.error("annotation_unknown_image", where, f"image_id {_short(img_id)} is not in 'images'")
            continue
        cat = ann.get("category_id")
        if not _is_id(cat) or cat not in id_map:
            log.error("unknown_category", where, f"category_id {_short(cat)} is not in 'categories' (ids {cat_ids})")
            continue
        bbox = ann.get("bbox")
        values = _bbox_values(bbox)
        if values is None:
            log.error("bad_bbox", where, f"'bbox' must be 4 numbers [x, y, w, h], got {_short(bbox)}")
            continue
        flags = _flags(ann, where, log)
        if flags is None:
            continue
        area_ok, area = _area(ann, where, log)
        if not area_ok:
            continue
        record = records_by_id[img_id]
        raw_boxes.append(values)
        raw_hw.append((record["height"], record["width"]))
        box = _clipped_box(bbox, values, record["width"], record["height"], where, log)
        if box is None:
            continue
        entry = {"bbox": box, "category_id": id_map[cat], **flags}
        if area is not None and area != (box[2] - box[0]) * (box[3] - box[1]):  # e.g. a mask's area
            entry["area"] = area
        n_ignored += int(bool(flags["iscrowd"] or flags["difficult"] or "ignore" in flags))
        n_ann += 1
        record["annotations"].append(entry)

    records = [records_by_id[k] for k in sorted(records_by_id, key=lambda k: (isinstance(k, str), k))]
    if raw_boxes:
        check_box_convention(np.asarray(raw_boxes), np.asarray(raw_hw), "xywh", json_file, log, logger)
    counts = {kind: n - before.get((sev, kind), 0) for (sev, kind), n in log.counts.items() if sev == "warning"}
    n_dropped = sum(counts.get(k, 0) for k in ("box_not_finite", "box_empty", "box_outside_image"))
    if n_dropped or counts.get("box_clipped"):
        logger.warning(
            "%s: dropped %d box(es) with zero/negative size, NaN/inf or entirely outside the image; "
            "clipped %d box(es) to the image",
            json_file,
            n_dropped,
            counts.get("box_clipped", 0),
        )
    log.log_warnings(logger, json_file, since=before, level=logging.INFO)  # per kind, with an example
    logger.info(
        "Loaded %d images, %d boxes (%d crowd/ignore/difficult) in %d classes from %s",
        len(records),
        n_ann,
        n_ignored,
        len(thing_classes),
        json_file,
    )
    return CocoDataset(records, thing_classes, id_map)


def load_coco_json(
    json_file: PathLike,
    image_root: PathLike,
    dataset_name: Optional[str] = None,
    *,
    allow_outside_root: bool = False,
    problems: Optional[ProblemLog] = None,
) -> List[Dict[str, Any]]:
    """Read a COCO instances json into litedet records.

    - Category ids are mapped to contiguous ids ``0..K-1`` in increasing id order; with
      ``dataset_name`` the class names and the mapping are stored in its metadata
      (``thing_classes``, ``thing_dataset_id_to_contiguous_id``) for the evaluator, which
      must map predictions back.
    - Boxes go from ``[x, y, w, h]`` to ``[x1, y1, x2, y2]``. Boxes with ``w <= 0`` or
      ``h <= 0``, non-finite numbers or lying entirely outside the image are dropped;
      boxes reaching outside the image are clipped to it. Each kind is counted and
      reported with one warning line (they would break box regression). Boxes that look
      normalised or written as ``[x1, y1, x2, y2]`` are warned about
      (`detection.data.conventions.check_box_convention`).
    - ``iscrowd``, ``ignore`` and ``difficult`` (each 0/1, absent = 0) are kept: a box with
      any of them is an ignore region for training and evaluation alike
      (`detection.data.conventions`). ``area`` (> 0) is kept for the evaluator's size
      ranges; missing or 0, the box area is used (counted as ``area_missing``).
      Annotation ``id`` values are optional (the evaluator numbers boxes itself); a repeated
      one is warned about.
    - Images without annotations are kept: they are the negatives.
    - Errors raise `DatasetError` naming the file and the entry: a file that is not
      regular, invalid JSON (line and column), missing ``images``/``categories``, no
      category at all, malformed image entries, duplicate image or category ids,
      annotations of absent images or unknown categories, a bbox that is not 4 numbers,
      a bad ``iscrowd``/``ignore``/``difficult``/``area``/``id``, and ``file_name`` paths
      leaving ``image_root`` (unless ``allow_outside_root``).
    - ``problems``: a `ProblemLog`; pass ``ProblemLog(strict=False)`` to collect every
      problem instead of stopping at the first error (entries in error are left out).
    """
    parsed = parse_coco_json(json_file, image_root, allow_outside_root=allow_outside_root, problems=problems)
    if dataset_name is not None:
        from .catalog import MetadataCatalog

        MetadataCatalog.get(dataset_name).set(
            thing_classes=parsed.thing_classes, thing_dataset_id_to_contiguous_id=parsed.dataset_id_to_contiguous_id
        )
    return parsed.records


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
