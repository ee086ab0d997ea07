"""`DefaultPredictor`: config + weights -> a callable that detects objects in one image.

    predictor = DefaultPredictor(cfg)          # builds the model, loads MODEL.WEIGHTS
    out = predictor(cv2.imread("photo.jpg"))   # {"boxes": [N,4], "scores": [N], "labels": [N]}

Preprocessing is the test-time `DatasetMapper`'s (resize to INPUT.MIN_SIZE_TEST, long side
capped at INPUT.MAX_SIZE_TEST, channels in INPUT.FORMAT); boxes come back in the
coordinates of the image passed in. Outputs are CPU tensors. The predictor is stateless
per call, so video / webcam front ends can feed it frame by frame.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

import numpy as np
import torch

__all__ = ["DefaultPredictor"]

logger = logging.getLogger(__name__)


class DefaultPredictor:
    def __init__(self, cfg) -> None:
        from detection.checkpoint import DetectionCheckpointer
        from detection.data import DatasetMapper
        from detection.modeling import build_model

        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        if not cfg.MODEL.WEIGHTS:
            logger.warning("MODEL.WEIGHTS is empty: predicting with an untrained model")
        self.device = torch.device(cfg.MODEL.DEVICE)
        self._mapper = DatasetMapper(self.cfg, is_train=False)
        self.input_format = self._mapper.image_format
        self.class_names: Optional[List[str]] = None
        if len(cfg.DATASETS.TEST):
            try:
                from detection.data import MetadataCatalog

                self.class_names = list(MetadataCatalog.get(cfg.DATASETS.TEST[0]).thing_classes)
            except (AttributeError, KeyError):
                self.class_names = None

    def preprocess(self, image: np.ndarray, format: str = "BGR") -> Dict[str, object]:
        """One model input dict from an ``HxWx3 uint8`` image in ``format`` order."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {getattr(image, 'shape', None)}")
        fmt = format.upper()
        if fmt not in ("BGR", "RGB"):
            raise ValueError(f"format must be 'BGR' or 'RGB', got {format!r}")
        rgb = image[:, :, ::-1] if fmt == "BGR" else image
        h, w = image.shape[:2]
        resized = self._mapper.augmentations(
            image=np.ascontiguousarray(rgb), bboxes=np.zeros((0, 4)), labels=np.zeros((0,), dtype=np.int64)
        )["image"]
        if self.input_format == "BGR":
            resized = resized[:, :, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor.to(self.device), "height": h, "width": w}

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, format: str = "BGR") -> Dict[str, torch.Tensor]:
        """Detections for one image (``format``: channel order of ``image``, OpenCV's BGR
        by default)."""
        out = self.model([self.preprocess(image, format)])[0]
        return {k: v.detach().cpu() for k, v in out.items()}
