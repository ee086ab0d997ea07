"""Dataset records and detector outputs as litedet passes them around, for tests that
build them by hand: a loader's record dict (XYXY_ABS boxes) and a detector's per-image
output."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Sequence

import numpy as np
import torch

__all__ = ["record", "annotation", "predictions"]


def record(image_id: Any, annotations: Iterable[dict] = (), height: int = 100, width: int = 100) -> Dict[str, Any]:
    """A dataset record of image ``<image_id>.jpg`` (``height`` x ``width``)."""
    return {
        "file_name": f"{image_id}.jpg",
        "image_id": image_id,
        "height": height,
        "width": width,
        "annotations": list(annotations),
    }


def annotation(bbox: Sequence[float], category_id: int = 0, *, iscrowd: int = 0, difficult: int = 0) -> Dict[str, Any]:
    """One annotation of a record: an XYXY_ABS box, its 0-based class and the two flags."""
    return {"bbox": list(bbox), "category_id": category_id, "iscrowd": iscrowd, "difficult": difficult}


def predictions(boxes: Sequence[Sequence[float]], scores: Sequence[float], labels: Sequence[int]) -> Dict[str, torch.Tensor]:
    """A detector's output for one image: float32 ``boxes`` [N, 4] (also for N = 0), float32
    ``scores`` and int64 ``labels``."""
    return {
        "boxes": torch.tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
        "scores": torch.tensor(np.asarray(scores, dtype=np.float32)),
        "labels": torch.tensor(np.asarray(labels, dtype=np.int64)),
    }
