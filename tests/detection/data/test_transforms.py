"""The training pipeline's flips and quarter turn (INPUT.RANDOM_FLIP / INPUT.RANDOM_ROTATE90):
boxes checked against a NumPy re-statement of each transform and against painted pixels,
images compared pixel-exactly, on a non-square image, after the resize."""
from __future__ import annotations

import collections

import cv2
import numpy as np
import pytest
import torch

from detection.config_checks import RANDOM_FLIPS
from detection.data import DatasetMapper
from detection.data.transforms import RANDOM_FLIP_STEPS, QuarterTurn, build_augmentations

H, W = 40, 70  # non-square: a transposition bug cannot hide
BOXES = np.array([[3.0, 5.0, 20.0, 31.0], [44.0, 2.0, 69.0, 12.0], [0.0, 0.0, 70.0, 40.0]])
LABELS = [2, 0, 1]


def hflip_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)


def vflip_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.stack([boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], axis=1)


def rot90_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """np.rot90 (counter-clockwise): pixel (row r, col c) goes to (w - 1 - c, r), so in
    continuous coordinates x' = y and y' = w - x."""
    return np.stack([boxes[:, 1], w - boxes[:, 2], boxes[:, 3], w - boxes[:, 0]], axis=1)


def expected(rgb: np.ndarray, boxes: np.ndarray, flip: str, rotate: bool):
    """The NumPy re-statement: the resized image and boxes through the named steps, in order."""
    steps = {"none": [], "horizontal": ["h"], "vertical": ["v"], "both": ["h", "v"]}[flip] + (["r"] if rotate else [])
    img, b = rgb, boxes
    for step in steps:
        h, w = img.shape[:2]
        if step == "h":
            img, b = img[:, ::-1], hflip_boxes(b, h, w)
        elif step == "v":
            img, b = img[::-1], vflip_boxes(b, h, w)
        else:
            img, b = np.rot90(img), rot90_boxes(b, h, w)
    return np.ascontiguousarray(img), b


@pytest.fixture
def image_file(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    path = str(tmp_path / "noise.png")
    assert cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path, rgb


def _record(path, boxes):
    anns = [{"bbox": list(map(float, b)), "category_id": c, "iscrowd": 0} for b, c in zip(boxes, LABELS)]
    return {"file_name": path, "image_id": 1, "height": H, "width": W, "annotations": anns}


@pytest.mark.parametrize("rotate", [False, True], ids=["no-turn", "turn"])
@pytest.mark.parametrize("flip", RANDOM_FLIPS)
@pytest.mark.parametrize("short_side", [H, 2 * H], ids=["no-resize", "resize-x2"])
def test_boxes_and_pixels_follow_each_transform(image_file, flip, rotate, short_side):
    path, rgb = image_file
    mapper = DatasetMapper(
        is_train=True, min_size=(short_side,), max_size=1000, random_flip=flip, flip_prob=1.0,
        random_rotate90=rotate, rotate90_prob=1.0,
    )
    out = mapper(_record(path, BOXES))
    scale = short_side / H
    resized = rgb if scale == 1 else cv2.resize(rgb, (int(W * scale), short_side), interpolation=cv2.INTER_LINEAR)
    want_img, want_boxes = expected(resized, BOXES * scale, flip, rotate)
    assert torch.equal(out["image"], torch.from_numpy(want_img.transpose(2, 0, 1).copy()))
    np.testing.assert_allclose(out["instances"]["boxes"].numpy(), want_boxes, atol=1e-3)
    assert out["instances"]["labels"].tolist() == LABELS
    if rotate:
        assert tuple(out["image"].shape[1:]) == (int(W * scale), short_side)


@pytest.mark.parametrize("flip", RANDOM_FLIPS)
@pytest.mark.parametrize("rotate", [False, True], ids=["no-turn", "turn"])
def test_boxes_still_frame_their_painted_pixels(flip, rotate):
    """Independent of the re-statement: paint each box's pixels, transform, and the painted
    pixels' bounding box must be the transformed box."""
    img = np.zeros((H, W, 3), np.uint8)
    boxes = BOXES[:2]
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        img[y1:y2, x1:x2, k] = 255
    pipeline = build_augmentations(True, (H,), 1000, random_flip=flip, flip_prob=1.0, rotate90=rotate, rotate90_prob=1.0)
    out = pipeline(image=img, bboxes=boxes, labels=np.array([0, 1]))
    for k, box in enumerate(np.asarray(out["bboxes"])):
        ys, xs = np.nonzero(out["image"][:, :, k])
        np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1e-3)


@pytest.mark.parametrize(
    "flip, rotate, orientations",
    [("none", False, 1), ("horizontal", False, 2), ("vertical", False, 2), ("both", False, 4), ("both", True, 8)],
)
def test_each_step_applies_independently_with_probability_half(flip, rotate, orientations):
    """A 2x3 image with distinct pixels: every orientation the steps can reach appears, each
    about equally often (p 0.5 per step); none outside the reachable set."""
    img = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    pipeline = build_augmentations(True, (2,), 1000, random_flip=flip, rotate90=rotate, seed=0)
    draws = 1600
    seen = collections.Counter(pipeline(image=img, bboxes=np.zeros((0, 4)), labels=np.zeros(0))["image"].tobytes()
                               for _ in range(draws))
    assert len(seen) == orientations
    for count in seen.values():
        assert abs(count / draws - 1 / orientations) < 0.05


def test_quarter_turn_always_turns_and_flip_names_match_the_config_checks():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    turn = QuarterTurn(p=1.0)
    for _ in range(8):
        np.testing.assert_array_equal(turn(image=img)["image"], np.rot90(img))
    assert tuple(RANDOM_FLIP_STEPS) == RANDOM_FLIPS
    with pytest.raises(ValueError, match="INPUT.RANDOM_FLIP must be one of"):
        build_augmentations(True, (2,), 1000, random_flip="diagonal")


def test_config_keys_reach_the_pipeline(image_file):
    from detection.config import get_cfg

    path, rgb = image_file
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (H,), 1000
    cfg.INPUT.RANDOM_FLIP, cfg.INPUT.RANDOM_ROTATE90 = "both", True
    mapper = DatasetMapper(cfg, is_train=True)
    names = [type(t).__name__ for t in mapper.augmentations.transforms]
    assert names == ["ResizeShortestEdge", "HorizontalFlip", "VerticalFlip", "QuarterTurn"]
    assert [t.p for t in mapper.augmentations.transforms[1:]] == [0.5, 0.5, 0.5]
    assert not DatasetMapper(get_cfg(), is_train=True).random_rotate90


def test_seeded_steps_draw_independently_and_reproducibly():
    """A seed must not tie the steps' draws together (albumentations seeds each step alike)."""
    img = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)

    def orientations(pipeline):
        return [pipeline(image=img, bboxes=np.zeros((0, 4)), labels=np.zeros(0))["image"].tobytes() for _ in range(64)]

    first = build_augmentations(True, (2,), 1000, random_flip="both", seed=3)
    assert len(set(orientations(first))) == 4
    assert orientations(build_augmentations(True, (2,), 1000, random_flip="both", seed=3)) == orientations(
        build_augmentations(True, (2,), 1000, random_flip="both", seed=3)
    )
    first.set_random_seed(5)  # what the loader does in each worker
    assert len(set(orientations(first))) == 4
