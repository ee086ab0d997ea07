"""A tiny ImageFolder of coloured shapes: for smoke tests and for trying the tool without
ImageNet (``python -m detection.classification.toy OUT_DIR``)."""
from __future__ import annotations

import argparse
import os
from typing import List, Sequence

import numpy as np

from detection.data.shapes import shape_masks

__all__ = ["TOY_CLASSES", "make_toy_image_folder"]

TOY_CLASSES = ("circle", "square", "triangle", "cross")  # shapes of detection.data.shapes
_COLORS = ((220, 40, 40), (40, 200, 40), (40, 80, 230), (230, 200, 30))  # RGB, one per class


def _draw(img: np.ndarray, kind: str, color: Sequence[int], rng: np.random.Generator) -> None:
    """One ``kind`` shape (drawn as litedet_shapes draws it) filled with ``color``, fully inside ``img``."""
    h, w = img.shape[:2]
    size = float(rng.integers(max(6, min(h, w) // 3), max(7, 2 * min(h, w) // 3)))
    cx, cy = rng.uniform(size / 2, w - size / 2), rng.uniform(size / 2, h - size / 2)
    fill, _ = shape_masks(kind, cx, cy, size, rng.uniform(0, 2 * np.pi), 1, (h, w), rng)
    alpha = fill[..., None].astype(np.float32) / 255.0
    img[:] = np.rint(img * (1.0 - alpha) + np.asarray(color, np.float32) * alpha).astype(np.uint8)


def make_toy_image_folder(
    root: str, num_classes: int = 3, train_per_class: int = 8, val_per_class: int = 4, size: int = 48, seed: int = 0
) -> List[str]:
    """Write ``root/{train,val}/<class>/<i>.png`` (one coloured shape on noise per image);
    returns the class names. Deterministic for a given seed."""
    import cv2

    if not 1 <= num_classes <= len(TOY_CLASSES):
        raise ValueError(f"num_classes must be 1..{len(TOY_CLASSES)}, got {num_classes}")
    rng = np.random.default_rng(seed)
    classes = list(TOY_CLASSES[:num_classes])
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(classes):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                hw = (int(rng.integers(size * 3 // 4, size + 1)), int(rng.integers(size * 3 // 4, size + 1)))
                img = rng.integers(60, 180, size=(*hw, 3), dtype=np.uint8)
                _draw(img, name, _COLORS[label], rng)
                cv2.imwrite(os.path.join(folder, f"{i:04d}.png"), img[:, :, ::-1])
    return classes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write a tiny ImageFolder of coloured shapes (train/ and val/).")
    parser.add_argument("root", help="output folder (DATASETS.ROOT)")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    classes = make_toy_image_folder(args.root, args.classes, args.train_per_class, args.val_per_class, args.size)
    print(f"wrote {args.root}/train and {args.root}/val with classes {classes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
