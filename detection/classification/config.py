"""Default configuration for ImageNet-style classification pretraining of the backbones.

Key names follow detectron2 (and litedet's detector config) wherever the meaning matches:
``MODEL.BACKBONE.NAME``, ``MODEL.WEIGHTS``, ``MODEL.PIXEL_MEAN/STD``, ``SOLVER.*``,
``INPUT.RANDOM_FLIP``, ``INPUT.MIN_SIZE_TEST``, ``DATALOADER.NUM_WORKERS``, ``TEST.EVAL_PERIOD``,
``OUTPUT_DIR``, ``SEED``. Classification-only keys are commented below.

``SOLVER`` starts as a copy of the detector's ``SOLVER`` section (so the shared training loop
finds every key it reads: AMP, gradient clipping, checkpoint period, ...) with the
classification defaults and the epoch keys added on top.
"""
from __future__ import annotations

from typing import Sequence

from fvcore.common.config import CfgNode as CN

from detection.config import CfgNode, get_cfg, load_config

__all__ = ["get_classification_cfg", "load_classification_config"]

_DETECTION_DEFAULTS = get_cfg()

_C = CN()
_C.VERSION = 2

# ---------------------------------------------------------------------------- model
_C.MODEL = CN()
_C.MODEL.DEVICE = "cpu"
# A checkpoint to start from (or to evaluate with --eval-only): a litedet classification
# checkpoint (model_final.pth), or backbone weights in any layout `backbones.weights` reads.
_C.MODEL.WEIGHTS = ""
# Same normalisation as the detectors (RGB, 0-255 scale, ImageNet statistics), so the
# exported backbone sees the same input statistics when fine-tuned for detection.
_C.MODEL.PIXEL_MEAN = list(_DETECTION_DEFAULTS.MODEL.PIXEL_MEAN)
_C.MODEL.PIXEL_STD = list(_DETECTION_DEFAULTS.MODEL.PIXEL_STD)
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "shufflenet_v2_1.0x"  # any name from `backbones.list_backbones()`
# Number of classes of the FC head; 0 = the number of class folders of the training split.
_C.MODEL.NUM_CLASSES = 0
_C.MODEL.DROPOUT = 0.0  # before the FC layer
_C.MODEL.LABEL_SMOOTHING = 0.0  # cross-entropy label smoothing epsilon

# ---------------------------------------------------------------------------- input
_C.INPUT = CN()
# Training: random-resized crop (area fraction CROP_SCALE, aspect ratio CROP_RATIO) to
# TRAIN_CROP_SIZE x TRAIN_CROP_SIZE, then flip and optional colour jitter.
_C.INPUT.TRAIN_CROP_SIZE = 224
_C.INPUT.CROP_SCALE = (0.08, 1.0)  # Inception-style; raise the minimum for "less aggressive" scale aug
_C.INPUT.CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_C.INPUT.RANDOM_FLIP = "horizontal"  # or "none"
_C.INPUT.COLOR_JITTER = 0.0  # brightness = contrast = saturation strength; 0 = off
# Evaluation: resize the short side to MIN_SIZE_TEST (or the whole image to a
# MIN_SIZE_TEST square with TEST_RESIZE_SQUARE), then a centre TEST_CROP_SIZE crop.
_C.INPUT.MIN_SIZE_TEST = 256
_C.INPUT.TEST_RESIZE_SQUARE = False
_C.INPUT.TEST_CROP_SIZE = 224

# ---------------------------------------------------------------------------- data
_C.DATASETS = CN()
# ImageFolder layout: ROOT/<split>/<class name>/<image>. TRAIN and TEST name the splits.
_C.DATASETS.ROOT = "datasets/imagenet"
_C.DATASETS.TRAIN = ("train",)
_C.DATASETS.TEST = ("val",)

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4

# ---------------------------------------------------------------------------- solver
_C.SOLVER = _DETECTION_DEFAULTS.SOLVER.clone()
_C.SOLVER.IMS_PER_BATCH = 256  # total over all processes
_C.SOLVER.BASE_LR = 0.1
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.WEIGHT_DECAY = 4e-5
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0  # BN parameters and biases
# Classification schedules (detection/classification/solver.py) besides the detector's
# WarmupMultiStepLR / WarmupCosineLR:
#   "LinearDecayLR": linear from BASE_LR at iteration 0 to BASE_LR_END at MAX_ITER.
#   "EpochStepLR":   BASE_LR * GAMMA ** floor(epoch / STEP_EPOCHS), epoch = iter // ITERS_PER_EPOCH.
_C.SOLVER.LR_SCHEDULER_NAME = "LinearDecayLR"
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.MAX_ITER = 300000
# > 0: train for this many epochs; MAX_ITER is then set to MAX_EPOCHS * ITERS_PER_EPOCH.
_C.SOLVER.MAX_EPOCHS = 0
# Iterations per epoch; 0 = ceil(training images / IMS_PER_BATCH), filled in at start-up.
_C.SOLVER.ITERS_PER_EPOCH = 0
_C.SOLVER.STEP_EPOCHS = 30  # EpochStepLR: multiply the LR by GAMMA every STEP_EPOCHS epochs
_C.SOLVER.STEPS = ()
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.WARMUP_ITERS = 0
_C.SOLVER.CHECKPOINT_PERIOD = 10000

# ---------------------------------------------------------------------------- test
_C.TEST = CN()
_C.TEST.EVAL_PERIOD = 0  # 0 = only at the end
_C.TEST.IMS_PER_BATCH = 100  # per process
# Re-estimate the BatchNorm statistics of the final weights before the last checkpoint and
# evaluation (the ShuffleNet-Series recipe; detection/classification/precise_bn.py):
# NUM_ITER training batches through the model in train mode without gradients, each BN's
# statistics the plain average over them. NUM_ITER 0 = one epoch (resolved at start-up).
_C.TEST.PRECISE_BN = CN()
_C.TEST.PRECISE_BN.ENABLED = False
_C.TEST.PRECISE_BN.NUM_ITER = 0

_C.OUTPUT_DIR = "./output/classification"
_C.SEED = -1  # < 0: random seed, logged
_C.CUDNN_BENCHMARK = True  # fixed input size: cuDNN autotuning pays off


def get_classification_cfg() -> CfgNode:
    """A fresh copy of the classification defaults."""
    return CfgNode(_C.clone(), new_allowed=False)


def load_classification_config(config_file: str = "", overrides: Sequence[str] = ()) -> CfgNode:
    """Defaults <- ``config_file`` (with its _BASE_ chain) <- ``overrides``; frozen.
    Unknown keys raise `detection.config.ConfigError` naming the key and close matches."""
    return load_config(config_file, overrides, defaults=get_classification_cfg())
