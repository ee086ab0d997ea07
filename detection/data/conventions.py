"""The annotation conventions every loader, the mapper, ``check_dataset`` and the evaluators
share: which boxes are ground truth, and dataset-level plausibility warnings.

**One ground-truth rule.** A box flagged ``iscrowd`` (COCO), ``difficult`` (VOC, or a COCO
``difficult`` field) or ``ignore`` (a COCO ``ignore`` field, as LVIS/Objects365 write it) is
an *ignore region*: training does not learn from it, and evaluation neither requires nor
penalises detections on it (COCO metrics: a crowd region; VOC metrics: a difficult
object). Every other box is ground truth, for training and evaluation alike.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import numpy as np

from .errors import ProblemLog

__all__ = ["IGNORE_FLAGS", "usable_annotation", "check_box_convention", "MIN_PLAUSIBLE_SIDE"]

#: Record fields that make a box an ignore region (see the module docstring).
IGNORE_FLAGS = ("iscrowd", "difficult", "ignore")
#: Images at least this large cannot hold only boxes of at most one pixel by accident.
MIN_PLAUSIBLE_SIDE = 16
#: Fewest boxes for the ``[x1, y1, x2, y2]``-written-as-``[x, y, w, h]`` statistics.
_MIN_BOXES_FOR_LAYOUT = 4


def usable_annotation(ann: Mapping[str, Any]) -> bool:
    """A ground-truth box (not an ignore region): what training learns from and what
    evaluation scores."""
    # IGNORE_FLAGS spelled out: this runs for every box of every load and evaluation
    return not (ann.get("iscrowd", 0) or ann.get("difficult", 0) or ann.get("ignore", 0))


def check_box_convention(
    boxes: np.ndarray,
    image_hw: np.ndarray,
    layout: str,
    where: str,
    log: ProblemLog,
    logger: Optional[logging.Logger] = None,
) -> None:
    """Warn (counted in ``log``, and a logger WARNING) when a file's boxes as written look like
    another convention than the one litedet reads:

    - ``normalised_boxes``: every coordinate is in [0, 1] on images of at least
      `MIN_PLAUSIBLE_SIDE` pixels: relative coordinates, where absolute pixels are expected;
    - ``xyxy_boxes`` (``layout == "xywh"``, COCO): every box has ``w > x`` and ``h > y`` and
      at least a quarter reach past the image: ``[x1, y1, x2, y2]`` written where COCO
      expects ``[x, y, w, h]``.

    ``boxes``: ``[N, 4]`` as written in the file; ``image_hw``: ``[N, 2]`` each box's image size.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    image_hw = np.asarray(image_hw, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(boxes).all(axis=1)
    boxes, image_hw = boxes[finite], image_hw[finite]
    n = len(boxes)
    if n == 0:
        return
    found = []
    min_side = int(image_hw.min())
    if boxes.min() >= 0 and boxes.max() <= 1.0 and min_side >= MIN_PLAUSIBLE_SIDE:
        found.append((
            "normalised_boxes",
            f"all {n} boxes have coordinates in [0, 1] on images of at least {min_side} pixels a side: normalised "
            "coordinates? litedet reads absolute pixels (multiply by the image width/height)",
        ))
    if layout == "xywh" and n >= _MIN_BOXES_FOR_LAYOUT:
        x, y, w, h = boxes.T
        past = (x + w > image_hw[:, 1]) | (y + h > image_hw[:, 0])
        if ((w > x) & (h > y)).all() and past.mean() >= 0.25:
            found.append((
                "xyxy_boxes",
                f"{int(past.sum())} of {n} boxes reach past the image when read as COCO [x, y, w, h], and every box "
                "has w > x and h > y: [x1, y1, x2, y2] boxes? (COCO bbox is [x, y, width, height])",
            ))
    for kind, message in found:
        log.warn(kind, where, message)
        if logger is not None:
            logger.warning("%s: %s", where, message)
