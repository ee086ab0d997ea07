"""Box AP with the COCO protocol (pycocotools' ``COCOeval`` for ``iouType="bbox"``), computed
with numpy from arrays.

The COCO libraries spend most of their time in Python bookkeeping (``COCO.createIndex``,
``loadRes``, ``_prepare``, one dict per box and one evaluation per (image, category, area)
of all 400,000 image/category pairs of 5000 COCO images). Here:

* ground truth is indexed once per evaluator (``BoxGroundTruth``: box/area/crowd/id arrays)
  and reused by every ``evaluate`` call, since it does not change during a training run;
* detections stay numpy arrays; only (image, category) pairs with detections or ground truth
  take part (the others contribute nothing to any precision/recall);
* all IoUs come from one vectorised pass with the arithmetic of the COCO API's ``bbIou``;
* the greedy matching (``evaluateImg``) runs for all pairs, area ranges and IoU thresholds at
  once, one detection rank at a time, on pairs bucketed by padded size;
* the accumulation (``accumulate``) uses the COCO API's operations in its order (cumulative
  counts as floats, ``tp / (fp + tp + eps)``, right-to-left precision envelope,
  ``searchsorted(..., side="left")`` at the 101 recall thresholds), per category.

``precision``/``recall``/``scores`` and the 12 stats equal pycocotools' bit for bit
(tests/detection/evaluation/test_coco_evaluation.py checks this on randomized sets with crowd,
ignore flags, area ranges, ties, empty images and > 100 detections per image/category).
faster-coco-eval's ``COCOeval_faster`` object carries the result (its ``summarize`` makes
the stats), so callers see the same object as on the library's own path.
"""
from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["BoxGroundTruth", "fast_path_available", "evaluate_boxes"]


def fast_path_available() -> bool:
    """Whether faster-coco-eval (whose ``COCOeval_faster.summarize`` formats the stats) is there."""
    try:
        from faster_coco_eval import COCOeval_faster  # noqa: F401

        return True
    except ImportError:
        return False


class BoxGroundTruth:
    """A COCO ground-truth dict indexed for box evaluation: sorted image/category ids, box
    arrays (boxes, areas, crowd flags, ids).

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
            and all(
                is_int(a.get("id")) and is_int(a.get("image_id")) and is_int(a.get("category_id"))
                for a in gt.get("annotations", [])
            )
        )

    def __init__(self, gt: dict) -> None:
        self.img_ids = np.unique(np.asarray([int(img["id"]) for img in gt["images"]], dtype=np.int64))
        self.cat_ids = np.unique(np.asarray([int(c["id"]) for c in gt["categories"]], dtype=np.int64))
        anns = [a for a in gt.get("annotations", [])]
        n = len(anns)
        self.image = np.fromiter((a["image_id"] for a in anns), dtype=np.int64, count=n)
        self.cat = np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=n)
        self.boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(n, 4)
        self.iscrowd = np.fromiter((int(a.get("iscrowd", 0)) for a in anns), dtype=np.int64, count=n)
        self.area = np.fromiter((a["area"] for a in anns), dtype=np.float64, count=n)
        self.ids = np.fromiter((a["id"] for a in anns), dtype=np.int64, count=n)


def _group_bounds(keys_sorted: np.ndarray) -> tuple:
    """(unique keys, start index, count) of runs in a sorted key array."""
    uniq, start, count = np.unique(keys_sorted, return_index=True, return_counts=True)
    return uniq, start, count


def _box_ious_grouped(
    dt_boxes: np.ndarray, gt_boxes: np.ndarray, gt_crowd: np.ndarray, nd: np.ndarray, ng: np.ndarray,
    dt_start: np.ndarray, gt_start: np.ndarray,
) -> np.ndarray:
    """IoU matrices (dets x gts, XYWH boxes) of many groups in one pass, concatenated row-major
    (group j's block is nd[j] x ng[j]); group j uses dets
    dt_start[j]:+nd[j] and gts gt_start[j]:+ng[j]. Same operations as the COCO API's bbIou,
    so the values are bit-identical; crowd ground truth uses the detection's area as union."""
    sizes = nd * ng
    total = int(sizes.sum())
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
        return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


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

    dt_key = positions(dt_image, dt_cat)
    gt_key = positions(gt.image, gt.cat)

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
    pair_nd, pair_ng = np.minimum(d_count[d_idx], max_det), g_count[g_idx]
    iou = _box_ious_grouped(
        dt_boxes[order], gt.boxes[g_order], gt.iscrowd[g_order], pair_nd, pair_ng, d_start[d_idx], g_start[g_idx],
    )

    # Evaluated detections: the top max_det of each pair, by descending score.
    rank = np.arange(len(order)) - np.repeat(d_start, d_count)
    ev = rank < max_det
    T, A = len(p.iouThrs), len(p.areaRng)
    area_rng = np.asarray(p.areaRng, dtype=np.float64)  # [A, 2]
    dt_sorted = dt_boxes[order]
    dt_area = dt_sorted[:, 2] * dt_sorted[:, 3]
    matched = np.zeros((len(order), T, A), dtype=bool)
    ignored = np.zeros((len(order), T, A), dtype=bool)
    g_area, g_crowd = gt.area[g_order], gt.iscrowd[g_order] != 0
    g_ign = g_crowd[None, :] | (g_area[None, :] < area_rng[:, :1]) | (g_area[None, :] > area_rng[:, 1:])  # [A, G]
    g_nz = gt.ids[g_order] != 0
    pair_matched, pair_ignored = _match_groups(
        iou, pair_nd, pair_ng, g_start[g_idx], g_ign, g_crowd, g_nz, np.asarray(p.iouThrs, dtype=np.float64)
    )
    # Rows of the pairs' evaluated detections inside the sorted detections.
    pair_rows = np.repeat(d_start[d_idx], pair_nd) + (
        np.arange(int(pair_nd.sum())) - np.repeat(np.cumsum(pair_nd) - pair_nd, pair_nd)
    )
    matched[pair_rows] = pair_matched
    ignored[pair_rows] = pair_ignored
    area_out = (dt_area[:, None] < area_rng[None, :, 0]) | (dt_area[:, None] > area_rng[None, :, 1])  # [N, A]
    ignored |= ~matched & area_out[:, None, :]
    npig = np.zeros((n_cat, A), dtype=np.int64)
    for a_i in range(A):
        npig[:, a_i] = np.bincount(g_keys[~g_ign[a_i]] % max(n_cat, 1), minlength=n_cat)[:n_cat]
    precision, recall, scores = _accumulate(
        d_keys[ev] % max(n_cat, 1), d_keys[ev] // max(n_cat, 1), rank[ev], dt_scores[order][ev],
        matched[ev], ignored[ev], npig, p, n_cat,
    )
    T, R, A, M = len(p.iouThrs), len(p.recThrs), len(p.areaRng), len(p.maxDets)
    coco_eval._paramsEval = copy.deepcopy(p)
    coco_eval.eval = {
        "params": p,
        "counts": [T, R, n_cat, A, M],
        "precision": precision,
        "recall": recall,
        "scores": scores,
    }
    coco_eval.summarize()
    return coco_eval


def _match_groups(
    iou: np.ndarray, nd: np.ndarray, ng: np.ndarray, g_first: np.ndarray,
    g_ignore: np.ndarray, g_crowd: np.ndarray, g_nonzero_id: np.ndarray, thresholds: np.ndarray,
) -> tuple:
    """COCO greedy matching of many (image, category) groups at once.

    Group j: an nd[j] x ng[j] IoU block in ``iou`` (row-major blocks back to back; dets by
    descending score), ground truth ``g_first[j]`` : + ng[j] of the per-gt arrays
    (``g_ignore`` is A x G: crowd or outside area range a). Returns (matched, ignored), each
    sum(nd) x T x A bool, rows in group order. Same rule as ``COCOeval.evaluateImg``: each
    detection in score order takes, among ground truth not yet taken (crowd can be taken
    again) with IoU >= threshold, the best non-ignored one, else the best ignored one; ties go
    to the later ground truth. A ground-truth id of 0 leaves the detection counted as
    unmatched (the COCO API's quirk), though the ground truth is taken."""
    A, T = g_ignore.shape[0], len(thresholds)
    n_rows = int(nd.sum())
    matched = np.zeros((n_rows, T, A), dtype=bool)
    ignored = np.zeros((n_rows, T, A), dtype=bool)
    if not len(nd):
        return matched, ignored
    row_first = np.cumsum(nd) - nd
    block_first = np.cumsum(nd * ng) - nd * ng
    # Buckets of groups padded to the same power-of-two (dets, gts) shape: little padding.
    dp_all = 1 << np.ceil(np.log2(np.maximum(nd, 1))).astype(np.int64)
    gp_all = 1 << np.ceil(np.log2(np.maximum(ng, 1))).astype(np.int64)
    bucket = dp_all * 4096 + gp_all
    thr = np.minimum(thresholds, 1 - 1e-10)[None, None, :, None]  # [1, 1, T, 1]
    for b in np.unique(bucket).tolist():
        members = np.flatnonzero(bucket == b)
        n, dp, gp = len(members), int(dp_all[members[0]]), int(gp_all[members[0]])
        m_nd, m_ng = nd[members], ng[members]
        # Scatter the IoU blocks into [n, dp, gp] (padding -1: never a candidate).
        sizes = m_nd * m_ng
        slot = np.repeat(np.arange(n), sizes)
        local = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        ng_rep = np.repeat(m_ng, sizes)
        pad_iou = np.full((n, dp, gp), -1.0)
        pad_iou[slot, local // ng_rep, local % ng_rep] = iou[np.repeat(block_first[members], sizes) + local]
        # Per-gt flags into [n, gp].
        g_slot = np.repeat(np.arange(n), m_ng)
        g_col = np.arange(int(m_ng.sum())) - np.repeat(np.cumsum(m_ng) - m_ng, m_ng)
        g_idx = np.repeat(g_first[members], m_ng) + g_col
        ign = np.ones((n, A, gp), dtype=bool)
        ign[g_slot, :, g_col] = g_ignore[:, g_idx].T
        crowd = np.zeros((n, 1, 1, gp), dtype=bool)
        crowd[g_slot, 0, 0, g_col] = g_crowd[g_idx]
        nz = np.zeros((n, gp), dtype=bool)
        nz[g_slot, g_col] = g_nonzero_id[g_idx]
        taken = np.zeros((n, A, T, gp), dtype=bool)
        ign_b = ign[:, :, None, :]  # [n, A, 1, gp]
        rows = np.arange(n)[:, None, None]
        a_idx = np.arange(A)[None, :, None]
        t_idx = np.arange(T)[None, None, :]
        for r in range(dp):
            active = r < m_nd
            v = pad_iou[:, r, :][:, None, None, :]  # [n, 1, 1, gp]
            cand = (~taken | crowd) & (v >= thr)  # [n, A, T, gp]
            cand_n = cand & ~ign_b
            chosen = np.where(cand_n.any(-1, keepdims=True), cand_n, cand & ign_b)
            hit = chosen.any(-1) & active[:, None, None]  # [n, A, T]
            pick = gp - 1 - np.argmax(np.where(chosen, v, -np.inf)[..., ::-1], axis=-1)  # last maximum
            taken[rows, a_idx, t_idx, pick] |= hit
            out_rows = row_first[members[active]] + r
            matched[out_rows] = (hit & nz[rows[:, 0, 0][:, None, None], pick])[active].transpose(0, 2, 1)
            ignored[out_rows] = (hit & ign[rows, a_idx, pick])[active].transpose(0, 2, 1)
    return matched, ignored


def _accumulate(
    cat_pos: np.ndarray, img_pos: np.ndarray, rank: np.ndarray, score: np.ndarray,
    matched: np.ndarray, ignored: np.ndarray, npig: np.ndarray, p: Any, n_cat: int,
) -> tuple:
    """``COCOeval.accumulate`` over evaluated detections (one row each; matched/ignored are
    N x T x A, ignored already including the area rule). ``npig[k, a]``: non-ignored gts.
    Returns precision [T,R,K,A,M], recall [T,K,A,M], scores [T,R,K,A,M]."""
    T, R, A, M = len(p.iouThrs), len(p.recThrs), len(p.areaRng), len(p.maxDets)
    rec_thrs = np.asarray(p.recThrs, dtype=np.float64)
    precision = -np.ones((T, R, n_cat, A, M))
    recall = -np.ones((T, n_cat, A, M))
    scores = -np.ones((T, R, n_cat, A, M))
    # Per category: detections in (image, rank) order, then a stable sort by score, as the COCO
    # API concatenates per-image lists and mergesorts.
    order = np.lexsort((rank, img_pos, -score, cat_pos))
    for m, max_det in enumerate(p.maxDets):
        sel = order[rank[order] < max_det]
        cats = cat_pos[sel]
        bounds = np.searchsorted(cats, np.arange(n_cat + 1))
        tps = matched[sel] & ~ignored[sel]  # [N, T, A]
        fps = ~matched[sel] & ~ignored[sel]
        sc = score[sel]
        for k in range(n_cat):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            areas = [a for a in range(A) if npig[k, a] > 0]  # no ground truth: stays -1
            if not areas:
                continue
            nd = hi - lo
            if nd == 0:
                recall[:, k, areas, m] = 0.0
                precision[:, :, k, areas, m] = 0.0
                scores[:, :, k, areas, m] = 0.0
                continue
            # The COCO API's arithmetic, in its order: float cumulative counts, eps in the sum.
            tp = np.cumsum(tps[lo:hi], axis=0).astype(dtype=float)  # [nd, T, A]
            fp = np.cumsum(fps[lo:hi], axis=0).astype(dtype=float)
            pr = tp / (fp + tp + np.spacing(1))
            pr = np.maximum.accumulate(pr[::-1], axis=0)[::-1]  # precision envelope
            sc_k = sc[lo:hi]
            for a in areas:
                rc = tp[:, :, a] / npig[k, a]  # [nd, T]
                recall[:, k, a, m] = rc[-1]
                for t in range(T):
                    inds = np.searchsorted(rc[:, t], rec_thrs, side="left")
                    valid = inds < nd
                    safe = np.minimum(inds, nd - 1)
                    precision[t, :, k, a, m] = np.where(valid, pr[safe, t, a], 0.0)
                    scores[t, :, k, a, m] = np.where(valid, sc_k[safe], 0.0)
    return precision, recall, scores
