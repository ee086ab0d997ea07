"""Metric helpers shared by the evaluators: the PASCAL VOC AP computation and table formatting.

The VOC functions are kept free of any evaluator state so that the protocol can be unit-tested
with hand-computed precision/recall curves, and so that other tools (e.g. a per-class error
analysis script) can reuse exactly the numbers the evaluator reports.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
from tabulate import tabulate

__all__ = [
    "VOCClassResult",
    "voc_ap",
    "voc_box_iou",
    "voc_eval_class",
    "create_small_table",
    "per_class_table",
    "print_csv_format",
]

logger = logging.getLogger(__name__)


def voc_ap(rec: Sequence[float] | np.ndarray, prec: Sequence[float] | np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision of one class from its cumulative recall/precision (fractions, not %).

    ``use_07_metric=True`` is the VOC2007 11-point interpolated AP: the mean over
    t in {0, 0.1, ..., 1} of the best precision at recall >= t. The thresholds come from
    ``np.arange(0.0, 1.1, 0.1)`` exactly as in the official Python port used by
    py-faster-rcnn/detectron2, so 0.3, 0.6 and 0.7 are really 0.30000000000000004 etc.; this
    keeps our numbers bit-compatible with those tools (it matters only when a recall value
    lands exactly on such a threshold).

    ``use_07_metric=False`` is the VOC2010+ metric: the exact area under the precision envelope
    (precision made monotonically non-increasing in recall), summed over the recall steps.
    """
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        # Sum first, divide once: 11 x (1/11) would give 1.0000000000000002 for a perfect class.
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            total += float(np.max(prec[rec >= t])) if np.any(rec >= t) else 0.0
        return total / 11.0
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    # Precision envelope: max precision at any recall >= this one.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def voc_box_iou(box: np.ndarray, boxes: np.ndarray, plus_one: bool) -> np.ndarray:
    """IoU of one XYXY box against ``boxes`` [M, 4].

    ``plus_one=True`` is the VOC devkit convention for *inclusive integer pixel indices*
    (a box from x1=1 to x2=1 is one pixel wide); ``plus_one=False`` treats coordinates as
    continuous (width = x2 - x1), which is what a record whose x1/y1 were shifted by -1 at load
    time (detectron2's VOC loader) represents.
    """
    if boxes.size == 0:
        return np.zeros((0,), dtype=np.float64)
    o = 1.0 if plus_one else 0.0
    ixmin = np.maximum(boxes[:, 0], box[0])
    iymin = np.maximum(boxes[:, 1], box[1])
    ixmax = np.minimum(boxes[:, 2], box[2])
    iymax = np.minimum(boxes[:, 3], box[3])
    iw = np.maximum(ixmax - ixmin + o, 0.0)
    ih = np.maximum(iymax - iymin + o, 0.0)
    inters = iw * ih
    area_det = (box[2] - box[0] + o) * (box[3] - box[1] + o)
    area_gt = (boxes[:, 2] - boxes[:, 0] + o) * (boxes[:, 3] - boxes[:, 1] + o)
    uni = area_det + area_gt - inters
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(uni > 0, inters / uni, 0.0)
    return iou


@dataclass
class VOCClassResult:
    """Everything the VOC protocol computes for one class (fractions, not %)."""

    npos: int  # non-difficult ground-truth boxes
    tp: np.ndarray  # per detection, in descending score order (1 = true positive)
    fp: np.ndarray  # per detection, in descending score order (1 = false positive)
    rec: np.ndarray  # cumulative recall
    prec: np.ndarray  # cumulative precision
    ap: float  # VOC2010+ area AP; nan when npos == 0
    ap07: float  # VOC2007 11-point AP; nan when npos == 0


def voc_eval_class(
    det_image_ids: Sequence[Hashable],
    det_scores: Sequence[float] | np.ndarray,
    det_boxes: Sequence[Sequence[float]] | np.ndarray,
    gt: Mapping[Hashable, tuple[np.ndarray, np.ndarray]],
    *,
    iou_thresh: float = 0.5,
    iou_plus_one: bool = False,
) -> VOCClassResult:
    """The PASCAL VOC matching protocol for one class.

    ``gt`` maps image id -> (boxes [M, 4] XYXY, difficult [M] bool) for this class.
    Detections are visited in descending score (stable sort, so ties keep input order as the
    MATLAB devkit does). Each detection is compared with every GT box of its image, difficult
    ones included, and takes the one with the highest IoU; if that IoU is > ``iou_thresh``:
    a difficult GT makes the detection *ignored* (neither TP nor FP), an unclaimed GT makes it a
    TP and claims the GT, an already claimed GT makes it a FP (duplicate). Otherwise it is a FP.
    Difficult boxes do not count in ``npos``. This mirrors VOCevaldet.m / detectron2's voc_eval.
    """
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    if len(det_image_ids) != len(scores) or len(scores) != len(boxes):
        raise ValueError(
            f"detections disagree in length: {len(det_image_ids)} image ids, {len(scores)} scores, {len(boxes)} boxes"
        )
    npos = int(sum(int(np.count_nonzero(~np.asarray(d, dtype=bool))) for _, d in gt.values()))
    claimed = {k: np.zeros(len(v[0]), dtype=bool) for k, v in gt.items()}

    order = np.argsort(-scores, kind="stable")
    nd = len(order)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    empty_boxes = np.zeros((0, 4))
    for d, i in enumerate(order):
        img = det_image_ids[i]
        gt_boxes, gt_difficult = gt.get(img, (empty_boxes, np.zeros(0, dtype=bool)))
        ious = voc_box_iou(boxes[i], np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4), iou_plus_one)
        if ious.size and ious.max() > iou_thresh:
            j = int(ious.argmax())
            if gt_difficult[j]:
                continue  # ignored: neither TP nor FP
            if not claimed[img][j]:
                tp[d] = 1.0
                claimed[img][j] = True
            else:
                fp[d] = 1.0
        else:
            fp[d] = 1.0

    keep = (tp + fp) > 0  # drop ignored detections from the PR curve
    ctp = np.cumsum(tp[keep])
    cfp = np.cumsum(fp[keep])
    if npos > 0:
        rec = ctp / float(npos)
    else:
        rec = np.full_like(ctp, np.nan)
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    if npos == 0:
        ap = ap07 = float("nan")
    else:
        ap = voc_ap(rec, prec, use_07_metric=False)
        ap07 = voc_ap(rec, prec, use_07_metric=True)
    return VOCClassResult(npos=npos, tp=tp, fp=fp, rec=rec, prec=prec, ap=ap, ap07=ap07)


def create_small_table(small_dict: Mapping[str, float], floatfmt: str = ".3f") -> str:
    """One-row table (keys as header) for a handful of metrics, like detectron2's helper."""
    keys, values = tuple(zip(*small_dict.items())) if small_dict else ((), ())
    return tabulate([values], headers=keys, tablefmt="pipe", floatfmt=floatfmt, numalign="left", stralign="center")


def per_class_table(
    rows: Mapping[str, Mapping[str, float]],
    class_names: Sequence[str],
    *,
    mean_key: str = "mAP",
    floatfmt: str = ".1f",
) -> str:
    """Wide table with one column per class, like the VOC result tables in papers.

    ``rows`` maps a row label (e.g. "AP50") to {mean_key: value, class_name: value, ...}.
    """
    headers = ["metric", mean_key] + list(class_names)
    table = [
        [label, vals.get(mean_key, float("nan"))] + [vals.get(c, float("nan")) for c in class_names]
        for label, vals in rows.items()
    ]
    return tabulate(table, headers=headers, tablefmt="pipe", floatfmt=floatfmt, numalign="left", stralign="center")


def print_csv_format(results: Mapping[str, Mapping[str, float]]) -> None:
    """Log the headline metrics of each task in a copy-paste-able CSV form (detectron2 UX).

    Per-class entries (keys containing "-") are skipped to keep the line short.
    """
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a mapping, got {type(results).__name__}")
    for task, res in results.items():
        if isinstance(res, Mapping):
            important = OrderedDict((k, v) for k, v in res.items() if "-" not in k)
            logger.info("copypaste: Task: %s", task)
            logger.info("copypaste: %s", ",".join(important.keys()))
            logger.info("copypaste: %s", ",".join(f"{float(v):.4f}" for v in important.values()))
        else:
            logger.info("copypaste: %s=%s", task, res)

