"""PASCAL VOC detection mAP@0.5, both the VOC2007 11-point and the VOC2010+ area metric.

Ground truth comes from the dataset records (not from re-reading the XML files as detectron2
does), so any dataset in litedet's record format can be scored with the VOC protocol, and the
evaluator never disagrees with what the training loader saw.

Box convention (``iou_plus_one``): the devkit's "+1" (width = x2 - x1 + 1) is right for
*inclusive integer pixel indices*, i.e. the raw numbers in VOC XML files. A loader that follows
detectron2 subtracts 1 from x1/y1 at load time, turning those indices into continuous
coordinates (width = x2 - x1); detectron2's evaluator then adds the 1 back to the predictions
and compares with the raw XML using "+1", which is algebraically identical to continuous IoU
on the records (``iou_plus_one=False``). Applying "+1" on top of the shifted records would
count the pixel twice. Hence the default ``iou_plus_one=False`` reproduces detectron2 /
devkit numbers for a detectron2-style VOC loader; pass ``True`` only when the records hold the
raw 1-based XML coordinates (the property is covered by a test).
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict, defaultdict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .evaluator import DatasetEvaluator, gather_to_main, is_main_process, prediction_arrays
from .metrics import VOCClassResult, per_class_table, voc_eval_class

__all__ = ["PascalVOCDetectionEvaluator"]

logger = logging.getLogger(__name__)


class PascalVOCDetectionEvaluator(DatasetEvaluator):
    """VOC protocol: per-class AP at IoU > 0.5, difficult objects ignored, duplicates are FP.

    Results (percent, 0-100) under the "bbox" task: ``AP50`` (VOC2010+ area mAP),
    ``AP50_07`` (VOC2007 11-point mAP), and ``AP50-<class>`` / ``AP50_07-<class>``. A class with
    no non-difficult ground truth has an undefined AP (NaN) and is left out of the means, with a
    warning. Every image of the dataset takes part (an unprocessed image simply has no
    detections, so its objects are misses).
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        *,
        dataset_dicts: Optional[Sequence[Mapping[str, Any]]] = None,
        thing_classes: Optional[Sequence[str]] = None,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        iou_thresh: float = 0.5,
        iou_plus_one: bool = False,
    ) -> None:
        if dataset_name is None and dataset_dicts is None:
            raise ValueError("PascalVOCDetectionEvaluator needs a dataset_name or dataset_dicts")
        self._dataset_name = dataset_name
        self._dataset_dicts = dataset_dicts
        self._thing_classes = list(thing_classes) if thing_classes is not None else None
        self._year: Optional[int] = None
        if dataset_name is not None:
            from detection.data import MetadataCatalog  # lazy: avoid importing the data stack at import time

            meta = MetadataCatalog.get(dataset_name)
            if self._thing_classes is None:
                self._thing_classes = list(meta.thing_classes)
            self._year = getattr(meta, "year", None)
        if not self._thing_classes:
            raise ValueError("thing_classes are required (argument or dataset metadata)")
        self._output_dir = output_dir
        self._distributed = distributed
        self._iou_thresh = float(iou_thresh)
        self._iou_plus_one = bool(iou_plus_one)
        self._gt_cache: Optional[List[Dict[Any, Tuple[np.ndarray, np.ndarray]]]] = None
        self._gt_images: set = set()
        self.class_results: Dict[str, VOCClassResult] = {}
        self._predictions: Dict[int, List[Tuple[Any, float, List[float]]]] = defaultdict(list)

    def reset(self) -> None:
        self._predictions = defaultdict(list)

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> None:
        """Bucket detections per class as (image_id, score, xyxy box)."""
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            boxes, scores, labels = prediction_arrays(image_id, out)
            for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                self._predictions[int(label)].append((image_id, score, box))

    def _ground_truth(self) -> List[Dict[Any, Tuple[np.ndarray, np.ndarray]]]:
        """Per class: image_id -> (boxes [M,4], difficult [M]) for images holding that class (built once)."""
        if self._gt_cache is not None:
            return self._gt_cache
        if self._dataset_dicts is not None:
            records = self._dataset_dicts
        else:
            from detection.data import DatasetCatalog

            records = DatasetCatalog.get(self._dataset_name)
        from detection.data.conventions import usable_annotation

        num_classes = len(self._thing_classes)
        per_class: List[Dict[Any, Tuple[list, list]]] = [dict() for _ in range(num_classes)]
        n_crowd = 0
        images = set()
        for rec in records:
            image_id = rec["image_id"]
            images.add(image_id)
            for ann in rec.get("annotations", []):
                c = int(ann["category_id"])
                if not 0 <= c < num_classes:
                    raise ValueError(f"image {image_id!r}: category_id {c} is outside 0..{num_classes - 1}")
                # Every ignore region is "difficult" here: neither required nor penalised. VOC has
                # no crowd notion; crowd and COCO "ignore" boxes are closest to it.
                difficult = not usable_annotation(ann)
                n_crowd += int(difficult and not ann.get("difficult", 0))
                boxes, diff = per_class[c].setdefault(image_id, ([], []))
                boxes.append([float(v) for v in ann["bbox"]])
                diff.append(difficult)
        if n_crowd:
            logger.info("%d crowd/ignore annotations are treated as 'difficult' by the VOC protocol", n_crowd)
        self._gt_images = images
        self._gt_cache = [
            {k: (np.asarray(b, dtype=np.float64).reshape(-1, 4), np.asarray(d, dtype=bool)) for k, (b, d) in m.items()}
            for m in per_class
        ]
        return self._gt_cache

    def prepare(self) -> None:
        """Build the ground truth now, so that a problem with it surfaces before inference."""
        if not self._distributed or is_main_process():
            self._ground_truth()

    def evaluate(self) -> dict:
        predictions: Mapping[int, List[Tuple[Any, float, List[float]]]] = self._predictions
        if self._distributed:
            gathered = gather_to_main(dict(self._predictions))
            if gathered is None:
                return {}
            merged: Dict[int, list] = defaultdict(list)
            for part in gathered:
                for label, dets in part.items():
                    merged[label].extend(dets)
            predictions = merged

        gt = self._ground_truth()
        names = self._thing_classes
        unknown = sorted(set(predictions) - set(range(len(names))))
        if unknown:
            logger.warning("predictions with labels %s outside the %d classes are ignored", unknown, len(names))
        gt_images = self._gt_images
        n_foreign = sum(1 for dets in predictions.values() for d in dets if d[0] not in gt_images)
        if n_foreign:
            logger.warning(
                "%d detections refer to images that are not in the dataset; they count as false positives", n_foreign
            )

        self.class_results = {}
        for c, name in enumerate(names):
            dets = predictions.get(c, [])
            self.class_results[name] = voc_eval_class(
                [d[0] for d in dets],
                [d[1] for d in dets],
                [d[2] for d in dets],
                gt[c],
                iou_thresh=self._iou_thresh,
                iou_plus_one=self._iou_plus_one,
            )

        ap = {n: r.ap * 100.0 for n, r in self.class_results.items()}
        ap07 = {n: r.ap07 * 100.0 for n, r in self.class_results.items()}
        undefined = [n for n, v in ap.items() if not np.isfinite(v)]
        if undefined:
            logger.warning("classes without non-difficult ground truth (AP undefined, left out of mAP): %s", undefined)
        defined = [n for n in names if n not in undefined]
        m_ap = float(np.mean([ap[n] for n in defined])) if defined else float("nan")
        m_ap07 = float(np.mean([ap07[n] for n in defined])) if defined else float("nan")

        results: "OrderedDict[str, float]" = OrderedDict()
        results["AP50"] = m_ap
        results["AP50_07"] = m_ap07
        for n in names:
            results[f"AP50-{n}"] = ap[n]
        for n in names:
            results[f"AP50_07-{n}"] = ap07[n]

        table = per_class_table(
            OrderedDict(
                [
                    ("AP50 (VOC2010+ area)", dict(ap, mAP=m_ap)),
                    ("AP50 (VOC07 11-point)", dict(ap07, mAP=m_ap07)),
                ]
            ),
            names,
        )
        logger.info(
            "PASCAL VOC detection results (IoU > %.2f, %s pixel convention):\n%s",
            self._iou_thresh,
            "+1 inclusive" if self._iou_plus_one else "continuous",
            table,
        )
        if self._year is not None and int(self._year) == 2007:
            # Both metrics are always reported; say which one papers quote for VOC2007 test.
            logger.info("VOC2007: the metric usually reported is the 11-point AP50_07 = %.2f", m_ap07)

        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            payload = {
                "iou_thresh": self._iou_thresh,
                "iou_plus_one": self._iou_plus_one,
                "mAP": _json_float(m_ap),
                "mAP_07": _json_float(m_ap07),
                "per_class": {
                    n: {
                        "AP50": _json_float(ap[n]),
                        "AP50_07": _json_float(ap07[n]),
                        "num_gt": int(r.npos),
                        "num_detections": int(len(r.tp)),
                        "true_positives": int(r.tp.sum()),
                        "false_positives": int(r.fp.sum()),
                    }
                    for n, r in self.class_results.items()
                },
            }
            path = os.path.join(self._output_dir, "voc_detection_results.json")
            with open(path, "w") as f:
                json.dump(payload, f, indent=2)
            logger.info("Saved per-class VOC results to %s", path)
        return {"bbox": dict(results)}


def _json_float(v: float) -> Optional[float]:
    """JSON has no NaN; undefined APs are written as null."""
    return float(v) if np.isfinite(v) else None
