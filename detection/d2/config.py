"""Config keys that litedet's detectron2 parts read, added to a detectron2 `CfgNode`.

Their defaults are litedet's own (`detection.config.get_cfg`), read from there: the
backbone variant and weights from ``MODEL.BACKBONE``, the whole ``MODEL.LIGHT_HEAD``
section. Only ``FREEZE_AT`` and ``NORM`` differ, on purpose (see `add_litedet_config`).
"""
from __future__ import annotations

from detectron2.config import CfgNode as CN

from detection.config import get_cfg

__all__ = ["add_litedet_config"]


def add_litedet_config(cfg: CN) -> CN:
    """Add ``MODEL.LITEDET.*`` (backbone) and ``MODEL.LIGHT_HEAD.*`` (Light-Head RoI head)
    with their defaults to ``cfg`` (a detectron2 config from ``get_cfg()``); returns ``cfg``.

    ``MODEL.LITEDET``: ``BACKBONE`` (any name from `backbones.list_backbones()`),
    ``OUT_FEATURES`` (the stage names the backbone returns, e.g. ``["stage3", "stage4"]``;
    ``[]`` = the last stage, the FPN builder then uses ``MODEL.FPN.IN_FEATURES``),
    ``WEIGHTS`` / ``WEIGHTS_LAYOUT`` (an ImageNet checkpoint of the backbone, loaded when the
    model is built; MODEL.WEIGHTS, a whole detectron2 model, is loaded afterwards by the
    checkpointer and wins), ``FREEZE_AT`` (2: stem + first stage, as detectron2's
    MODEL.BACKBONE.FREEZE_AT for ResNets) and ``NORM`` (``"BN"``, ``"FrozenBN"`` or
    ``"SyncBN"``; detectron2 has no automatic choice, hence explicit ``"BN"``).
    ``MODEL.LIGHT_HEAD``: litedet's section as it is (docs/detectron2.md lists the keys).

    Call it before ``merge_from_file`` so the YAMLs in configs/detectron2/ merge.
    Calling it twice is harmless: keys already present keep their values.
    """
    litedet = get_cfg().MODEL
    lit = CN()
    lit.BACKBONE = litedet.BACKBONE.NAME
    lit.OUT_FEATURES = []
    lit.FREEZE_AT = 2
    lit.NORM = "BN"
    lit.WEIGHTS = litedet.BACKBONE.WEIGHTS
    lit.WEIGHTS_LAYOUT = litedet.BACKBONE.WEIGHTS_LAYOUT
    lh = CN(dict(litedet.LIGHT_HEAD))

    for name, node in (("LITEDET", lit), ("LIGHT_HEAD", lh)):
        if name not in cfg.MODEL:
            cfg.MODEL[name] = node
        else:
            for key, value in node.items():
                if key not in cfg.MODEL[name]:
                    cfg.MODEL[name][key] = value
    return cfg
