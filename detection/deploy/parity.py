"""Does an exported model compute what the PyTorch model computes?

Detections are compared as sets (order and tiny score differences may change which of
two near-equal boxes survives NMS or the top-k cut): each reference detection must find
an unmatched exported one with the same label, IoU >= ``iou_thresh`` and a score within
``score_tol``. Detections left unmatched are tolerated only at the cut-off, i.e. when
their score is within ``score_tol`` of the lowest score the other side kept (a top-k cut
between near-equal scores).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

__all__ = ["DetectionMatch", "match_detections", "compare_tensors", "box_iou"]


@dataclass
class DetectionMatch:
    num_reference: int
    num_exported: int
    num_matched: int
    num_unmatched_at_cutoff: int
    min_iou: float
    max_score_diff: float
    ok: bool

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return (
            f"{verdict}: {self.num_matched}/{self.num_reference} reference detections matched "
            f"(exported {self.num_exported}, {self.num_unmatched_at_cutoff} unmatched at the score cut-off), "
            f"min IoU {self.min_iou:.4f}, max |score diff| {self.max_score_diff:.2e}"
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[N, 4]`` and ``[M, 4]`` xyxy boxes -> ``[N, M]``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def match_detections(
    reference: Sequence, exported: Sequence, iou_thresh: float = 0.9, score_tol: float = 1e-3
) -> DetectionMatch:
    """Compare ``(boxes, scores, labels)`` triples (tensors or arrays)."""
    ref_boxes, ref_scores, ref_labels = (_np(x) for x in reference)
    exp_boxes, exp_scores, exp_labels = (_np(x) for x in exported)
    ref_scores, exp_scores = ref_scores.reshape(-1).astype(np.float64), exp_scores.reshape(-1).astype(np.float64)
    ref_labels, exp_labels = ref_labels.reshape(-1).astype(np.int64), exp_labels.reshape(-1).astype(np.int64)
    iou = box_iou(ref_boxes, exp_boxes)
    used = np.zeros(len(exp_scores), dtype=bool)
    matched_ref = np.zeros(len(ref_scores), dtype=bool)
    ious, diffs = [], []
    for i in np.argsort(-ref_scores, kind="stable"):
        ok = (~used) & (exp_labels == ref_labels[i]) & (iou[i] >= iou_thresh)
        ok &= np.abs(exp_scores - ref_scores[i]) <= score_tol
        if not ok.any():
            continue
        j = int(np.argmax(np.where(ok, iou[i], -1.0)))
        used[j] = matched_ref[i] = True
        ious.append(iou[i, j])
        diffs.append(abs(exp_scores[j] - ref_scores[i]))

    def at_cutoff(scores: np.ndarray, other_kept: np.ndarray) -> np.ndarray:
        if not other_kept.size:
            return np.zeros(scores.shape, dtype=bool)
        return np.abs(scores - other_kept.min()) <= score_tol

    unmatched_ref = ref_scores[~matched_ref]
    unmatched_exp = exp_scores[~used]
    tolerated = at_cutoff(unmatched_ref, exp_scores).sum() + at_cutoff(unmatched_exp, ref_scores).sum()
    n_unmatched = len(unmatched_ref) + len(unmatched_exp)
    return DetectionMatch(
        num_reference=len(ref_scores),
        num_exported=len(exp_scores),
        num_matched=int(matched_ref.sum()),
        num_unmatched_at_cutoff=int(tolerated),
        min_iou=float(min(ious)) if ious else 1.0,
        max_score_diff=float(max(diffs)) if diffs else 0.0,
        ok=bool(tolerated == n_unmatched),
    )


def compare_tensors(
    reference: Sequence, exported: Sequence, rtol: float = 1e-3, atol: float = 1e-4
) -> Tuple[bool, float]:
    """``allclose`` over paired outputs (same count and shapes); returns (ok, max |diff|).

    ``atol`` is relative to each output's largest magnitude (when above 1): feature maps
    have arbitrary scale, and fp32 kernels reorder sums differently."""
    if len(reference) != len(exported):
        return False, float("inf")
    ok, worst = True, 0.0
    for r, e in zip(reference, exported):
        r, e = _np(r).astype(np.float64), _np(e).astype(np.float64)
        if r.shape != e.shape:
            return False, float("inf")
        worst = max(worst, float(np.abs(r - e).max()) if r.size else 0.0)
        scale = max(1.0, float(np.abs(r).max())) if r.size else 1.0
        ok &= bool(np.allclose(e, r, rtol=rtol, atol=atol * scale))
    return ok, worst
