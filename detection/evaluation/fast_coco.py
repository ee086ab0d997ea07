"""Box AP with the COCO protocol on top of faster-coco-eval's C++ matching/accumulation, fed
directly from arrays.

The library's Python layer (``COCO.createIndex``, ``loadRes``, ``COCOeval._prepare``, the
per-(image, category) IoU loop and its 400,000-pair bookkeeping for 5000 COCO images) costs
more than its C++ core. Here:

* ground truth is indexed once per evaluator (``BoxGroundTruth``) and reused by every
  ``evaluate`` call, since it does not change during a training run;
* detections stay numpy arrays until the one dict per box the C++ reads;
* all IoUs are computed in one vectorised pass over every (image, category) pair that has both
  ground truth and detections, with the arithmetic of the COCO API's ``bbIou`` (so the floats
  are bit-identical);
* the C++ evaluate+accumulate runs once per category on only the images that have ground truth
  or detections of that category. Images with neither contribute nothing to a category's
  precision/recall (``evaluateImg`` returns None for them), and the relative image order is
  kept, so score ties break exactly as in one full call; the per-category arrays are stacked.

The result is the library's ``COCOeval_faster`` object with ``eval`` (precision, recall,
scores) filled and ``summarize`` run, so ``stats`` equal the library's and pycocotools' to the
last bit (tests/detection/evaluation/test_coco_eval.py checks this on randomized data).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["BoxGroundTruth", "fast_path_available", "evaluate_boxes"]


def fast_path_available() -> bool:
    """Whether the installed faster-coco-eval has the internals this path relies on (1.8)."""
    try:
        from faster_coco_eval.core import faster_eval_api

        return hasattr(faster_eval_api._C, "COCOevalEvaluateAccumulate") and hasattr(faster_eval_api._C, "Dataset")
    except ImportError:
        return False


class BoxGroundTruth:
    """A COCO ground-truth dict indexed for box evaluation: sorted image/category ids, box
    arrays grouped by (image, category), and the C++ dataset of per-annotation dicts.

    Built once per evaluator; read-only afterwards (the C++ only reads the dicts)."""

    @staticmethod
    def supports(gt: dict) -> bool:
        """Integer image, category and annotation ids (what the arrays hold); anything else
        goes through the library's own Python path."""
        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        return (
            all(is_int(img["id"]) for img in gt["images"])
            and all(is_int(c["id"]) for c in gt["categories"])
            and all(is_int(a.get("image_id")) and is_int(a.get("category_id")) for a in gt.get("annotations", []))
        )

    def __init__(self, gt: dict) -> None:
        from faster_coco_eval.core import faster_eval_api

        self.img_ids = np.unique(np.asarray([int(img["id"]) for img in gt["images"]], dtype=np.int64))
        self.cat_ids = np.unique(np.asarray([int(c["id"]) for c in gt["categories"]], dtype=np.int64))
        anns = [a for a in gt.get("annotations", [])]
        n = len(anns)
        self.image = np.fromiter((a["image_id"] for a in anns), dtype=np.int64, count=n)
        self.cat = np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=n)
        self.boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(n, 4)
        self.iscrowd = np.fromiter((int(a.get("iscrowd", 0)) for a in anns), dtype=np.int64, count=n)
        self.dataset = faster_eval_api._C.Dataset()
        append = self.dataset.append_ref
        for a, img, cat, crowd in zip(anns, self.image.tolist(), self.cat.tolist(), self.iscrowd.tolist()):
            # Fresh dicts: the COCO APIs set "ignore" (= iscrowd, which wins over a json "ignore").
            append(img, cat, {"id": a["id"], "area": a["area"], "bbox": a["bbox"], "iscrowd": crowd, "ignore": crowd})


def _group_bounds(keys_sorted: np.ndarray) -> tuple:
    """(unique keys, start index, count) of runs in a sorted key array."""
    uniq, start, count = np.unique(keys_sorted, return_index=True, return_counts=True)
    return uniq, start, count


def _box_ious_grouped(
    dt_boxes: np.ndarray, gt_boxes: np.ndarray, gt_crowd: np.ndarray, nd: np.ndarray, ng: np.ndarray,
    dt_start: np.ndarray, gt_start: np.ndarray,
) -> List[np.ndarray]:
    """IoU matrices (dets x gts, XYWH boxes) of many groups in one pass; group j uses dets
    dt_start[j]:+nd[j] and gts gt_start[j]:+ng[j]. Same operations as the COCO API's bbIou,
    so the values are bit-identical; crowd ground truth uses the detection's area as union."""
    sizes = nd * ng
    total = int(sizes.sum())
    if total == 0:
        return [np.zeros((0, 0))] * len(nd)
    pair_offset = np.repeat(np.cumsum(sizes) - sizes, sizes)
    local = np.arange(total, dtype=np.int64) - pair_offset  # index within the group's d x g block
    ng_rep = np.repeat(ng, sizes)
    d = np.repeat(dt_start, sizes) + local // ng_rep
    g = np.repeat(gt_start, sizes) + local % ng_rep
    db, gb = dt_boxes[d], gt_boxes[g]
    w = np.minimum(db[:, 2] + db[:, 0], gb[:, 2] + gb[:, 0]) - np.maximum(db[:, 0], gb[:, 0])
    h = np.minimum(db[:, 3] + db[:, 1], gb[:, 3] + gb[:, 1]) - np.maximum(db[:, 1], gb[:, 1])
    inter = w * h
    da = db[:, 2] * db[:, 3]
    ga = gb[:, 2] * gb[:, 3]
    union = np.where(gt_crowd[g] != 0, da, da + ga - inter)
    ok = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(ok, inter / np.where(ok, union, 1.0), 0.0)
    blocks = np.split(iou, np.cumsum(sizes)[:-1])
    return [b.reshape(int(a), int(c)) for b, a, c in zip(blocks, nd.tolist(), ng.tolist())]


def evaluate_boxes(
    gt: BoxGroundTruth,
    dt_image: np.ndarray,
    dt_cat: np.ndarray,
    dt_boxes: np.ndarray,
    dt_scores: np.ndarray,
    img_ids: Optional[Sequence[int]] = None,
    print_function: Any = None,
) -> Any:
    """COCO box evaluation of detections (``dt_boxes`` XYWH float64, in result order) against
    ``gt``; returns the summarized ``COCOeval_faster`` object (``stats``, ``eval``, ``params``).

    Detections of images/categories outside the ground truth must already be removed. Their ids
    are 1..N in the given order, as ``loadRes`` assigns them."""
    from faster_coco_eval import COCOeval_faster
    from faster_coco_eval.core import faster_eval_api

    quiet = print_function or (lambda *a, **k: None)
    coco_eval = COCOeval_faster(None, None, "bbox", print_function=quiet)
    p = coco_eval.params
    eval_imgs = gt.img_ids if img_ids is None else np.unique(np.asarray(list(img_ids), dtype=np.int64))
    p.imgIds = [int(i) for i in eval_imgs]
    p.catIds = [int(c) for c in gt.cat_ids]
    p.maxDets = sorted(p.maxDets)
    max_det = p.maxDets[-1]
    n_img, n_cat = len(p.imgIds), len(p.catIds)

    def positions(image: np.ndarray, cat: np.ndarray) -> np.ndarray:
        """Dense keys image_position * n_cat + category_position; -1 = not evaluated."""
        if not (n_img and n_cat and len(image)):
            return np.full(len(image), -1, dtype=np.int64)
        ip = np.minimum(np.searchsorted(eval_imgs, image), n_img - 1)
        cp = np.minimum(np.searchsorted(gt.cat_ids, cat), n_cat - 1)
        valid = (eval_imgs[ip] == image) & (gt.cat_ids[cp] == cat)
        return np.where(valid, ip * n_cat + cp, -1)

    n_dt = len(dt_scores)
    dt_key = positions(dt_image, dt_cat)
    gt_key = positions(gt.image, gt.cat)

    # The C++ reads one dict per detection (ids 1..N in result order, as loadRes assigns).
    dt_dataset = faster_eval_api._C.Dataset()
    append = dt_dataset.append_ref
    areas = (dt_boxes[:, 2] * dt_boxes[:, 3]).tolist()
    for i, (img, cat, box, score, area, key) in enumerate(
        zip(dt_image.tolist(), dt_cat.tolist(), dt_boxes.tolist(), dt_scores.tolist(), areas, dt_key.tolist())
    ):
        if key >= 0:
            append(img, cat, {"id": i + 1, "score": score, "area": area, "bbox": box, "iscrowd": 0})

    # Detections by (pair, descending score), stable as the library's mergesort; top max_det each.
    keep = np.flatnonzero(dt_key >= 0)
    order = keep[np.lexsort((-dt_scores[keep], dt_key[keep]))]
    d_keys = dt_key[order]
    d_uniq, d_start, d_count = _group_bounds(d_keys)
    g_keep = np.flatnonzero(gt_key >= 0)
    g_order = g_keep[np.argsort(gt_key[g_keep], kind="stable")]
    g_keys = gt_key[g_order]
    g_uniq, g_start, g_count = _group_bounds(g_keys)

    both, d_idx, g_idx = np.intersect1d(d_uniq, g_uniq, assume_unique=True, return_indices=True)
    blocks = _box_ious_grouped(
        dt_boxes[order], gt.boxes[g_order], gt.iscrowd[g_order],
        np.minimum(d_count[d_idx], max_det), g_count[g_idx], d_start[d_idx], g_start[g_idx],
    )
    iou_of: Dict[int, np.ndarray] = dict(zip(both.tolist(), blocks))

    # Per category: the images with ground truth or detections of it, in image order.
    present = np.union1d(d_uniq, g_uniq)
    present_img, present_cat = present // max(n_cat, 1), present % max(n_cat, 1)
    by_cat = np.argsort(present_cat, kind="stable")  # keeps image order within a category
    cats_sorted = present_cat[by_cat]
    bounds = np.searchsorted(cats_sorted, np.arange(n_cat + 1))
    params_eval = copy.deepcopy(p)
    coco_eval._paramsEval = params_eval
    T, R, A, M = len(p.iouThrs), len(p.recThrs), len(p.areaRng), len(p.maxDets)
    precision = -np.ones((T, R, n_cat, A, M))
    recall = -np.ones((T, n_cat, A, M))
    scores = -np.ones((T, R, n_cat, A, M))
    empty: list = []
    for k in range(n_cat):
        sel = by_cat[bounds[k]:bounds[k + 1]]
        if not len(sel):
            continue  # no ground truth and no detections: undefined (-1), as in the library
        imgs = [p.imgIds[i] for i in present_img[sel].tolist()]
        keys = present[sel].tolist()
        pc = copy.copy(params_eval)
        pc.imgIds, pc.catIds = imgs, [p.catIds[k]]
        out = faster_eval_api._C.COCOevalEvaluateAccumulate(
            pc, [[iou_of.get(key, empty)] for key in keys], gt.dataset, dt_dataset, imgs, [p.catIds[k]], True
        )
        precision[:, :, k] = out["precision"][:, :, 0]
        recall[:, k] = out["recall"][:, 0]
        scores[:, :, k] = out["scores"][:, :, 0]
    coco_eval.eval = {
        "params": p,
        "counts": [T, R, n_cat, A, M],
        "precision": precision,
        "recall": recall,
        "scores": scores,
    }
    coco_eval.summarize()
    return coco_eval
