"""COCO-format annotation loading into litedet records.

Record format (shared by every loader; see `detection.data`):
``{"file_name", "image_id", "height", "width", "annotations": [{"bbox": [x1, y1, x2, y2],
"category_id": contiguous 0..K-1, "iscrowd", "difficult"}]}``.

COCO stores boxes as ``[x, y, w, h]`` with arbitrary category ids; both are normalised
here once so that nothing downstream has to know the source format.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Any, Dict, List, Optional, Union

__all__ = ["load_coco_json", "COCO_CATEGORIES"]

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


def _read_coco(json_file: str) -> Any:
    """Build a pycocotools ``COCO`` index, turning its failures into errors naming the file."""
    from pycocotools.coco import COCO

    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotation file not found: {json_file}")
    # pycocotools prints progress to stdout; route it to the log instead.
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            coco = COCO(json_file)
    except json.JSONDecodeError as err:
        raise ValueError(f"{json_file}: invalid JSON: {err}") from None
    except (AssertionError, KeyError, TypeError) as err:
        raise ValueError(f"{json_file}: not a COCO annotation file ({type(err).__name__}: {err})") from None
    for line in buf.getvalue().splitlines():
        if line.strip():
            logger.debug("pycocotools: %s", line.strip())
    for key in ("images", "categories"):
        if key not in coco.dataset:
            raise ValueError(f"{json_file}: not a COCO detection file (no {key!r} list)")
    return coco


def load_coco_json(
    json_file: PathLike, image_root: PathLike, dataset_name: Optional[str] = None
) -> List[Dict[str, Any]]:
    """Read a COCO instances json into litedet records.

    - Category ids are mapped to contiguous ids ``0..K-1`` in increasing id order; with
      ``dataset_name`` the class names and the mapping are stored in its metadata
      (``thing_classes``, ``thing_dataset_id_to_contiguous_id``) for the evaluator, which
      must map predictions back.
    - Boxes go from ``[x, y, w, h]`` to ``[x1, y1, x2, y2]``; boxes with ``w <= 0`` or
      ``h <= 0`` are dropped and boxes reaching outside the image are clipped to it (both
      counted and reported with one warning) because either would break box regression.
    - Images without annotations are kept: they are the negatives.
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    coco = _read_coco(json_file)

    cat_ids = sorted(coco.getCatIds())
    cats = coco.loadCats(cat_ids)
    thing_classes = [c["name"] for c in cats]
    id_map = {cid: i for i, cid in enumerate(cat_ids)}
    if len(cat_ids) == 0:
        logger.warning("%s: no categories", json_file)
    if dataset_name is not None:
        from .catalog import MetadataCatalog

        MetadataCatalog.get(dataset_name).set(
            thing_classes=thing_classes, thing_dataset_id_to_contiguous_id=id_map
        )

    img_ids = sorted(coco.imgs.keys())
    n_dropped = n_clipped = n_crowd = n_ann = 0
    records: List[Dict[str, Any]] = []
    for img_id in img_ids:
        img = coco.imgs[img_id]
        try:
            height, width, fname = int(img["height"]), int(img["width"]), str(img["file_name"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{json_file}: image entry {img_id!r} lacks a valid file_name/height/width ({err})") from None
        annotations = []
        for ann in coco.imgToAnns.get(img_id, []):
            if ann.get("ignore", 0) == 1:  # LVIS/Objects365-style "ignore this box"
                continue
            bbox = ann.get("bbox")
            if bbox is None or len(bbox) != 4:
                raise ValueError(f"{json_file}: annotation {ann.get('id')!r} of image {img_id!r} has no 4-number bbox")
            cat = ann.get("category_id")
            if cat not in id_map:
                raise ValueError(
                    f"{json_file}: annotation {ann.get('id')!r} uses category_id {cat!r}, "
                    f"which is not in 'categories' (ids {cat_ids})"
                )
            x, y, w, h = (float(v) for v in bbox)
            if not (w > 0 and h > 0):
                n_dropped += 1
                continue
            x1, y1, x2, y2 = x, y, x + w, y + h
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
            if cx2 <= cx1 or cy2 <= cy1:  # entirely outside the image
                n_dropped += 1
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                n_clipped += 1
            crowd = int(ann.get("iscrowd", 0))
            n_crowd += crowd
            n_ann += 1
            annotations.append(
                {
                    "bbox": [cx1, cy1, cx2, cy2],
                    "category_id": id_map[cat],
                    "iscrowd": crowd,
                    "difficult": int(ann.get("difficult", 0)),
                }
            )
        records.append(
            {
                "file_name": os.path.join(image_root, fname),
                "image_id": img_id,
                "height": height,
                "width": width,
                "annotations": annotations,
            }
        )
    if n_dropped or n_clipped:
        logger.warning(
            "%s: dropped %d box(es) with zero/negative size or entirely outside the image; "
            "clipped %d box(es) to the image",
            json_file,
            n_dropped,
            n_clipped,
        )
    logger.info(
        "Loaded %d images, %d boxes (%d crowd) in %d classes from %s",
        len(records),
        n_ann,
        n_crowd,
        len(thing_classes),
        json_file,
    )
    return records
