"""A tiny ImageFolder of coloured shapes: for smoke tests and for trying the tool without
ImageNet (``python -m detection.classification.toy OUT_DIR``)."""
from __future__ import annotations

import argparse
import os
from typing import List, Sequence

import numpy as np

__all__ = ["TOY_CLASSES", "make_toy_image_folder"]

TOY_CLASSES = ("circle", "square", "triangle", "cross")
_COLORS = ((220, 40, 40), (40, 200, 40), (40, 80, 230), (230, 200, 30))  # RGB, one per class


def _draw(img: np.ndarray, kind: str, color: Sequence[int], rng: np.random.Generator) -> None:
    import cv2

    h, w = img.shape[:2]
    r = int(rng.integers(max(3, min(h, w) // 6), max(4, min(h, w) // 3)))
    cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
    c = tuple(int(v) for v in color)
    if kind == "circle":
        cv2.circle(img, (cx, cy), r, c, -1)
    elif kind == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), c, -1)
    elif kind == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
        cv2.fillPoly(img, [pts], c)
    else:
        t = max(2, r // 3)
        cv2.rectangle(img, (cx - r, cy - t), (cx + r, cy + t), c, -1)
        cv2.rectangle(img, (cx - t, cy - r), (cx + t, cy + r), c, -1)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny ImageFolder of coloured shapes (train/ and val/).")
    parser.add_argument("root", help="output folder (DATASETS.ROOT)")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    classes = make_toy_image_folder(args.root, args.classes, args.train_per_class, args.val_per_class, args.size)
    print(f"wrote {args.root}/train and {args.root}/val with classes {classes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
