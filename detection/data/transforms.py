"""The albumentations pipelines used by `DatasetMapper`.

detectron2 resizes with ``ResizeShortestEdge`` (short side sampled from a list, long side
capped). albumentations has no exact equivalent — ``SmallestMaxSize`` ignores the cap and
``LongestMaxSize`` also upsamples — so `ResizeShortestEdge` below implements it as a
regular albumentations ``DualTransform``; boxes then follow every transform through
albumentations' own bbox machinery (``format="pascal_voc"``).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

# albumentations >= 1.4 contacts PyPI on import to check for updates; never wanted here
# (offline machines, data-loader workers).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "BadSampleError",
    "read_image",
    "QuarterTurn",
    "RANDOM_FLIP_STEPS",
    "SharedRandomCompose",
    "ResizeShortestEdge",
    "build_augmentations",
    "resize_shortest_edge_shape",
]

logger = logging.getLogger(__name__)

# Kept importable from here (their historical home).
from .errors import BadSampleError  # noqa: E402
from .images import read_image  # noqa: E402


def resize_shortest_edge_shape(h: int, w: int, short_edge: int, max_size: int) -> Tuple[int, int]:
    """Output ``(h, w)`` of detectron2's ``ResizeShortestEdge``: short side to
    ``short_edge``, then everything scaled down if the long side exceeds ``max_size``."""
    scale = short_edge / min(h, w)
    newh, neww = (short_edge, scale * w) if h < w else (scale * h, short_edge)
    if max_size > 0 and max(newh, neww) > max_size:
        s = max_size / max(newh, neww)
        newh, neww = newh * s, neww * s
    return max(1, int(newh + 0.5)), max(1, int(neww + 0.5))


class ResizeShortestEdge(A.DualTransform):
    """Resize keeping the aspect ratio: short side to a size sampled from ``short_edge_length``
    (``"choice"``: one of the values; ``"range"``: uniform integer in ``[min, max]``), long
    side capped at ``max_size`` (0 = no cap).

    Boxes are handled by albumentations in normalised coordinates, which a resize does not
    change, so they scale exactly with the image's new width/height.
    """

    def __init__(
        self,
        short_edge_length: Union[int, Sequence[int]],
        max_size: int = 0,
        sample_style: str = "choice",
        interpolation: int = cv2.INTER_LINEAR,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        sizes = (int(short_edge_length),) if isinstance(short_edge_length, (int, np.integer)) else tuple(
            int(s) for s in short_edge_length
        )
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"ResizeShortestEdge: short_edge_length must be positive sizes, got {short_edge_length!r}")
        if sample_style not in ("choice", "range"):
            raise ValueError(f"ResizeShortestEdge: sample_style must be 'choice' or 'range', got {sample_style!r}")
        if sample_style == "range" and len(sizes) != 2:
            raise ValueError(f"ResizeShortestEdge: 'range' needs exactly two sizes [min, max], got {sizes}")
        self.short_edge_length = sizes
        self.max_size = int(max_size)
        self.sample_style = sample_style
        self.interpolation = interpolation

    def get_params_dependent_on_data(self, params: Dict[str, Any], data: Dict[str, Any]) -> Dict[str, Any]:
        h, w = params["shape"][:2]
        if self.sample_style == "range":
            size = self.py_random.randint(self.short_edge_length[0], self.short_edge_length[1])
        else:
            size = self.py_random.choice(self.short_edge_length)
        return {"out_hw": resize_shortest_edge_shape(h, w, size, self.max_size)}

    def apply(self, img: np.ndarray, out_hw: Tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        if img.shape[:2] == tuple(out_hw):
            return img
        return cv2.resize(img, (out_hw[1], out_hw[0]), interpolation=self.interpolation)

    def apply_to_mask(self, mask: np.ndarray, out_hw: Tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        if mask.shape[:2] == tuple(out_hw):
            return mask
        return cv2.resize(mask, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST)

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes  # normalised coordinates are invariant to a resize

    def apply_to_keypoints(self, keypoints: np.ndarray, out_hw: Tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        h, w = params["shape"][:2]
        kp = keypoints.copy()
        kp[:, 0] *= out_hw[1] / w
        kp[:, 1] *= out_hw[0] / h
        return kp

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return ("short_edge_length", "max_size", "sample_style", "interpolation")


class QuarterTurn(A.RandomRotate90):
    """Rotate by exactly 90 degrees counter-clockwise (``np.rot90``) with probability ``p``;
    boxes follow. Unlike ``RandomRotate90``, whose turn count is drawn from 0-3 and so is
    the identity a quarter of the time even at ``p=1``, one applied turn is always a turn:
    after independent horizontal and vertical flips (``INPUT.RANDOM_FLIP "both"``) it makes
    all 8 orientations of the dihedral group equally likely."""

    def get_params(self) -> Dict[str, int]:
        return {"factor": 1}


class SharedRandomCompose(A.Compose):
    """``A.Compose`` whose steps draw from one random stream.

    ``A.Compose.set_random_seed`` gives every step its own generator seeded with the same
    seed, so seeded steps make identical draws: two flips at p 0.5 would always fire
    together (a 180-degree turn, never a mirror), and the resize's size choice would be tied
    to the flip. One shared stream keeps the steps independent and the run reproducible.
    """

    def set_random_seed(self, seed: Optional[int]) -> None:
        super().set_random_seed(seed)
        self.set_random_state(self.random_generator, self.py_random)


#: INPUT.RANDOM_FLIP value -> the flips applied, each independently with the flip probability.
RANDOM_FLIP_STEPS: Dict[str, Tuple[type, ...]] = {
    "none": (),
    "horizontal": (A.HorizontalFlip,),
    "vertical": (A.VerticalFlip,),
    "both": (A.HorizontalFlip, A.VerticalFlip),
}


def build_augmentations(
    is_train: bool,
    min_size: Union[int, Sequence[int]],
    max_size: int,
    min_size_sampling: str = "choice",
    random_flip: str = "horizontal",
    flip_prob: float = 0.5,
    rotate90: bool = False,
    rotate90_prob: float = 0.5,
    color_jitter: float = 0.0,
    hue: float = 0.0,
    min_visibility: float = 0.0,
    seed: Optional[int] = None,
) -> A.Compose:
    """The albumentations pipeline for training (resize, flips, optional quarter turn,
    optional colour jitter) or testing (resize only, none when ``min_size`` is 0; image
    only). Training boxes are ``pascal_voc`` (``[x1, y1, x2, y2]`` pixels) with their labels
    in ``labels``.

    ``random_flip`` is a key of `RANDOM_FLIP_STEPS`; each flip it names applies on its own
    with ``flip_prob``. ``rotate90`` adds a `QuarterTurn` with ``rotate90_prob`` after the
    flips. The geometric steps and the colour jitter come after the resize so they run on
    the (usually smaller) resized image.
    """
    sizes = (min_size,) if isinstance(min_size, (int, np.integer)) else tuple(min_size)
    steps: list = []
    if is_train or tuple(sizes) != (0,):  # detectron2: MIN_SIZE_TEST = 0 disables test resizing
        steps.append(ResizeShortestEdge(sizes, max_size, sample_style=min_size_sampling if is_train else "choice"))
    if is_train:
        flip = (random_flip or "none").lower()
        if flip not in RANDOM_FLIP_STEPS:
            raise ValueError(f"INPUT.RANDOM_FLIP must be one of {list(RANDOM_FLIP_STEPS)}, got {random_flip!r}")
        steps.extend(step(p=flip_prob) for step in RANDOM_FLIP_STEPS[flip])
        if rotate90:
            steps.append(QuarterTurn(p=rotate90_prob))
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"INPUT.AUG.HUE must be in [0, 0.5] (fraction of the hue circle), got {hue}")
        if color_jitter < 0:
            raise ValueError(f"INPUT.AUG.COLOR_JITTER must be >= 0, got {color_jitter}")
        if color_jitter > 0 or hue > 0:
            steps.append(
                A.ColorJitter(
                    brightness=(max(0.0, 1 - color_jitter), 1 + color_jitter),
                    contrast=(max(0.0, 1 - color_jitter), 1 + color_jitter),
                    saturation=(max(0.0, 1 - color_jitter), 1 + color_jitter),
                    hue=(-hue, hue),
                    p=1.0,
                )
            )
    bbox_params = A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_visibility=float(min_visibility),
        clip=True,
        filter_invalid_bboxes=True,
    )
    # Test time needs no boxes: predictions are mapped back to the original image instead.
    return SharedRandomCompose(steps, bbox_params=bbox_params if is_train else None, seed=seed)
