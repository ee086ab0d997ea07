"""`ClassificationTrainer`: the detector's training loop (`detection.engine.Trainer`:
checkpoints, metrics.json / TensorBoard, AMP, DDP, resume) with the classification model,
ImageFolder loaders, accuracy evaluator and the papers' LR schedules plugged in through
its ``build_*`` class methods; and the backbone export (`export_backbone`). The start-up
checks and data-dependent keys are `detection.config_checks.check_classification_config`.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from backbones.weights import save_backbone_checkpoint
from detection.engine import Trainer
from detection.model_info import ModelInfo

from .data import build_classification_test_loader, build_classification_train_loader, train_classes
from .evaluator import ClassificationEvaluator
from .model import build_classification_model
from .precise_bn import recalibrate_bn_stats
from .solver import build_classification_lr_scheduler

__all__ = ["ClassificationTrainer", "export_backbone"]

logger = logging.getLogger(__name__)


class ClassificationTrainer(Trainer):
    """``Trainer`` for backbone classification pretraining (see the module docstring)."""

    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        return build_classification_model(cfg)

    @classmethod
    def build_model_info(cls, cfg) -> Optional[ModelInfo]:
        """Checkpoints record the backbone and the training split's class folders."""
        classes = train_classes(cfg)
        return ModelInfo(
            "ClassificationModel", str(cfg.MODEL.BACKBONE.NAME), int(cfg.MODEL.NUM_CLASSES),
            None if classes is None else tuple(classes),
        )

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer: torch.optim.Optimizer):
        return build_classification_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_classification_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        return build_classification_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        return ClassificationEvaluator(topk=(1, 5), dataset_name=dataset_name)

    def after_step(self) -> None:
        # TEST.PRECISE_BN: after the last iteration, before model_final is saved and evaluated
        if self.iter + 1 == self.max_iter and self.cfg.TEST.PRECISE_BN.ENABLED:
            self.recalibrate_bn()
        super().after_step()

    def recalibrate_bn(self) -> None:
        """Re-estimate the BN statistics on TEST.PRECISE_BN.NUM_ITER training batches
        (`recalibrate_bn_stats`) from a loader of its own: the training loader's position
        and the RNG state saved with model_final stay those of the last iteration, so
        extending a finished run with --resume trains exactly as a longer run would (BN
        statistics do not enter a training step)."""
        num_iters = int(self.cfg.TEST.PRECISE_BN.NUM_ITER)
        logger.info("Recalibrating BatchNorm statistics on %d training batches ...", num_iters)
        loader = self.build_train_loader(self.cfg)
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):  # dropout draws in train mode
                count = recalibrate_bn_stats(self.unwrapped_model, loader, num_iters)
        finally:
            loader.close()
        logger.info("BatchNorm statistics of %d layers recalibrated", count)


def export_backbone(
    model: nn.Module, path: str, *, classes: Optional[Sequence[str]] = None, extra: Optional[Mapping[str, Any]] = None
) -> str:
    """Write ``model`` (a trained `ClassificationModel`) with `save_backbone_checkpoint`:
    litedet layout, read by `backbones.weights.load_checkpoint` and by a detector's
    ``MODEL.BACKBONE.WEIGHTS`` (the FC head is dropped there, and listed in the report)."""
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    meta = dict(extra or {})
    if classes is not None:
        meta["classes"] = list(classes)
    save_backbone_checkpoint(model, path, extra=meta)
    logger.info("Backbone checkpoint written to %s", os.path.abspath(path))
    return path
