"""Training RoIs (every proposal, or a sample), OHEM and the R-CNN loss, and the RPN's
border anchors, against an independent NumPy re-statement of the authors' formulas
(docs/protocols.md, "The OHEM and loss formulas"; zengarden/light_head_rcnn
loss_opr_without_box_weight.py, rpn_batched/proposal_target_layer.py and
anchor_target_layer_without_boxweight.py) on fixed tensors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import MultiScaleRoIAlign

from detection.modeling.roi_heads import (
    FastRCNNPredictor,
    FCBoxHead,
    KeepAllSampler,
    LiteRoIHeads,
    fast_rcnn_losses,
    hard_example_indices,
)
from detection.modeling.rpn import FeatureSelectRPN, RPNHead

STDS = np.array([0.1, 0.1, 0.2, 0.2])


# ---------------------------------------------------------------------------- re-statement
def np_smooth_l1(x: np.ndarray, sigma: float) -> np.ndarray:
    s2 = sigma**2
    return np.where(np.abs(x) < 1.0 / s2, 0.5 * s2 * x**2, np.abs(x) - 0.5 / s2)


def np_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(labels)), labels]


def np_box_loss(deltas: np.ndarray, labels: np.ndarray, targets: np.ndarray, sigma: float) -> np.ndarray:
    """d(r) = [y > 0] sum_j SL1(p_{r, y, j} - t_j); deltas (R, 4K) class-specific."""
    own = deltas.reshape(len(labels), -1, 4)[np.arange(len(labels)), labels]
    return (labels > 0) * np_smooth_l1(own - targets, sigma).sum(axis=1)


def np_ohem_losses(logits, deltas, labels, targets, images_per_group, topk_per_image, sigma=1.0, box_weight=2.0):
    """The authors' sum_ohem_loss on the RoIs of one group of images (one GPU)."""
    c = np_cross_entropy(logits, labels)
    d = np_box_loss(deltas, labels, targets, sigma)
    k = min(topk_per_image * images_per_group, len(labels))
    hard = np.argsort(-(c + d), kind="stable")[:k]
    return c[hard].sum() / k, box_weight * d[hard].sum() / k, np.sort(hard)


def np_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def np_rcnn_targets(rois: np.ndarray, gt: np.ndarray, gt_labels: np.ndarray):
    """Labels (IoU >= 0.5: the best ground truth's class, else 0) and targets / stds."""
    iou = np_iou(rois, gt)
    best = iou.argmax(axis=1)
    labels = np.where(iou.max(axis=1) >= 0.5, gt_labels[best], 0)
    g = gt[best]
    rw, rh = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    t = np.stack(
        [
            ((g[:, 0] + 0.5 * gw) - (rois[:, 0] + 0.5 * rw)) / rw,
            ((g[:, 1] + 0.5 * gh) - (rois[:, 1] + 0.5 * rh)) / rh,
            np.log(gw / rw),
            np.log(gh / rh),
        ],
        axis=1,
    )
    return labels, t / STDS


# ---------------------------------------------------------------------------- worked example
# docs/protocols.md: 6 RoIs, images {0, 1, 2} and {3, 4, 5}, 3 classes (0 = background)
LOGITS = np.array(
    [[2.0, 0.5, -1.0], [0.1, 1.5, 0.2], [1.0, 1.0, 1.0], [-0.5, 0.3, 2.2], [-2.0, 0.0, 3.0], [0.0, 0.0, 2.5]]
)
LABELS = np.array([0, 1, 2, 2, 0, 1])
TARGETS = np.array([[0.0] * 4, [0.0, 0.0, 0.5, 0.0], [0.2, 0.0, 0.0, 0.0], [0.0] * 4, [0.0] * 4, [1.0, -1.0, 0.5, 0.2]])
OWN_DELTAS = np.array([[0.0] * 4, [0.5, -0.2, 1.5, 0.0], [0.1] * 4, [-2.0, 0.3, 0.0, 0.4], [0.0] * 4, [0.0] * 4])


def _example_deltas() -> np.ndarray:
    deltas = np.random.default_rng(0).normal(size=(6, 3, 4))  # other classes' deltas: must not count
    deltas[np.arange(6), LABELS] = OWN_DELTAS
    return deltas.reshape(6, 12)


def _model_losses(deltas: np.ndarray, **kwargs):
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    labels = [torch.tensor(LABELS[:3]), torch.tensor(LABELS[3:])]
    targets = [t(TARGETS[:3]), t(TARGETS[3:])]
    out = fast_rcnn_losses(t(LOGITS), t(deltas), labels, targets, **kwargs)
    return out["loss_classifier"].item(), out["loss_box_reg"].item()


def test_restatement_reproduces_the_documented_example():
    c = np_cross_entropy(LOGITS, LABELS)
    d = np_box_loss(_example_deltas(), LABELS, TARGETS, sigma=1.0)
    np.testing.assert_allclose(c, [0.241311, 0.418137, 1.098612, 0.196203, 5.054985, 2.652008], atol=1e-6)
    np.testing.assert_allclose(d, [0, 0.645, 0.02, 1.625, 0, 1.145], atol=1e-9)
    cls, box, hard = np_ohem_losses(LOGITS, _example_deltas(), LABELS, TARGETS, images_per_group=2, topk_per_image=2)
    assert hard.tolist() == [2, 3, 4, 5]
    assert cls == pytest.approx(2.250452, abs=1e-6) and box == pytest.approx(1.395, abs=1e-9)


def test_ohem_loss_equals_the_authors_on_the_example():
    """Joint ranking over both images by CE + unweighted smooth-L1 (beta 1), x2 after."""
    want_cls, want_box, _ = np_ohem_losses(LOGITS, _example_deltas(), LABELS, TARGETS, 2, 2)
    cls, box = _model_losses(_example_deltas(), box_loss_weight=2.0, smooth_l1_beta=1.0, ohem_topk=2)
    assert cls == pytest.approx(want_cls, rel=1e-6) and box == pytest.approx(want_box, rel=1e-6)
    # ranking each image on its own, or by CE + 2 x box at beta 1/9, would give other losses
    per_image = [np_ohem_losses(LOGITS[s], _example_deltas()[s], LABELS[s], TARGETS[s], 1, 2) for s in (slice(0, 3), slice(3, 6))]
    assert not math.isclose(cls, sum(p[0] for p in per_image) / 2, rel_tol=1e-3)
    old_cls, old_box = _model_losses(_example_deltas(), box_loss_weight=2.0, smooth_l1_beta=1 / 9, ohem_topk=2)
    assert not math.isclose(old_box, want_box, rel_tol=1e-3)


@pytest.mark.parametrize("topk_per_image", [1, 2, 3, 100])
@pytest.mark.parametrize("beta", [1.0, 1 / 9])
def test_ohem_loss_on_random_rois(topk_per_image, beta):
    rng = np.random.default_rng(topk_per_image)
    n, classes = 40, 5
    logits, deltas = rng.normal(size=(n, classes)) * 2, rng.normal(size=(n, classes * 4))
    labels, targets = rng.integers(0, classes, n), rng.normal(size=(n, 4))
    sigma = 1 / math.sqrt(beta)
    want_cls, want_box, _ = np_ohem_losses(logits, deltas, labels, targets, 3, topk_per_image, sigma, box_weight=2.0)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    split = [0, 10, 25, 40]  # three images of 10, 15, 15 RoIs
    out = fast_rcnn_losses(
        t(logits), t(deltas),
        [torch.tensor(labels[a:b]) for a, b in zip(split, split[1:])],
        [t(targets[a:b]) for a, b in zip(split, split[1:])],
        box_loss_weight=2.0, smooth_l1_beta=beta, ohem_topk=topk_per_image,
    )
    assert out["loss_classifier"].item() == pytest.approx(want_cls, rel=1e-5)
    assert out["loss_box_reg"].item() == pytest.approx(want_box, rel=1e-5)


def test_loss_without_ohem_is_the_mean_over_rois():
    """py-faster-rcnn: CE mean, box sum / number of RoIs, weight 1, sigma 1."""
    cls, box = _model_losses(_example_deltas(), box_loss_weight=1.0, smooth_l1_beta=1.0)
    c = np_cross_entropy(LOGITS, LABELS)
    d = np_box_loss(_example_deltas(), LABELS, TARGETS, sigma=1.0)
    assert cls == pytest.approx(c.mean(), rel=1e-6) and box == pytest.approx(d.sum() / 6, rel=1e-6)


def test_hard_example_indices():
    losses = torch.tensor([0.1, 5.0, 0.3, 4.0, 0.2, 3.0])
    assert hard_example_indices(losses, num_images=2, topk_per_image=1).tolist() == [1, 3]
    assert hard_example_indices(losses, num_images=2, topk_per_image=2).tolist() == [1, 2, 3, 5]
    assert hard_example_indices(losses, num_images=2, topk_per_image=10).tolist() == list(range(6))
    assert hard_example_indices(losses[:0], num_images=1, topk_per_image=4).numel() == 0


# ---------------------------------------------------------------------------- training RoIs
def _heads(batch_size_per_image: int, **kwargs) -> LiteRoIHeads:
    return LiteRoIHeads(
        MultiScaleRoIAlign(["x"], 2, 2), FCBoxHead(8 * 4, [16]), FastRCNNPredictor(16, 3),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=batch_size_per_image, positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0), score_thresh=0.0, nms_thresh=0.5, detections_per_img=100, **kwargs,
    )


def _proposals_and_targets():
    g = torch.Generator().manual_seed(0)
    gt = [torch.tensor([[10.0, 10.0, 60.0, 50.0], [70.0, 20.0, 120.0, 90.0]]), torch.tensor([[30.0, 30.0, 90.0, 100.0]])]
    labels = [torch.tensor([1, 3]), torch.tensor([2])]
    proposals = []
    for boxes, n in zip(gt, (300, 200)):
        centre = boxes[torch.randint(0, len(boxes), (n,), generator=g)]
        jitter = torch.randn(n, 4, generator=g) * 12
        p = centre + jitter
        proposals.append(torch.cat([p[:, :2], torch.maximum(p[:, 2:], p[:, :2] + 4)], dim=1))
    return proposals, [{"boxes": b, "labels": lbl} for b, lbl in zip(gt, labels)]


def test_every_proposal_and_ground_truth_is_a_training_roi():
    heads = _heads(-1)
    assert isinstance(heads.fg_bg_sampler, KeepAllSampler)
    proposals, targets = _proposals_and_targets()
    rois, _, labels, reg_targets = heads.select_training_samples([p.clone() for p in proposals], targets)
    for p, t, r, lbl, reg in zip(proposals, targets, rois, labels, reg_targets):
        candidates = torch.cat([p, t["boxes"]]).numpy().astype(np.float64)
        assert len(r) == len(candidates)  # no sampling, no fixed count
        # the same set (the order may differ): sort both by their coordinates
        order_ours = np.lexsort(r.numpy().T[::-1])
        order_np = np.lexsort(candidates.T[::-1])
        np.testing.assert_allclose(r.numpy()[order_ours], candidates[order_np], rtol=0, atol=0)
        want_labels, want_targets = np_rcnn_targets(candidates, t["boxes"].numpy().astype(np.float64), t["labels"].numpy())
        np.testing.assert_array_equal(lbl.numpy()[order_ours], want_labels[order_np])
        fg = want_labels[order_np] > 0
        assert fg.sum() > 10 and (~fg).sum() > 10
        np.testing.assert_allclose(reg.numpy()[order_ours][fg], want_targets[order_np][fg], rtol=1e-4, atol=1e-4)


def test_sampled_training_rois():
    heads = _heads(64)
    proposals, targets = _proposals_and_targets()
    _, _, labels, _ = heads.select_training_samples(proposals, targets)
    for lbl in labels:
        assert len(lbl) == 64 and 0 < int((lbl > 0).sum()) <= 16  # <= 25% foreground


@pytest.mark.parametrize("bad", [0, -2])
def test_batch_size_per_image_must_be_positive_or_minus_one(bad):
    with pytest.raises(ValueError, match="-1"):
        _heads(bad)


def test_lite_roi_heads_train_on_every_proposal():
    """A training step of the heads with -1 and OHEM: the loss is the re-statement's on the
    heads' own predictions for the RoIs they selected."""
    torch.manual_seed(0)
    heads = _heads(-1, box_loss_weight=2.0, smooth_l1_beta=1.0, ohem_topk=16).train()
    proposals, targets = _proposals_and_targets()
    features = {"x": torch.randn(2, 8, 32, 40)}
    shapes = [(128, 160), (128, 160)]
    _, losses = heads(features, [p.clone() for p in proposals], shapes, targets)
    rois, _, labels, reg = heads.select_training_samples([p.clone() for p in proposals], targets)
    with torch.no_grad():
        logits, deltas = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, rois, shapes)))
    want_cls, want_box, _ = np_ohem_losses(
        logits.double().numpy(), deltas.double().numpy(), torch.cat(labels).numpy(), torch.cat(reg).double().numpy(), 2, 16
    )
    assert losses["loss_classifier"].item() == pytest.approx(want_cls, rel=1e-4)
    assert losses["loss_box_reg"].item() == pytest.approx(want_box, rel=1e-4)


# ---------------------------------------------------------------------------- RPN border
def np_rpn_labels(anchors: np.ndarray, gt: np.ndarray, height: int, width: int, border: float):
    """anchor_target_layer_without_boxweight.py L35-70 (before subsampling): anchors inside
    the image only; 0 below 0.3; each ground truth's best anchors (ties) 1; >= 0.7 1; the
    anchors outside -1."""
    inside = (
        (anchors[:, 0] >= -border) & (anchors[:, 1] >= -border)
        & (anchors[:, 2] < width + border) & (anchors[:, 3] < height + border)
    )
    idx = np.where(inside)[0]
    overlaps = np_iou(anchors[idx], gt)
    labels = np.full(len(idx), -1.0)
    max_overlaps = overlaps.max(axis=1)
    labels[max_overlaps < 0.3] = 0
    gt_best = np.where(overlaps == overlaps.max(axis=0))[0]
    labels[gt_best] = 1
    labels[max_overlaps >= 0.7] = 1
    out = np.full(len(anchors), -1.0)
    out[idx] = labels
    return out


def _rpn(border: float) -> FeatureSelectRPN:
    return FeatureSelectRPN(
        ["x"], AnchorGenerator(((32, 64, 128),), ((0.5, 1.0, 2.0),)), RPNHead(8, 9), fg_iou_thresh=0.7,
        bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": 100, "testing": 100}, post_nms_top_n={"training": 50, "testing": 50},
        nms_thresh=0.7, boundary_thresh=border,
    )


def _anchors(rpn: FeatureSelectRPN, image_size):
    images = ImageList(torch.zeros(1, 3, 112, 144), [image_size])
    return rpn.anchor_generator(images, [torch.zeros(1, 8, 7, 9)])


# one box near the corner (its best anchors cross the border), one inside
GT = torch.tensor([[2.0, 3.0, 70.0, 60.0], [80.0, 30.0, 130.0, 95.0]])


@pytest.mark.parametrize("border", [0, 8])
def test_rpn_ignores_anchors_across_the_border(border):
    rpn, image_size = _rpn(border), (100, 140)
    anchors = _anchors(rpn, image_size)
    labels, matched = rpn.assign_targets_to_anchors(anchors, [{"boxes": GT}], [image_size])
    want = np_rpn_labels(anchors[0].numpy().astype(np.float64), GT.numpy().astype(np.float64), *image_size, border)
    np.testing.assert_array_equal(labels[0].numpy(), want)
    assert (want == -1).sum() > 0 and (want == 1).sum() > 0
    positive = labels[0] == 1
    best = torch.from_numpy(np_iou(anchors[0].numpy(), GT.numpy()).argmax(axis=1))
    assert torch.equal(matched[0][positive], GT[best[positive]])


def test_rpn_labels_every_anchor_with_minus_one():
    """BOUNDARY_THRESH -1: torchvision's labelling, border-crossing anchors included."""
    rpn, image_size = _rpn(-1), (100, 140)
    anchors = _anchors(rpn, image_size)
    labels, _ = rpn.assign_targets_to_anchors(anchors, [{"boxes": GT}], [image_size])
    reference, _ = RegionProposalNetwork.assign_targets_to_anchors(rpn, anchors, [{"boxes": GT}])
    assert torch.equal(labels[0], reference[0])
    inside = np_rpn_labels(anchors[0].numpy().astype(np.float64), GT.numpy().astype(np.float64), *image_size, 0)
    assert ((labels[0].numpy() != -1) & (inside == -1)).any()  # crossing anchors got labels


def test_rpn_with_border_trains():
    rpn = _rpn(0).train()
    images = ImageList(torch.zeros(2, 3, 112, 144), [(100, 140), (112, 120)])
    boxes, losses = rpn(images, {"x": torch.randn(2, 8, 7, 9)}, [{"boxes": GT}, {"boxes": GT[1:] - 10}])
    assert len(boxes) == 2 and all(math.isfinite(v.item()) for v in losses.values())
