"""`ClassificationTrainer`: the detector's training loop (`detection.engine.Trainer`:
checkpoints, metrics.json / TensorBoard, AMP, DDP, resume) with the classification model,
ImageFolder loaders, accuracy evaluator and the papers' LR schedules plugged in through
its ``build_*`` class methods. Plus the start-up resolution of data-dependent keys
(`resolve_config`) and the backbone export (`export_backbone`).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from backbones.weights import save_backbone_checkpoint
from detection.config import ConfigError
from detection.config.validate import check_backbone_name, resolve_device
from detection.engine import Trainer

from .data import (
    build_classification_test_loader,
    build_classification_train_loader,
    iters_per_epoch,
    list_classes,
    scan_image_folder,
    split_dir,
    train_classes,
)
from .evaluator import ClassificationEvaluator
from .model import build_classification_model
from .precise_bn import recalibrate_bn_stats
from .solver import build_classification_lr_scheduler, uses_epochs

__all__ = ["ClassificationTrainer", "resolve_config", "export_backbone"]

logger = logging.getLogger(__name__)


class ClassificationTrainer(Trainer):
    """``Trainer`` for backbone classification pretraining (see the module docstring)."""

    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        return build_classification_model(cfg)

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


def resolve_config(cfg, *, train: bool = True):
    """Fill in the keys that depend on the data and check the folders, returning a frozen
    copy: ``MODEL.NUM_CLASSES`` (0 -> number of training classes), ``SOLVER.ITERS_PER_EPOCH``
    (0 -> ceil(training images / IMS_PER_BATCH)) and, with ``SOLVER.MAX_EPOCHS`` > 0,
    ``SOLVER.MAX_ITER``; with ``TEST.PRECISE_BN.ENABLED``, ``TEST.PRECISE_BN.NUM_ITER`` (0 -> one
    epoch). Raises `ConfigError` / `ImageFolderError` naming the key or path."""
    cfg = cfg.clone()
    cfg.defrost()
    check_backbone_name(cfg.MODEL.BACKBONE.NAME)
    resolve_device(cfg)  # unusable MODEL.DEVICE -> ConfigError
    s = cfg.SOLVER
    if s.IMS_PER_BATCH <= 0:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH must be positive, got {s.IMS_PER_BATCH}")

    if len(cfg.DATASETS.TRAIN) != 1:
        raise ConfigError(f"DATASETS.TRAIN must name exactly one split folder, got {list(cfg.DATASETS.TRAIN)}")
    classes = train_classes(cfg)
    if train:
        classes, samples = scan_image_folder(split_dir(cfg, cfg.DATASETS.TRAIN[0]))
        if uses_epochs(cfg) and s.ITERS_PER_EPOCH <= 0:
            s.ITERS_PER_EPOCH = iters_per_epoch(len(samples), int(s.IMS_PER_BATCH))
        if s.MAX_EPOCHS > 0:
            s.MAX_ITER = int(s.MAX_EPOCHS) * int(s.ITERS_PER_EPOCH)
        if s.MAX_ITER <= 0:
            raise ConfigError(f"SOLVER.MAX_ITER must be positive, got {s.MAX_ITER}")
        precise_bn = cfg.TEST.PRECISE_BN
        if precise_bn.ENABLED and precise_bn.NUM_ITER < 0:
            raise ConfigError(f"TEST.PRECISE_BN.NUM_ITER must be positive (0 = one epoch), got {precise_bn.NUM_ITER}")
        if precise_bn.ENABLED and precise_bn.NUM_ITER == 0:
            precise_bn.NUM_ITER = iters_per_epoch(len(samples), int(s.IMS_PER_BATCH))
    elif classes is None:
        # No training split: each test split is labelled by its own sorted class folders,
        # which matches the training labels only when it holds every class.
        for split in cfg.DATASETS.TEST:
            found = list_classes(split_dir(cfg, split))
            if cfg.MODEL.NUM_CLASSES <= 0:
                cfg.MODEL.NUM_CLASSES = len(found)
            elif len(found) != cfg.MODEL.NUM_CLASSES:
                raise ConfigError(
                    f"MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES} but {split_dir(cfg, split)} has {len(found)} "
                    f"class folders, and without the training split {split_dir(cfg, cfg.DATASETS.TRAIN[0])} the "
                    "labels cannot be matched to class names: provide it (its class folders suffice, even empty)"
                )

    if classes is not None:
        if cfg.MODEL.NUM_CLASSES <= 0:
            cfg.MODEL.NUM_CLASSES = len(classes)
        elif cfg.MODEL.NUM_CLASSES != len(classes):
            raise ConfigError(
                f"MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES} but {split_dir(cfg, cfg.DATASETS.TRAIN[0])} "
                f"has {len(classes)} class folders"
            )
    if cfg.MODEL.NUM_CLASSES <= 0:
        raise ConfigError("MODEL.NUM_CLASSES is 0 and no class folders were found to count; set it explicitly")
    for split in cfg.DATASETS.TEST:  # fail now, not after hours of training
        scan_image_folder(split_dir(cfg, split), classes)
    if train:  # the schedule's own checks (unknown name, missing ITERS_PER_EPOCH, ...)
        dummy = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=float(s.BASE_LR))
        build_classification_lr_scheduler(cfg, dummy)
    cfg.freeze()
    return cfg


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
