"""Detection matching and tensor comparison used by the export checks."""
import numpy as np
import pytest

from detection.deploy import compare_tensors, match_detections
from detection.deploy.parity import box_iou

BOXES = np.array([[0, 0, 10, 10], [20, 20, 40, 50], [5, 5, 30, 30], [50, 0, 60, 10]], np.float32)
SCORES = np.array([0.9, 0.8, 0.6, 0.3], np.float32)
LABELS = np.array([0, 1, 0, 2])


def test_box_iou_known_values():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])


def test_permuted_and_jittered_detections_match():
    order = [2, 0, 3, 1]
    got = (BOXES[order] + 0.01, SCORES[order] + 1e-5, LABELS[order])
    m = match_detections((BOXES, SCORES, LABELS), got)
    assert m.ok and m.num_matched == 4 and m.max_score_diff < 2e-5 and m.min_iou > 0.99


@pytest.mark.parametrize(
    "change",
    ["label", "box", "score", "missing_top"],
)
def test_real_differences_fail(change):
    boxes, scores, labels = BOXES.copy(), SCORES.copy(), LABELS.copy()
    if change == "label":
        labels[1] = 3
    elif change == "box":
        boxes[1] += 8
    elif change == "score":
        scores[1] -= 0.05
    else:  # the best detection is gone while weaker ones remain
        boxes, scores, labels = boxes[1:], scores[1:], labels[1:]
    m = match_detections((BOXES, SCORES, LABELS), (boxes, scores, labels))
    assert not m.ok and "MISMATCH" in str(m)


def test_unmatched_at_cutoff_is_tolerated():
    # the exported model kept one box fewer at the top-k cut: only the weakest is missing
    m = match_detections((BOXES, SCORES, LABELS), (BOXES[:3], SCORES[:3], LABELS[:3]), score_tol=0.5)
    assert m.ok and m.num_unmatched_at_cutoff == 1
    assert not match_detections((BOXES, SCORES, LABELS), (BOXES[:3], SCORES[:3], LABELS[:3]), score_tol=1e-3).ok


def test_compare_tensors():
    a = [np.ones((1, 4, 2, 2)), np.zeros(3)]
    ok, worst = compare_tensors(a, [x + 1e-6 for x in a])
    assert ok and worst == pytest.approx(1e-6)
    assert compare_tensors(a, [a[0] + 0.1, a[1]]) == (False, pytest.approx(0.1))
    assert compare_tensors(a, [a[0]])[0] is False
    assert compare_tensors(a, [a[0].reshape(1, 16), a[1]])[0] is False
