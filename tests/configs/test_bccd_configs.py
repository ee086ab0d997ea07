"""configs/BCCD: the recipe the headers state is what the configs load (on the COCO-protocol
Light-Head base), and the class count comes from the BCCD data."""
import os

import pytest

from detection.config import load_config
from helpers import REPO_ROOT

BCCD = os.path.join(REPO_ROOT, "configs", "BCCD")


def test_lighthead_config_is_the_recipe():
    cfg = load_config(os.path.join(BCCD, "lighthead_shufflenet_v2_bccd.yaml"))
    assert (cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.NORM) == ("LightHeadRCNN", "shufflenet_v2_0.5x", "BN")
    assert (tuple(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == ((480,), 640, 480, 640)
    assert (cfg.INPUT.RANDOM_FLIP, cfg.INPUT.RANDOM_ROTATE90) == ("both", True)
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [[24, 34, 48, 68, 96, 136, 192]] and cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS == [[1.0]]
    lh = cfg.MODEL.LIGHT_HEAD
    assert (cfg.MODEL.RPN.HEAD_CONV_DIM, lh.MID_CHANNELS, lh.CHANNELS_PER_BIN, lh.KERNEL_SIZE, lh.OHEM, lh.OHEM_TOPK) == (64, 32, 5, 7, True, 64)
    assert lh.FC_INIT_STD == 0.0  # PyTorch's default FC init: the authors' N(0, 0.01) learns slower in a short run
    # what the COCO protocol of the base changed, set back to the recipe's values
    assert (cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE, cfg.MODEL.RPN.BOUNDARY_THRESH, cfg.SOLVER.LR_MULTIPLIERS) == (128, -1, [])
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.05 and cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA == pytest.approx(1 / 9)
    assert (cfg.SOLVER.OPTIMIZER, cfg.SOLVER.LR_SCHEDULER_NAME, cfg.SOLVER.BASE_LR, cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.MAX_ITER) == (
        "AdamW", "WarmupCosineLR", 0.002, 8, 950)
    assert (cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR, cfg.DATALOADER.NUM_WORKERS, cfg.SEED) == (50, 0.001, 0, 0)
    assert (cfg.DATASETS.TRAIN, cfg.DATASETS.TEST) == (("bccd_trainval",), ("bccd_test",))
    assert not cfg.is_set("MODEL.ROI_HEADS.NUM_CLASSES")  # taken from the data


@pytest.mark.parametrize("name, arch, backbone", [
    ("lighthead_mobilenet_v2_imagenet_bccd.yaml", "LightHeadRCNN", "mobilenet_v2_1.0x"),
    ("fasterrcnn_shufflenet_v2_fpn_bccd.yaml", "FasterRCNN", "shufflenet_v2_0.5x"),
])
def test_other_bccd_configs_share_the_input_and_schedule(name, arch, backbone):
    cfg = load_config(os.path.join(BCCD, name))
    assert (cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.BACKBONE.NAME) == (arch, backbone)
    assert (cfg.INPUT.RANDOM_FLIP, cfg.INPUT.RANDOM_ROTATE90, cfg.INPUT.MIN_SIZE_TEST) == ("both", True, 480)
    assert (cfg.SOLVER.OPTIMIZER, cfg.DATASETS.TRAIN) == ("AdamW", ("bccd_trainval",))
