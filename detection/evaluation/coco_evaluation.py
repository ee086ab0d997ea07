"""COCO-style box AP (AP@[.5:.95], AP50, AP75, APs/m/l, per-class AP) for any detection dataset.

Ground truth is the dataset's COCO json when there is one (so numbers match the official
evaluation exactly, including crowd regions and the json's own ``area`` values), otherwise it
is converted in memory from the dataset records, which lets VOC-style or custom datasets be
reported with COCO metrics too. Two interchangeable backends: ``faster`` (the default:
box AP computed with numpy from arrays, ``fast_coco.py``, ground truth indexed once per
evaluator; faster-coco-eval's Python path for non-integer ids) and the reference
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

from .evaluator import DatasetEvaluator, gather_to_main, prediction_arrays
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

    Boxes go from absolute XYXY to COCO XYWH; ``area`` is the box area (there are no masks), and
    ``iscrowd`` is kept so crowd regions still absorb detections instead of counting as misses.
    ``difficult`` has no COCO meaning and is dropped (VOC-difficult objects become ordinary
    ground truth here, as in detectron2's conversion). Category ids are the dataset ids when a
    contiguous->dataset mapping is given, else the contiguous ids. Image ids are taken from the
    records as they are (the caller remaps non-integer ids, see ``COCOEvaluator``).
    """
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
                    # ids start at 1: pycocotools treats a matched gt id of 0 as "unmatched".
                    "id": len(annotations) + 1,
                    "image_id": rec["image_id"],
                    "category_id": int(contiguous_to_dataset_id[cat]),
                    "bbox": [x1, y1, w, h],
                    "area": max(w, 0.0) * max(h, 0.0),
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )
    return {
        "info": {"description": "converted in memory by litedet"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def _is_int_id(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


class COCOEvaluator(DatasetEvaluator):
    """Box AP with the COCO protocol, reported in percent (0-100) like detectron2.

    Ground-truth source, first match wins: ``json_file`` argument; ``dataset_dicts`` argument
    (converted in memory); the dataset's ``MetadataCatalog`` ``json_file``; its
    ``DatasetCatalog`` records (converted). Model labels (contiguous, 0-based) are mapped to
    dataset category ids through ``thing_dataset_id_to_contiguous_id`` when known; for a json
    without that mapping, contiguous i is the i-th smallest json category id (the convention
    of detectron2's COCO loader). Evaluation covers every image of the ground truth, as the
    official protocol does; images never processed count as images with no detections (a
    warning says how many).

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
        self._id_map: Optional[Dict[int, int]] = None  # dataset category id -> contiguous
        if dataset_name is not None:
            meta = self._metadata()
            if self._thing_classes is None:
                self._thing_classes = list(getattr(meta, "thing_classes", []) or []) or None
            mapping = getattr(meta, "thing_dataset_id_to_contiguous_id", None)
            if mapping:
                self._id_map = {int(k): int(v) for k, v in mapping.items()}
            if self._json_file is None and self._dataset_dicts is None:
                self._json_file = getattr(meta, "json_file", None) or None
        self._gt_cache: Optional[dict] = None  # built lazily: loading a large json is not free
        self._box_gt: Optional[BoxGroundTruth] = None  # ground truth indexed for the fast path
        self._fast_path_ok: Optional[bool] = None
        self._image_id_remap: Optional[Dict[Any, int]] = None
        self.stats: Optional[np.ndarray] = None
        self.precision: Optional[np.ndarray] = None
        self._predictions: List[dict] = []
        self._processed_ids: List[Any] = []

    # ------------------------------------------------------------------ catalog access (lazy)
    def _metadata(self) -> Any:
        from detection.data import MetadataCatalog  # lazy: the data package imports heavy deps

        return MetadataCatalog.get(self._dataset_name)

    def _records(self) -> Sequence[Mapping[str, Any]]:
        if self._dataset_dicts is not None:
            return self._dataset_dicts
        from detection.data import DatasetCatalog

        return DatasetCatalog.get(self._dataset_name)

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
        class_names = self._class_names(gt)
        cat_to_contig = self._cat_to_contiguous(gt)
        contig_to_cat = {v: k for k, v in cat_to_contig.items()}
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
        """The COCO ground-truth dict; loaded/converted once per evaluator."""
        if self._gt_cache is not None:
            return self._gt_cache
        if self._json_file:
            with open(self._json_file) as f:
                gt = json.load(f)
            gt.setdefault("info", {})
            self._image_id_remap = None
            if self._thing_classes is None:
                self._thing_classes = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
        else:
            if self._thing_classes is None:
                raise ValueError("thing_classes are needed to convert dataset records to COCO ground truth")
            records = list(self._records())
            ids = [r["image_id"] for r in records]
            if all(_is_int_id(i) for i in ids) and len(set(ids)) == len(ids):
                self._image_id_remap = None
            else:
                # String ids (e.g. VOC "2007_000027") or duplicates: COCO APIs need unique ints.
                self._image_id_remap = {}
                for i in ids:
                    self._image_id_remap.setdefault(i, len(self._image_id_remap) + 1)
                records = [dict(r, image_id=self._image_id_remap[r["image_id"]]) for r in records]
                seen: set = set()
                records = [r for r in records if not (r["image_id"] in seen or seen.add(r["image_id"]))]
            contig_to_dataset = {v: k for k, v in self._id_map.items()} if self._id_map else None
            gt = convert_to_coco_dict(records, self._thing_classes, contiguous_to_dataset_id=contig_to_dataset)
        self._gt_cache = gt
        return gt

    def _supports_fast_path(self, gt: dict) -> bool:
        if self._fast_path_ok is None:
            self._fast_path_ok = BoxGroundTruth.supports(gt)
            if not self._fast_path_ok:
                logger.info("Ground truth has non-integer ids: using faster-coco-eval's Python path")
        return self._fast_path_ok

    def _cat_to_contiguous(self, gt: dict) -> Dict[int, int]:
        if self._id_map:
            return dict(self._id_map)
        cat_ids = sorted(int(c["id"]) for c in gt["categories"])
        return {c: i for i, c in enumerate(cat_ids)}

    def _class_names(self, gt: dict) -> Dict[int, str]:
        """Dataset category id -> display name (thing_classes when known, else the json's name)."""
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in gt["categories"]}
        if self._thing_classes:
            for cat, contig in self._cat_to_contiguous(gt).items():
                if cat in names and 0 <= contig < len(self._thing_classes):
                    names[cat] = self._thing_classes[contig]
        return dict(sorted(names.items()))

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
