"""COCO-style box AP (AP@[.5:.95], AP50, AP75, APs/m/l, per-class AP) for any detection dataset.

Ground truth is always what the dataset's loader kept (`detection.data` records), converted
in memory (`convert_to_coco_dict`): the same boxes training saw (clipped, degenerate ones
dropped), the same ignore regions (crowd, ``ignore`` and ``difficult`` boxes become COCO crowd
regions, `detection.data.conventions`), the json's own ``area`` where it has one. A COCO json
given by path is read by the same loader (`detection.data.coco.parse_coco_json`), never by a
second parser with other rules. Image, category and annotation ids are made what the COCO
protocol needs (integers, unique, annotation ids from 1), so a dataset the loader accepts can
always be scored. Two interchangeable backends: ``faster`` (the default: box AP computed with
numpy from arrays, ``fast_coco.py``, ground truth indexed once per evaluator) and the reference
``pycocotools``; they give the same numbers.
"""
from __future__ import annotations

import contextlib
import gc
import io
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from .evaluator import DatasetEvaluator, gather_to_main, is_main_process, prediction_arrays
from .fast_coco import BoxGroundTruth, evaluate_boxes, fast_path_available
from .metrics import create_small_table

__all__ = ["COCOEvaluator", "convert_to_coco_dict", "COCO_METRIC_NAMES", "COCO_STAT_NAMES"]

logger = logging.getLogger(__name__)

COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Order of ``COCOeval.stats`` (both backends).
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_BACKENDS = ("faster", "pycocotools")


def convert_to_coco_dict(
    records: Sequence[Mapping[str, Any]],
    thing_classes: Sequence[str],
    *,
    contiguous_to_dataset_id: Optional[Mapping[int, int]] = None,
) -> dict:
    """Turn litedet dataset records into a COCO ground-truth dict (in memory).

    Boxes go from absolute XYXY to COCO XYWH; ``area`` is the record's (a COCO json's own
    value) or the box area. Every ignore region (``iscrowd``, ``difficult`` or ``ignore`` set,
    `detection.data.conventions`) becomes a COCO crowd region, which absorbs detections
    instead of counting as a miss. Annotation ids are 1..N (pycocotools treats a matched id 0
    as "unmatched" and collapses repeated ids). Category ids are the dataset ids when a
    contiguous->dataset mapping is given, else the contiguous ids. Image ids are taken from the
    records as they are (the caller remaps non-integer ids, see ``COCOEvaluator``).
    """
    from detection.data.conventions import usable_annotation  # lazy: the data package imports heavy deps

    if contiguous_to_dataset_id is None:
        contiguous_to_dataset_id = {i: i for i in range(len(thing_classes))}
    categories = [
        {"id": int(contiguous_to_dataset_id[i]), "name": str(name)} for i, name in enumerate(thing_classes)
    ]
    images: List[dict] = []
    annotations: List[dict] = []
    for rec in records:
        images.append(
            {
                "id": rec["image_id"],
                "width": int(rec.get("width", 0)),
                "height": int(rec.get("height", 0)),
                "file_name": str(rec.get("file_name", "")),
            }
        )
        for ann in rec.get("annotations", []):
            x1, y1, x2, y2 = map(float, ann["bbox"])
            w, h = x2 - x1, y2 - y1
            cat = int(ann["category_id"])
            if cat not in contiguous_to_dataset_id:
                raise ValueError(
                    f"image {rec['image_id']!r}: category_id {cat} is outside 0..{len(thing_classes) - 1}"
                )
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": rec["image_id"],
                    "category_id": int(contiguous_to_dataset_id[cat]),
                    "bbox": [x1, y1, w, h],
                    "area": float(ann["area"]) if "area" in ann else max(w, 0.0) * max(h, 0.0),
                    "iscrowd": int(not usable_annotation(ann)),
                }
            )
    return {
        "info": {"description": "converted in memory by litedet"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def _is_int_id(v: Any) -> bool:
    """An id the COCO protocol's arrays can hold: an integer within int64."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and _INT64_MIN <= int(v) <= _INT64_MAX


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class COCOEvaluator(DatasetEvaluator):
    """Box AP with the COCO protocol, reported in percent (0-100) like detectron2.

    Ground-truth source, first match wins: ``dataset_dicts`` argument; ``json_file`` argument
    (read by litedet's COCO loader); the dataset's ``DatasetCatalog`` records. Model labels
    (contiguous, 0-based) are mapped to dataset category ids through
    ``thing_dataset_id_to_contiguous_id`` when those are integers (the results file then holds
    the dataset's ids), else to the contiguous ids. Evaluation covers every image of the
    ground truth, as the official protocol does; images never processed count as images with
    no detections (a warning says how many). A ground truth without any box that is not an
    ignore region gives NaN metrics and a warning (there is nothing to score).

    ``prepare()`` builds the ground truth up front, so that a problem with it is reported
    before inference rather than after (`inference_on_dataset` and the trainer call it).

    After ``evaluate`` the raw 12-number ``COCOeval.stats`` vector (fractions, -1 = undefined)
    is kept in ``self.stats`` and the precision array in ``self.precision``.
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        *,
        output_dir: Optional[str] = None,
        dataset_dicts: Optional[Sequence[Mapping[str, Any]]] = None,
        thing_classes: Optional[Sequence[str]] = None,
        json_file: Optional[str] = None,
        backend: str = "faster",
        distributed: bool = True,
    ) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"unknown COCO backend {backend!r}; choose one of {_BACKENDS}")
        if dataset_name is None and dataset_dicts is None and json_file is None:
            raise ValueError("COCOEvaluator needs a dataset_name, dataset_dicts or a json_file for the ground truth")
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._dataset_dicts = dataset_dicts
        self._thing_classes = list(thing_classes) if thing_classes is not None else None
        self._json_file = json_file
        self._backend = backend
        self._distributed = distributed
        self._id_map: Optional[Mapping[Any, int]] = None  # dataset category id -> contiguous
        if dataset_name is not None:
            meta = self._metadata()
            if self._thing_classes is None:
                self._thing_classes = list(getattr(meta, "thing_classes", []) or []) or None
            self._id_map = getattr(meta, "thing_dataset_id_to_contiguous_id", None) or None
        self._gt_cache: Optional[dict] = None  # built lazily: loading a large json is not free
        self._box_gt: Optional[BoxGroundTruth] = None  # ground truth indexed for the fast path
        self._fast_path_ok: Optional[bool] = None
        self._image_id_remap: Optional[Dict[Any, int]] = None
        self._contig_to_cat: Dict[int, int] = {}
        self.stats: Optional[np.ndarray] = None
        self.precision: Optional[np.ndarray] = None
        self._predictions: List[dict] = []
        self._processed_ids: List[Any] = []

    # ------------------------------------------------------------------ catalog access (lazy)
    def _metadata(self) -> Any:
        from detection.data import MetadataCatalog  # lazy: the data package imports heavy deps

        return MetadataCatalog.get(self._dataset_name)

    def _records(self) -> Sequence[Mapping[str, Any]]:
        """The ground-truth records, and the class names / id mapping where they come with them."""
        if self._dataset_dicts is not None:
            return self._dataset_dicts
        from detection.data import DatasetCatalog

        if self._json_file is None:
            records = DatasetCatalog.get(self._dataset_name)
            meta = self._metadata()  # a COCO loader fills these in while loading
            if self._thing_classes is None:
                self._thing_classes = list(getattr(meta, "thing_classes", None) or []) or None
            self._id_map = self._id_map or getattr(meta, "thing_dataset_id_to_contiguous_id", None)
            return records
        from detection.data.coco import parse_coco_json

        # Only the annotations are needed: file names are not opened, wherever they point.
        parsed = parse_coco_json(self._json_file, os.path.dirname(self._json_file), allow_outside_root=True)
        if self._thing_classes is None:
            self._thing_classes = parsed.thing_classes
        self._id_map = parsed.dataset_id_to_contiguous_id
        return parsed.records

    # ------------------------------------------------------------------ evaluator API
    def reset(self) -> None:
        self._predictions = []
        self._processed_ids = []

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> None:
        """Store each output as arrays (XYWH float64 boxes, scores, labels) keyed by the raw image
        id; the COCO result dicts are built once in ``evaluate`` (per-box dicts here would cost
        more than the whole COCO evaluation on large sets)."""
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            self._processed_ids.append(image_id)
            boxes, scores, labels = prediction_arrays(image_id, out)
            boxes[:, 2:] -= boxes[:, :2]
            self._predictions.append((image_id, boxes, scores, labels))

    def prepare(self) -> None:
        """Build the ground truth now (on the process that evaluates): `DatasetError` and
        friends surface before inference instead of after it."""
        if not self._distributed or is_main_process():
            self._ground_truth()

    def evaluate(self, img_ids: Optional[Sequence[Any]] = None) -> dict:
        """Gather, convert, write ``coco_instances_results.json`` and compute box AP.

        ``img_ids`` restricts the evaluation to those (raw) image ids, e.g. for a partial pass.
        """
        # Hundreds of thousands of short-lived, acyclic dicts/lists are created below; the
        # cyclic garbage collector would rescan them again and again (~20 % of the time).
        with _gc_paused():
            return self._evaluate(img_ids)

    def _evaluate(self, img_ids: Optional[Sequence[Any]]) -> dict:
        predictions = self._predictions
        processed = self._processed_ids
        if self._distributed:
            gathered = gather_to_main((predictions, processed))
            if gathered is None:
                return {}
            predictions = list(itertools.chain.from_iterable(p for p, _ in gathered))
            processed = list(itertools.chain.from_iterable(i for _, i in gathered))

        gt = self._ground_truth()
        class_names = self._class_names()
        contig_to_cat = self._contig_to_cat
        remap = self._image_id_remap or {}
        gt_image_ids = {img["id"] for img in gt["images"]}

        # All detections as flat arrays in result order (image order, then the model's order).
        lut_size = max(contig_to_cat) + 1 if contig_to_cat else 0
        label_to_cat = np.full(lut_size, -1, dtype=np.int64)
        for contig, cat in contig_to_cat.items():
            if contig >= 0:
                label_to_cat[contig] = cat
        kept = []  # (image id, boxes, scores, labels) of predictions on ground-truth images
        dropped_image = 0
        for raw_id, boxes, scores, labels in predictions:
            image_id = remap.get(raw_id, raw_id)
            if image_id in gt_image_ids:
                kept.append((image_id, boxes, scores, labels))
            else:
                dropped_image += len(scores)
        if kept:
            counts = [len(k[2]) for k in kept]
            dt_image = np.repeat(np.asarray([k[0] for k in kept], dtype=np.int64), counts)
            dt_boxes = np.concatenate([k[1] for k in kept]).astype(np.float64, copy=False).reshape(-1, 4)
            dt_scores = np.concatenate([k[2] for k in kept]).astype(np.float64, copy=False)
            labels = np.concatenate([k[3] for k in kept]).astype(np.int64, copy=False)
        else:
            dt_image, labels, dt_scores, dt_boxes = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                                                     np.zeros((0, 4)))
        in_range = (labels >= 0) & (labels < lut_size)
        dt_cat = np.full(len(labels), -1, dtype=np.int64)
        dt_cat[in_range] = label_to_cat[labels[in_range]]
        known = dt_cat >= 0
        dropped_label = int(len(known) - known.sum())
        if dropped_label:
            dt_image, dt_cat, dt_boxes, dt_scores = dt_image[known], dt_cat[known], dt_boxes[known], dt_scores[known]
        if dropped_image:
            logger.warning("%d predictions refer to images that are not in the ground truth; ignored", dropped_image)
        if dropped_label:
            logger.warning(
                "%d predictions have labels outside the %d known classes; ignored", dropped_label, len(contig_to_cat)
            )
        n_unprocessed = len(gt_image_ids - {remap.get(i, i) for i in processed})
        if img_ids is None and n_unprocessed:
            logger.warning(
                "%d of %d ground-truth images were not processed; they count as images without detections",
                n_unprocessed,
                len(gt_image_ids),
            )

        use_fast_path = self._backend == "faster" and fast_path_available() and self._supports_fast_path(gt)
        coco_results: Optional[List[dict]] = None  # per-box dicts, only when something needs them
        if self._output_dir or not use_fast_path:
            coco_results = _result_dicts(dt_image, dt_cat, dt_boxes, dt_scores)
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            with open(path, "w") as f:
                json.dump(coco_results, f)
            logger.info("Saved %d detections to %s", len(dt_scores), path)

        if not any(a["iscrowd"] == 0 for a in gt["annotations"]):
            where = f"test set {self._dataset_name!r}" if self._dataset_name else "the ground truth"
            logger.warning(
                "%s has no ground-truth box (none at all, or only crowd/ignore/difficult regions): every COCO "
                "metric is undefined (NaN)", where,
            )
            self.stats = np.full(len(COCO_STAT_NAMES), -1.0)
            self.precision = None
            res = OrderedDict((m, float("nan")) for m in COCO_METRIC_NAMES)
            for name in class_names.values():
                res[f"AP-{name}"] = float("nan")
            return {"bbox": dict(res)}
        if not len(dt_scores):
            logger.warning("No predictions from the model! Reporting zeros.")
            self.stats = np.zeros(len(COCO_STAT_NAMES))
            self.precision = None
            res = OrderedDict((m, 0.0) for m in COCO_METRIC_NAMES)
            for name in class_names.values():
                res[f"AP-{name}"] = 0.0
            return {"bbox": dict(res)}

        eval_img_ids = None if img_ids is None else [remap.get(i, i) for i in img_ids]
        if use_fast_path:
            if self._box_gt is None:
                self._box_gt = BoxGroundTruth(gt)
            quiet = lambda *a, **k: None  # noqa: E731
            with contextlib.redirect_stdout(io.StringIO()):
                coco_eval = evaluate_boxes(self._box_gt, dt_image, dt_cat, dt_boxes, dt_scores, eval_img_ids, quiet)
        else:
            coco_eval = self._run_cocoeval(gt, coco_results, eval_img_ids)
        self.stats = np.asarray(coco_eval.stats, dtype=np.float64)[: len(COCO_STAT_NAMES)].copy()
        self.precision = np.asarray(coco_eval.eval["precision"])
        results = self._derive_results(self.stats, self.precision, list(coco_eval.params.catIds), class_names)
        return {"bbox": results}

    # ------------------------------------------------------------------ internals
    def _ground_truth(self) -> dict:
        """The COCO ground-truth dict from the records; built once per evaluator. Image ids
        are remapped to 1..N unless they are unique int64 integers (strings, e.g. VOC's
        "2007_000027", or huge numbers are not); category ids are the dataset's when those
        are int64 integers, else the contiguous ids."""
        if self._gt_cache is not None:
            return self._gt_cache
        records = list(self._records())
        if self._thing_classes is None:
            raise ValueError("thing_classes are needed to convert dataset records to COCO ground truth")
        ids = [r["image_id"] for r in records]
        if all(_is_int_id(i) for i in ids) and len(set(ids)) == len(ids):
            self._image_id_remap = None
        else:
            self._image_id_remap = {}
            for i in ids:
                self._image_id_remap.setdefault(i, len(self._image_id_remap) + 1)
            records = [dict(r, image_id=self._image_id_remap[r["image_id"]]) for r in records]
            seen: set = set()
            records = [r for r in records if not (r["image_id"] in seen or seen.add(r["image_id"]))]
        contig = range(len(self._thing_classes))
        id_map = self._id_map or {}
        if id_map and all(_is_int_id(k) for k in id_map) and sorted(id_map.values()) == list(contig):
            self._contig_to_cat = {int(v): int(k) for k, v in id_map.items()}
        else:  # no mapping, or string ids: the contiguous ids stand in for them
            self._contig_to_cat = {i: i for i in contig}
        gt = convert_to_coco_dict(records, self._thing_classes, contiguous_to_dataset_id=self._contig_to_cat)
        self._gt_cache = gt
        return gt

    def _supports_fast_path(self, gt: dict) -> bool:
        if self._fast_path_ok is None:
            self._fast_path_ok = BoxGroundTruth.supports(gt)
            if not self._fast_path_ok:  # pragma: no cover - the ground truth built here has integer ids
                logger.info("Ground truth has non-integer ids: using faster-coco-eval's Python path")
        return self._fast_path_ok

    def _class_names(self) -> Dict[int, str]:
        """Category id -> display name."""
        names = self._thing_classes or []
        return {cat: (names[c] if c < len(names) else str(cat)) for c, cat in sorted(self._contig_to_cat.items())}

    def _run_cocoeval(self, gt: dict, coco_results: List[dict], img_ids: Optional[List[Any]]) -> Any:
        """Run evaluate/accumulate/summarize with the chosen backend, its console output captured.

        Both libraries print progress and the 12-line summary to stdout; we log our own table
        instead, and keep theirs at DEBUG level for when it is needed.
        """
        buf = io.StringIO()
        # loadRes adds fields to each result dict; ``evaluate`` builds them afresh on every call.
        dt_list = coco_results
        with contextlib.redirect_stdout(buf):
            if self._backend == "faster":
                try:
                    from faster_coco_eval import COCO as FCOCO, COCOeval_faster
                except ImportError:  # pragma: no cover - it is a declared dependency
                    logger.warning("faster_coco_eval is not importable; falling back to pycocotools")
                    self._backend = "pycocotools"
                    return self._run_cocoeval(gt, coco_results, img_ids)
                quiet = lambda *a, **k: None  # noqa: E731
                coco_gt = FCOCO(_fresh_copy(gt), print_function=quiet)
                coco_dt = coco_gt.loadRes(dt_list)
                coco_eval = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=quiet)
            else:
                from pycocotools.coco import COCO
                from pycocotools.cocoeval import COCOeval

                coco_gt = COCO()
                coco_gt.dataset = _fresh_copy(gt)
                coco_gt.createIndex()
                coco_dt = coco_gt.loadRes(dt_list)
                coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
            if img_ids is not None:
                coco_eval.params.imgIds = list(img_ids)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        logger.debug("COCOeval (%s) output:\n%s", self._backend, buf.getvalue())
        return coco_eval

    def _derive_results(
        self, stats: np.ndarray, precision: np.ndarray, cat_ids: List[int], class_names: Mapping[int, str]
    ) -> dict:
        """Percent metrics from the stats vector and per-class AP from the precision array.

        Per-class AP averages precision[:, :, k, area=all, maxDets=100] over IoU thresholds and
        recall points where it is defined (> -1), exactly like detectron2 / COCOeval.summarize.
        Undefined values (no ground truth at all in that bucket) become NaN, not -100.
        """
        results: "OrderedDict[str, float]" = OrderedDict()
        for i, name in enumerate(COCO_METRIC_NAMES):
            v = float(stats[i])
            results[name] = v * 100.0 if v >= 0 else float("nan")
        if not np.isfinite(list(results.values())).all():
            logger.info("Some COCO metrics are NaN: no ground truth in that area range")
        logger.info("Evaluation results for bbox (%s backend):\n%s", self._backend, create_small_table(results))

        per_class: List[tuple] = []
        for k, cat in enumerate(cat_ids):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            ap = float(np.mean(p)) * 100.0 if p.size else float("nan")
            name = class_names.get(int(cat), str(cat))
            per_class.append((name, ap))
            results[f"AP-{name}"] = ap
        if per_class:
            from tabulate import tabulate

            n_cols = min(6, len(per_class) * 2)
            flat = list(itertools.chain(*per_class))
            rows = itertools.zip_longest(*[flat[i::n_cols] for i in range(n_cols)])
            table = tabulate(
                rows,
                tablefmt="pipe",
                floatfmt=".3f",
                headers=["category", "AP"] * (n_cols // 2),
                numalign="left",
            )
            logger.info("Per-category bbox AP:\n%s", table)
        return dict(results)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Disable the cyclic garbage collector for the block (reference counting still frees
    memory), restoring its previous state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _result_dicts(image: np.ndarray, cat: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> List[dict]:
    """COCO result dicts (the ``coco_instances_results.json`` format) from flat arrays."""
    return [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(image.tolist(), cat.tolist(), boxes.tolist(), scores.tolist())
    ]


def _fresh_copy(gt: dict) -> dict:
    """Copy of the GT dict deep enough for the COCO APIs, which add keys ("ignore", ...) to the
    annotation dicts; boxes are never mutated, so they are shared (a full deepcopy costs
    seconds on COCO-sized sets)."""
    out = dict(gt)
    for key in ("images", "annotations", "categories"):
        if key in gt:
            out[key] = [dict(x) for x in gt[key]]
    return out
