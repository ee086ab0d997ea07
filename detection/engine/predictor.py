"""`DefaultPredictor`: config + weights -> a callable that detects objects in one image.

    predictor = DefaultPredictor(cfg)          # builds the model, loads MODEL.WEIGHTS
    out = predictor(cv2.imread("photo.jpg"))   # {"boxes": [N,4], "scores": [N], "labels": [N]}

Preprocessing is the test-time `DatasetMapper`'s (resize to INPUT.MIN_SIZE_TEST, long side
capped at INPUT.MAX_SIZE_TEST, channels in INPUT.FORMAT); boxes come back in the
coordinates of the image passed in. Outputs are CPU tensors. The predictor is stateless
per call, so video / webcam front ends can feed it frame by frame.

MODEL.WEIGHTS must fill every tensor of the model and record the config's architecture
(`detection.checkpoint.CheckpointError` otherwise). ``predictor.class_names`` are the
names the checkpoint records (`detection.model_info`), else those of the first
DATASETS.TEST dataset, else None; a DATASETS.TEST dataset with other classes than the
checkpoint's is a `detection.model_info.ClassMismatchError`.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["DefaultPredictor", "class_names_for"]

logger = logging.getLogger(__name__)


class DefaultPredictor:
    def __init__(self, cfg) -> None:
        from detection.checkpoint import DetectionCheckpointer
        from detection.data import DatasetMapper
        from detection.model_info import model_info_from_cfg
        from detection.modeling import build_model

        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        checkpointer = DetectionCheckpointer(self.model, model_info=model_info_from_cfg(cfg), require_complete=True)
        checkpointer.load(cfg.MODEL.WEIGHTS)
        if not cfg.MODEL.WEIGHTS:
            logger.warning("MODEL.WEIGHTS is empty: predicting with an untrained model")
        self.device = torch.device(cfg.MODEL.DEVICE)
        self._mapper = DatasetMapper(self.cfg, is_train=False)
        self.input_format = self._mapper.image_format
        recorded = checkpointer.loaded_info.thing_classes if checkpointer.loaded_info else None
        self.class_names: Optional[List[str]] = class_names_for(cfg, recorded)

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


def class_names_for(cfg, recorded: Optional[Sequence[str]]) -> Optional[List[str]]:
    """The names of a model's labels: those its checkpoint ``recorded`` (checked against the
    first DATASETS.TEST dataset by `match_classes`; another order is fine, the recorded one
    is the model's), else the dataset's, else None (logged: labels are shown as numbers)."""
    from detection.data import MetadataCatalog
    from detection.model_info import describe_classes, match_classes

    dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
    listed = MetadataCatalog.get(dataset).get("thing_classes") if dataset in MetadataCatalog else None
    if recorded is not None:
        if listed is not None and match_classes(
            recorded, listed, model=f"the model in MODEL.WEIGHTS {cfg.MODEL.WEIGHTS}",
            dataset=f"DATASETS.TEST dataset {dataset!r}",
        ):
            logger.info(
                "DATASETS.TEST dataset %r lists the model's classes in another order: using the order MODEL.WEIGHTS "
                "records, %s", dataset, describe_classes(recorded),
            )
        logger.info("Class names from MODEL.WEIGHTS %s: %s", cfg.MODEL.WEIGHTS, describe_classes(recorded))
        return list(recorded)
    if listed is not None:
        logger.info("Class names from DATASETS.TEST dataset %r: %s", dataset, describe_classes(listed))
        return list(listed)
    logger.warning(
        "no class names: MODEL.WEIGHTS records none and no DATASETS.TEST dataset lists them; labels are shown as "
        "'class N'"
    )
    return None
