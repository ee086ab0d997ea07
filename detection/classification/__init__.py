"""Classification pretraining of the backbones on ImageFolder data (ImageNet layout).

``tools/train_classifier.py`` drives it; see docs/classification.md. The pieces:
`get_classification_cfg` (config), `resolve_config` (its checks and data-dependent keys,
`detection.config_checks.check_classification_config`), `ClassificationTrainer` (the
detector's training loop with the classification builders), ImageFolder loaders,
`ClassificationEvaluator` (top-1 / top-5), the papers' LR schedules, and `export_backbone`.
"""
from detection.config_checks import check_classification_config as resolve_config

from .config import get_classification_cfg, load_classification_config
from .data import (
    ClassificationBatch,
    ImageFolderDataset,
    ImageFolderError,
    build_classification_test_loader,
    build_classification_train_loader,
    scan_image_folder,
)
from .evaluator import ClassificationEvaluator
from .model import ClassificationModel, build_classification_model
from .solver import build_classification_lr_scheduler, epoch_step_lr_lambda, linear_decay_lr_lambda
from .trainer import ClassificationTrainer, export_backbone

__all__ = [
    "get_classification_cfg",
    "load_classification_config",
    "ClassificationBatch",
    "ImageFolderDataset",
    "ImageFolderError",
    "build_classification_train_loader",
    "build_classification_test_loader",
    "scan_image_folder",
    "ClassificationEvaluator",
    "ClassificationModel",
    "build_classification_model",
    "build_classification_lr_scheduler",
    "epoch_step_lr_lambda",
    "linear_decay_lr_lambda",
    "ClassificationTrainer",
    "export_backbone",
    "resolve_config",
]
