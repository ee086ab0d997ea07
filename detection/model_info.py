"""What a trained model is: its architecture and the class names its labels stand for.

Every checkpoint the trainer writes records a `ModelInfo` under ``"model_info"``: the
meta-architecture, the backbone variant, the number of classes and the training set's
class names in label order. Whoever consumes a trained model (evaluation, demo, export)
compares those names with the dataset it is given through one rule, `match_classes`:

- the same names in the same order: nothing to do;
- the same names in another order: the model's labels are mapped to the dataset's by
  name (the caller says so in the log);
- anything else (other names, another count, names that repeat): `ClassMismatchError`,
  one line naming both lists.

Checkpoints written before the record existed have no ``"model_info"``: consumers warn
once that the classes cannot be checked and proceed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .config import ConfigError

__all__ = ["MODEL_INFO_KEY", "ClassMismatchError", "ModelInfo", "describe_classes", "match_classes", "model_info_from_cfg"]

#: The checkpoint entry holding `ModelInfo.to_dict()`.
MODEL_INFO_KEY = "model_info"


class ClassMismatchError(ConfigError):
    """A model's classes are not the ones of the dataset it is applied to (exit status 2)."""


@dataclass(frozen=True)
class ModelInfo:
    """A trained model's identity, as recorded in its checkpoints."""

    meta_architecture: str
    backbone: str
    num_classes: Optional[int] = None
    #: the training set's class names, index = the model's label; None when not known
    thing_classes: Optional[Tuple[str, ...]] = None

    @property
    def architecture(self) -> str:
        """``"LightHeadRCNN + shufflenet_v2_0.5x"``."""
        return f"{self.meta_architecture} + {self.backbone}"

    def same_architecture(self, other: "ModelInfo") -> bool:
        return (self.meta_architecture, self.backbone) == (other.meta_architecture, other.backbone)

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only: checkpoints are read with ``weights_only=True``."""
        return {
            "meta_architecture": self.meta_architecture,
            "backbone": self.backbone,
            "num_classes": self.num_classes,
            "thing_classes": None if self.thing_classes is None else list(self.thing_classes),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Optional["ModelInfo"]:
        """The record of a checkpoint entry; None when ``data`` is not one (absent or foreign)."""
        if not isinstance(data, Mapping):
            return None
        arch, backbone = data.get("meta_architecture"), data.get("backbone")
        if not isinstance(arch, str) or not isinstance(backbone, str):
            return None
        classes = data.get("thing_classes")
        if not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
            classes = None
        count = data.get("num_classes")
        return cls(
            meta_architecture=arch,
            backbone=backbone,
            num_classes=int(count) if isinstance(count, int) and not isinstance(count, bool) else None,
            thing_classes=None if classes is None else tuple(classes),
        )


def model_info_from_cfg(cfg: Any, thing_classes: Optional[Sequence[str]] = None) -> ModelInfo:
    """The `ModelInfo` of the detector ``cfg`` builds (its class names are the caller's to give)."""
    return ModelInfo(
        meta_architecture=str(cfg.MODEL.META_ARCHITECTURE),
        backbone=str(cfg.MODEL.BACKBONE.NAME),
        num_classes=int(cfg.MODEL.ROI_HEADS.NUM_CLASSES),
        thing_classes=None if thing_classes is None else tuple(thing_classes),
    )


def describe_classes(classes: Sequence[str], limit: int = 12) -> str:
    """``[a, b, c]``, cut after ``limit`` names with the remaining count."""
    names = [repr(c) if (not c or c != c.strip() or "," in c) else c for c in classes]
    shown = ", ".join(names[:limit])
    more = f", ... (+{len(names) - limit})" if len(names) > limit else ""
    return f"[{shown}{more}]"


def match_classes(
    model_classes: Sequence[str], dataset_classes: Sequence[str], *, model: str, dataset: str
) -> Optional[List[int]]:
    """How the labels of a model trained on ``model_classes`` map to ``dataset_classes``.

    Returns None when both lists are equal; for the same names in another order, the list
    ``m`` with ``m[model label] = dataset label``; otherwise raises `ClassMismatchError`
    naming ``model`` and ``dataset`` (what each list belongs to, e.g. "MODEL.WEIGHTS
    w.pth") and both lists.
    """
    model_classes, dataset_classes = list(model_classes), list(dataset_classes)
    if model_classes == dataset_classes:
        return None
    problem = ""
    if len(set(model_classes)) != len(model_classes) or len(set(dataset_classes)) != len(dataset_classes):
        problem = "; a class name repeats, so the lists cannot be matched by name"
    elif sorted(model_classes) == sorted(dataset_classes):
        return [dataset_classes.index(name) for name in model_classes]
    else:
        only_model = [c for c in model_classes if c not in dataset_classes]
        only_data = [c for c in dataset_classes if c not in model_classes]
        parts = []
        if only_model:
            parts.append(f"only the model has {describe_classes(only_model, 6)}")
        if only_data:
            parts.append(f"only the dataset has {describe_classes(only_data, 6)}")
        problem = f" ({'; '.join(parts)})" if parts else ""
    raise ClassMismatchError(
        f"{model} has {len(model_classes)} classes {describe_classes(model_classes)} but {dataset} has "
        f"{len(dataset_classes)} classes {describe_classes(dataset_classes)}{problem}; a model's scores are only "
        "meaningful on the classes it was trained on"
    )
