"""Config keys that litedet's detectron2 parts read, added to a detectron2 `CfgNode`."""
from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_litedet_config"]


def add_litedet_config(cfg: CN) -> CN:
    """Add ``MODEL.LITEDET.*`` (backbone) and ``MODEL.LIGHT_HEAD.*`` (Light-Head RoI head)
    with their defaults to ``cfg`` (a detectron2 config from ``get_cfg()``); returns ``cfg``.

    Call it before ``merge_from_file`` so the YAMLs in configs/detectron2/ merge.
    Calling it twice is harmless: keys already present keep their values.
    """
    lit = CN()
    # Any name from `backbones.list_backbones()`.
    lit.BACKBONE = "shufflenet_v2_1.0x"
    # Stage names returned by the backbone (e.g. ["stage3", "stage4"] for ShuffleNet v2;
    # the stage names of a variant: backbones.build_backbone(name).stage_names).
    # [] = the last stage; the FPN builder then uses MODEL.FPN.IN_FEATURES.
    lit.OUT_FEATURES = []
    # Freeze the first FREEZE_AT stages (1 = stem, 2 = stem + first stage), as
    # detectron2's MODEL.BACKBONE.FREEZE_AT does for ResNets.
    lit.FREEZE_AT = 2
    # BatchNorm of the trainable stages: "BN", "FrozenBN" (fine-tuning ImageNet weights
    # with small per-GPU batches) or "SyncBN".
    lit.NORM = "BN"
    # ImageNet checkpoint of the backbone (litedet, torchvision or the authors' release
    # layout; "auto" detects it). Loaded when the model is built; MODEL.WEIGHTS (a whole
    # detectron2 model) is loaded afterwards by the checkpointer and wins.
    lit.WEIGHTS = ""
    lit.WEIGHTS_LAYOUT = "auto"

    lh = CN()
    lh.KERNEL_SIZE = 15  # large separable conv: k x 1 + 1 x k branches
    lh.MID_CHANNELS = 64  # 64 for small backbones, 256 for ResNet-101 ("large")
    lh.CHANNELS_PER_BIN = 10  # thin feature map: 10 x 7 x 7 = 490 channels
    lh.POOLER_RESOLUTION = 7  # position-sensitive RoIAlign output
    lh.FC_DIM = 2048  # the single FC of the light R-CNN subnet
    lh.OHEM = False  # train only on the highest-loss RoIs of each image
    lh.OHEM_TOPK = 256  # per image

    for name, node in (("LITEDET", lit), ("LIGHT_HEAD", lh)):
        if name not in cfg.MODEL:
            cfg.MODEL[name] = node
        else:
            for key, value in node.items():
                if key not in cfg.MODEL[name]:
                    cfg.MODEL[name][key] = value
    return cfg
