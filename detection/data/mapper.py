"""`DatasetMapper`: one dataset record -> one model input (image tensor + targets).

Output (the contract with `detection.modeling`):
``{"image": uint8 [3, H, W] RGB after resize/augmentation, "height", "width"`` (original
size, for mapping predictions back), ``"image_id", "file_name", "instances": {"boxes":
float32 [N, 4] xyxy in the resized image, "labels": int64 [N] contiguous 0-based}}``.
``instances`` is only produced for training; at test time predictions are compared with
the dataset's own annotations by the evaluator, in original-image coordinates.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch

from ..config_checks import INPUT_FORMATS, check_choice, require
from .common import usable_annotation
from .errors import BadSampleError
from .bad_samples import EXIF_KEY
from .images import read_image_with_info
from .transforms import build_augmentations

__all__ = ["DatasetMapper"]

logger = logging.getLogger(__name__)


def _pick(explicit: Any, cfg: Any, path: str) -> Any:
    """Explicit argument, else the config value at ``path``."""
    if explicit is not None:
        return explicit
    node = cfg
    for part in path.split("."):
        node = getattr(node, part)
    return node


class DatasetMapper:
    """Read the image, apply the albumentations pipeline, and build the target tensors.

    Construct from a config, ``DatasetMapper(cfg, is_train=True)`` (``INPUT.*``,
    ``SEED``), or from plain arguments, ``DatasetMapper(is_train=True, min_size=(256,),
    max_size=512)``; explicit arguments override the config.

    Training drops ignore regions (crowd, difficult and COCO ``ignore`` boxes,
    `detection.data.conventions`); images left without boxes are kept as negatives with
    ``boxes`` of shape ``[0, 4]``. A training sample whose image carries an EXIF orientation
    is marked (`detection.data.bad_samples.EXIF_KEY`) for the loader's counted warning.
    """

    def __init__(
        self,
        cfg: Any = None,
        is_train: bool = True,
        *,
        min_size: Optional[Union[int, Sequence[int]]] = None,
        max_size: Optional[int] = None,
        min_size_sampling: Optional[str] = None,
        random_flip: Optional[str] = None,
        flip_prob: float = 0.5,
        random_rotate90: Optional[bool] = None,
        rotate90_prob: float = 0.5,
        color_jitter: Optional[float] = None,
        hue: Optional[float] = None,
        min_visibility: Optional[float] = None,
        max_image_pixels: Optional[int] = None,
        image_format: Optional[str] = None,
        seed: Optional[int] = None,
    ) -> None:
        self.is_train = bool(is_train)
        if cfg is None:  # plain-argument construction: anything not given is the project default
            from ..config import get_cfg

            cfg = get_cfg()
        if self.is_train:
            min_size = _pick(min_size, cfg, "INPUT.MIN_SIZE_TRAIN")
            max_size = _pick(max_size, cfg, "INPUT.MAX_SIZE_TRAIN")
        else:
            min_size = _pick(min_size, cfg, "INPUT.MIN_SIZE_TEST")
            max_size = _pick(max_size, cfg, "INPUT.MAX_SIZE_TEST")
        self.min_size = (int(min_size),) if isinstance(min_size, (int, np.integer)) else tuple(int(s) for s in min_size)
        self.max_size = int(max_size)
        # detectron2 accepts only one test size; several would make evaluation random.
        require(self.is_train or len(self.min_size) == 1, f"INPUT.MIN_SIZE_TEST must be a single size, got {self.min_size}")
        self.min_size_sampling = str(_pick(min_size_sampling, cfg, "INPUT.MIN_SIZE_TRAIN_SAMPLING"))
        self.random_flip = str(_pick(random_flip, cfg, "INPUT.RANDOM_FLIP"))
        self.flip_prob = float(flip_prob)
        self.random_rotate90 = bool(_pick(random_rotate90, cfg, "INPUT.RANDOM_ROTATE90"))
        self.rotate90_prob = float(rotate90_prob)
        self.color_jitter = float(_pick(color_jitter, cfg, "INPUT.AUG.COLOR_JITTER"))
        self.hue = float(_pick(hue, cfg, "INPUT.AUG.HUE"))
        self.min_visibility = float(_pick(min_visibility, cfg, "INPUT.AUG.MIN_VISIBILITY"))
        self.max_image_pixels = int(_pick(max_image_pixels, cfg, "INPUT.MAX_IMAGE_PIXELS") or 0)
        self.image_format = check_choice("INPUT.FORMAT", str(_pick(image_format, cfg, "INPUT.FORMAT")).upper(), INPUT_FORMATS)
        if seed is None and int(cfg.SEED) >= 0:
            seed = int(cfg.SEED)
        self.augmentations = build_augmentations(
            self.is_train,
            self.min_size,
            self.max_size,
            min_size_sampling=self.min_size_sampling,
            random_flip=self.random_flip,
            flip_prob=self.flip_prob,
            rotate90=self.random_rotate90,
            rotate90_prob=self.rotate90_prob,
            color_jitter=self.color_jitter,
            hue=self.hue,
            min_visibility=self.min_visibility,
            seed=seed,
        )
        logger.debug("DatasetMapper(is_train=%s): %s", self.is_train, self.augmentations)

    def set_random_seed(self, seed: Optional[int]) -> None:
        """Reseed the augmentation RNG.

        albumentations keeps its own RNG inside ``Compose``; forked data-loader workers
        would otherwise all start from the same state and produce identical "random"
        augmentations, so the loader calls this in each worker.
        """
        self.augmentations.set_random_seed(seed)

    def __call__(self, record: Dict[str, Any]) -> Dict[str, Any]:
        try:
            return self._map(record)
        except BadSampleError:
            raise
        except Exception as err:
            # Unexpected errors keep their type and traceback (they are bugs, not bad
            # data) but say which sample triggered them, also from DataLoader workers,
            # whose re-raised traceback text includes the note.
            if hasattr(err, "add_note"):
                err.add_note(f"while mapping sample {record.get('file_name')!r} (image_id {record.get('image_id')!r})")
            raise

    def _map(self, record: Dict[str, Any]) -> Dict[str, Any]:
        file_name = record["file_name"]
        height, width = int(record["height"]), int(record["width"])
        image, info = read_image_with_info(file_name, self.max_image_pixels or None, expected_hw=(height, width))

        boxes = np.zeros((0, 4), dtype=np.float64)
        labels = np.zeros((0,), dtype=np.int64)
        if self.is_train:
            kept = [a for a in record.get("annotations", []) if usable_annotation(a)]
            if kept:
                boxes = np.asarray([a["bbox"] for a in kept], dtype=np.float64).reshape(-1, 4)
                labels = np.asarray([a["category_id"] for a in kept], dtype=np.int64)
        try:
            if self.is_train:
                out = self.augmentations(image=image, bboxes=boxes, labels=labels)
            else:  # test time: the evaluator compares in original coordinates, no boxes needed
                out = self.augmentations(image=image)
        except ValueError as err:  # albumentations' bbox checks: say which image
            raise BadSampleError(file_name, f"augmentation failed: {err}") from err

        img = out["image"]
        if self.image_format == "BGR":
            img = img[:, :, ::-1]
        result: Dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "height": height,
            "width": width,
            "image_id": record.get("image_id"),
            "file_name": file_name,
        }
        if self.is_train:
            out_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            out_labels = np.rint(np.asarray(out["labels"], dtype=np.float64)).astype(np.int64).reshape(-1)
            # A sub-pixel box can collapse in float32; the model rejects empty boxes.
            ok = (out_boxes[:, 2] > out_boxes[:, 0]) & (out_boxes[:, 3] > out_boxes[:, 1])
            out_boxes, out_labels = out_boxes[ok], out_labels[ok]
            result["instances"] = {
                "boxes": torch.from_numpy(out_boxes),
                "labels": torch.from_numpy(out_labels),
            }
            if info.exif_orientation != 1:  # counted and reported in the main process
                result[EXIF_KEY] = (file_name, info.exif_orientation)
        return result

    def __repr__(self) -> str:
        return (
            f"DatasetMapper(is_train={self.is_train}, min_size={self.min_size}, max_size={self.max_size}, "
            f"flip={self.random_flip!r}@{self.flip_prob}, rotate90={self.random_rotate90}@{self.rotate90_prob}, "
            f"color_jitter={self.color_jitter}, hue={self.hue})"
        )
