"""litedet backbones: mobile-class CNNs behind one `Backbone` interface and one registry.

Importing the package registers every variant; ``build_backbone("shufflenet_v2_1.0x")``
builds one and ``list_backbones()`` names them all.
"""
from .base import Backbone, ShapeSpec, Stage, freeze_module
from .registry import (
    BACKBONE_REGISTRY,
    BackboneVariant,
    PaperFigures,
    build_backbone,
    get_variant,
    list_backbones,
    register_variant,
)
from .classifier import ImageClassifier, build_classifier, released_fc_bias

# Each import registers that family's variants.
from . import shufflenet_v2  # noqa: F401  isort:skip
from . import mobilenet_v2  # noqa: F401  isort:skip
from . import seesaw  # noqa: F401  isort:skip
from . import shufflenet_v1  # noqa: F401  isort:skip
from . import mobilenet_v1  # noqa: F401  isort:skip
from . import fd_mobilenet  # noqa: F401  isort:skip
from . import small_xception  # noqa: F401  isort:skip

from .weights import (  # noqa: E402  isort:skip
    CheckpointError,
    LoadReport,
    UnsafeCheckpointError,
    load_checkpoint,
    save_backbone_checkpoint,
)

__all__ = [
    "Backbone",
    "ShapeSpec",
    "Stage",
    "freeze_module",
    "BACKBONE_REGISTRY",
    "BackboneVariant",
    "PaperFigures",
    "build_backbone",
    "build_classifier",
    "get_variant",
    "list_backbones",
    "register_variant",
    "ImageClassifier",
    "released_fc_bias",
    "CheckpointError",
    "LoadReport",
    "UnsafeCheckpointError",
    "load_checkpoint",
    "save_backbone_checkpoint",
]
