"""Classification form of any backbone: global average pool + (dropout) + FC.

The pool adapts to any input size (no fixed 7x7 window). The paper's last 1x1 conv
(ShuffleNet v2 ``conv5``, MobileNet v2 / Seesaw ``conv_last``) is a stage of the
backbone itself, so the classifier only adds what every network shares.

The FC has a bias unless the variant's authors released theirs without one
(`FAMILIES_WITHOUT_FC_BIAS`); `build_classifier` follows the variant's registry family.
"""
from __future__ import annotations

from typing import Any, Optional

from torch import Tensor, nn

from .base import Backbone
from .fast import check_trainable, fuse_model
from .registry import build_backbone, get_variant

__all__ = ["ImageClassifier", "build_classifier", "released_fc_bias", "FAMILIES_WITHOUT_FC_BIAS"]

#: Registry families whose authors' classifiers are ``nn.Linear(.., bias=False)``:
#: megvii-model/ShuffleNet-Series (commit aa91feb) ShuffleNetV1/network.py line 63 and
#: ShuffleNetV2/network.py line 58; the families' SE, residual and v2* forms follow them.
FAMILIES_WITHOUT_FC_BIAS = frozenset({"shufflenet_v1", "shufflenet_v2"})


def released_fc_bias(name: str) -> bool:
    """Whether the registered variant ``name``'s FC has a bias in its authors' release."""
    return get_variant(name).family not in FAMILIES_WITHOUT_FC_BIAS


class ImageClassifier(nn.Module):
    def __init__(self, backbone: Backbone, num_classes: int = 1000, dropout: float = 0.0, fc_bias: bool = True) -> None:
        super().__init__()
        if len(backbone.out_features) != 1:
            raise ValueError(f"a classifier needs exactly one backbone output, got {backbone.out_features}")
        self.backbone = backbone
        self.feature_name = backbone.out_features[0]
        channels = backbone.output_shape()[self.feature_name].channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes, bias=fc_bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone(x)[self.feature_name]

    def fuse(self, inplace: bool = False, channels_last: bool = True) -> "ImageClassifier":
        """Inference fast path of the whole classifier (see `Backbone.fuse`)."""
        return fuse_model(self, inplace=inplace, channels_last=channels_last)

    def train(self, mode: bool = True) -> "ImageClassifier":
        check_trainable(self, mode)
        return super().train(mode)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)
        return self.fc(self.dropout(x))


def build_classifier(
    name: str, num_classes: int = 1000, dropout: float = 0.0, fc_bias: Optional[bool] = None, **backbone_kwargs: Any
) -> ImageClassifier:
    """Build the classification form of the registered variant ``name``; ``fc_bias`` None
    follows the authors' release (`released_fc_bias`)."""
    backbone_kwargs.setdefault("out_features", None)
    backbone = build_backbone(name, **backbone_kwargs)
    fc_bias = released_fc_bias(name) if fc_bias is None else fc_bias
    return ImageClassifier(backbone, num_classes=num_classes, dropout=dropout, fc_bias=fc_bias)
