"""litedet inside detectron2: our backbones and heads in detectron2's own registries.

Needs detectron2 (built from source; see docs/detectron2.md). Importing this package
registers, for ``MODEL.BACKBONE.NAME``, ``build_litedet_backbone`` and
``build_litedet_fpn_backbone``, and, for ``MODEL.ROI_HEADS.NAME``, ``LightHeadROIHeads``
and ``LitedetC4ROIHeads``; ``add_litedet_config(cfg)`` adds the keys they read::

    from detectron2.config import get_cfg
    from detection.d2 import add_litedet_config

    cfg = get_cfg()
    add_litedet_config(cfg)
    cfg.merge_from_file("configs/detectron2/lighthead_shufflenet_v2_1.0x.yaml")

Nothing else in litedet imports this package, so detectron2 stays optional.
"""
try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised by tests/detection/d2/test_optional_import.py
    raise ImportError(
        "detection.d2 needs detectron2, which is not installed. detectron2 has no working "
        "pip release: build it from source (git clone https://github.com/facebookresearch/detectron2 "
        "&& pip install --no-build-isolation --use-pep517 -e detectron2), as docs/detectron2.md explains."
    ) from e

from .backbone import LitedetBackbone, build_litedet_backbone, build_litedet_fpn_backbone, build_litedet_network
from .config import add_litedet_config
from .roi_heads import LightHeadROIHeads, LitedetC4ROIHeads, select_hard_examples

__all__ = [
    "add_litedet_config",
    "LitedetBackbone",
    "build_litedet_backbone",
    "build_litedet_fpn_backbone",
    "build_litedet_network",
    "LightHeadROIHeads",
    "LitedetC4ROIHeads",
    "select_hard_examples",
]
