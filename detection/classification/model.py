"""The trainable classification model: a backbone's `ImageClassifier` form that also
normalises its input and computes its loss, so the shared training loop can drive it.

Subclassing `ImageClassifier` keeps the state-dict keys identical (``backbone.stages.*``,
``fc.*``), so checkpoints of this model are litedet-layout classifier checkpoints that
`backbones.weights.load_checkpoint` and ``MODEL.BACKBONE.WEIGHTS`` of a detector read.
"""
from __future__ import annotations

import logging
from typing import Dict, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

import backbones
from backbones import Backbone, ImageClassifier

from .data import ClassificationBatch

__all__ = ["ClassificationModel", "build_classification_model"]

logger = logging.getLogger(__name__)


class ClassificationModel(ImageClassifier):
    """``forward(batch)``: ``{"loss_cls": ...}`` in training mode, logits ``(N, classes)``
    in eval mode. ``batch`` is a `ClassificationBatch` or an image tensor; images are RGB
    0-255 (uint8 or float) and are normalised here with ``pixel_mean`` / ``pixel_std``."""

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        fc_bias: bool = True,
    ) -> None:
        super().__init__(backbone, num_classes=num_classes, dropout=dropout, fc_bias=fc_bias)
        if len(pixel_mean) != 3 or len(pixel_std) != 3:
            raise ValueError(f"pixel_mean/pixel_std need 3 values (RGB), got {list(pixel_mean)} / {list(pixel_std)}")
        # Not persistent: the checkpoint holds only the network (loads anywhere a classifier does).
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.label_smoothing = float(label_smoothing)

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    def normalize(self, images: Tensor) -> Tensor:
        images = images.to(self.device, non_blocking=True).float()
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, batch: Union[ClassificationBatch, Tensor]) -> Union[Tensor, Dict[str, Tensor]]:  # type: ignore[override]
        images = batch.images if isinstance(batch, ClassificationBatch) else batch
        logits = super().forward(self.normalize(images))
        if not self.training:
            return logits
        if not isinstance(batch, ClassificationBatch):
            raise TypeError("training needs a ClassificationBatch (images and labels)")
        labels = batch.labels.to(self.device, non_blocking=True)
        return {"loss_cls": F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)}


def build_classification_model(cfg) -> ClassificationModel:
    """``MODEL.BACKBONE.NAME``'s classifier with ``MODEL.NUM_CLASSES`` outputs (resolved); its
    FC has a bias unless the variant's authors released it without one, as `build_classifier`."""
    num_classes = int(cfg.MODEL.NUM_CLASSES)
    if num_classes <= 0:
        raise ValueError("MODEL.NUM_CLASSES must be positive (0 is resolved from the training split at start-up)")
    backbone = backbones.build_backbone(cfg.MODEL.BACKBONE.NAME, out_features=None)
    model = ClassificationModel(
        backbone,
        num_classes,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
        dropout=float(cfg.MODEL.DROPOUT),
        label_smoothing=float(cfg.MODEL.LABEL_SMOOTHING),
        fc_bias=backbones.released_fc_bias(cfg.MODEL.BACKBONE.NAME),
    )
    n = sum(p.numel() for p in model.parameters())
    logger.info("Model: %s classifier, %d classes, %.2fM parameters", cfg.MODEL.BACKBONE.NAME, num_classes, n / 1e6)
    return model
