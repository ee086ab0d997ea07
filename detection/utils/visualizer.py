"""Draw detections on images with OpenCV: boxes, class names and scores on a filled
label background, sized for legibility relative to the image.

    from detection.utils.visualizer import Visualizer
    vis = Visualizer(class_names=meta.thing_classes, score_threshold=0.5)
    annotated_bgr = vis.draw(bgr_image, predictions)   # predictions: {"boxes","scores","labels"}

Works on any ``uint8`` HxWx3 image in BGR (OpenCV's order, the default) or RGB
(``image_format="RGB"``); returns a new image in the same order, the input is untouched.
One frame at a time, so the same object serves images, video frames and webcams.
"""
from __future__ import annotations

import colorsys
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["Visualizer", "class_color", "draw_detections", "filter_predictions"]

Color = Tuple[int, int, int]


def class_color(label: int) -> Color:
    """A distinct, saturated RGB colour per class index (golden-ratio hue steps)."""
    hue = (0.07 + 0.618033988749895 * int(label)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _to_numpy(x: Any) -> Optional[np.ndarray]:
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _text_color(bg_rgb: Color) -> Color:
    r, g, b = bg_rgb
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def draw_detections(
    image: np.ndarray,
    boxes: Any,
    scores: Any = None,
    labels: Any = None,
    class_names: Optional[Sequence[str]] = None,
    *,
    score_threshold: float = 0.0,
    image_format: str = "BGR",
) -> np.ndarray:
    """Return a copy of ``image`` with the boxes (``[N, 4]`` xyxy pixels) drawn."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    fmt = image_format.upper()
    if fmt not in ("BGR", "RGB"):
        raise ValueError(f"image_format must be 'BGR' or 'RGB', got {image_format!r}")
    out = np.ascontiguousarray(image.astype(np.uint8, copy=True))
    boxes_np = _to_numpy(boxes)
    if boxes_np is None or boxes_np.size == 0:
        return out
    boxes_np = boxes_np.reshape(-1, 4).astype(np.float64)
    n = len(boxes_np)
    scores_np = _to_numpy(scores)
    scores_np = scores_np.reshape(-1).astype(np.float64) if scores_np is not None else None
    labels_np = _to_numpy(labels)
    labels_np = labels_np.reshape(-1).astype(np.int64) if labels_np is not None else np.zeros(n, dtype=np.int64)

    keep = np.arange(n)
    if scores_np is not None:
        keep = keep[scores_np >= score_threshold]
        keep = keep[np.argsort(scores_np[keep], kind="stable")]  # best drawn last, on top

    h, w = out.shape[:2]
    short = min(h, w)
    thickness = max(1, int(round(short / 400)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = float(np.clip(short / 900.0, 0.4, 1.2))
    font_thick = max(1, int(round(font_scale * 1.5)))
    pad = max(2, int(round(3 * font_scale)))

    for i in keep:
        x1, y1, x2, y2 = boxes_np[i]
        x1, x2 = int(round(np.clip(x1, 0, w - 1))), int(round(np.clip(x2, 0, w - 1)))
        y1, y2 = int(round(np.clip(y1, 0, h - 1))), int(round(np.clip(y2, 0, h - 1)))
        label = int(labels_np[i])
        rgb = class_color(label)
        color = rgb[::-1] if fmt == "BGR" else rgb
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)

        if class_names is not None and 0 <= label < len(class_names):
            name = str(class_names[label])
        else:
            name = f"class {label}"
        text = name if scores_np is None else f"{name} {scores_np[i] * 100:.0f}%"
        (tw, th), baseline = cv2.getTextSize(text, font, font_scale, font_thick)
        box_h = th + baseline + 2 * pad
        box_w = tw + 2 * pad
        # Above the box when there is room, else just inside its top edge; kept in the image.
        top = y1 - box_h if y1 - box_h >= 0 else min(y1, max(0, h - box_h))
        left = min(max(0, x1), max(0, w - box_w))
        cv2.rectangle(out, (left, top), (left + box_w, top + box_h), color, -1)
        tc = _text_color(rgb)
        cv2.putText(
            out, text, (left + pad, top + pad + th), font, font_scale, tc[::-1] if fmt == "BGR" else tc,
            font_thick, cv2.LINE_AA,
        )
    return out


class Visualizer:
    """Reusable drawing settings: class names, score threshold and colour order."""

    def __init__(
        self,
        class_names: Optional[Sequence[str]] = None,
        score_threshold: float = 0.5,
        image_format: str = "BGR",
    ) -> None:
        self.class_names: Optional[List[str]] = list(class_names) if class_names is not None else None
        self.score_threshold = float(score_threshold)
        self.image_format = image_format

    def draw(self, image: np.ndarray, predictions: Mapping[str, Any]) -> np.ndarray:
        return draw_detections(
            image,
            predictions.get("boxes"),
            predictions.get("scores"),
            predictions.get("labels"),
            self.class_names,
            score_threshold=self.score_threshold,
            image_format=self.image_format,
        )

    def count(self, predictions: Mapping[str, Any]) -> int:
        """How many detections `draw` would show."""
        scores = _to_numpy(predictions.get("scores"))
        if scores is None:
            boxes = _to_numpy(predictions.get("boxes"))
            return 0 if boxes is None else int(boxes.reshape(-1, 4).shape[0])
        return int((scores.reshape(-1) >= self.score_threshold).sum())


def filter_predictions(predictions: Mapping[str, Any], score_threshold: float) -> dict:
    """``boxes`` / ``scores`` / ``labels`` as numpy arrays, only detections with a score
    at or above ``score_threshold``, best first (the order a JSON reader expects)."""
    boxes = _to_numpy(predictions.get("boxes"))
    boxes = np.zeros((0, 4)) if boxes is None else boxes.reshape(-1, 4)
    n = len(boxes)
    scores = _to_numpy(predictions.get("scores"))
    scores = np.ones(n) if scores is None else scores.reshape(-1)
    labels = _to_numpy(predictions.get("labels"))
    labels = np.zeros(n, dtype=np.int64) if labels is None else labels.reshape(-1).astype(np.int64)
    keep = np.flatnonzero(scores >= score_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
