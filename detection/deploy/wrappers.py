"""Export-friendly views of the models: plain tensors in, a tuple of tensors out.

The detectors take a list of detectron2-style dicts and return a list of dicts, which
neither tracing nor ONNX accept. `TracingDetector` runs the same modules on one image
tensor of fixed size (already resized, channels in the model's INPUT.FORMAT, 0-255),
so an exported graph sees exactly what the PyTorch model sees.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["TracingDetector", "BackboneFeatures", "detector_input"]


class TracingDetector(nn.Module):
    """``(1, 3, H, W)`` float image (0-255, model channel order) ->
    ``(boxes [N, 4] xyxy in input pixels, scores [N], labels [N] from 0)``.

    Normalisation and padding to the backbone's stride are inside the graph; resizing is
    not (the caller resizes to the exported H x W, see `detector_input`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        model = self.model
        images = model.transform([image[0]])
        features = model.extract_features(images.tensors)
        proposals, _ = model.rpn(images, features)
        detections, _ = model.roi_heads(features, proposals, images.image_sizes)
        det = detections[0]
        return det["boxes"], det["scores"], det["labels"] - 1  # torchvision's background is 0


class BackboneFeatures(nn.Module):
    """Backbone (or classifier) whose dict output becomes a tuple in ``names`` order."""

    def __init__(self, backbone: nn.Module, names: Sequence[str] = ()) -> None:
        super().__init__()
        self.backbone = backbone
        self.names = list(names)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        out = self.backbone(x)
        if isinstance(out, Tensor):
            return (out,)
        return tuple(out[n] for n in self.names)


def detector_input(image_bgr: np.ndarray, height: int, width: int, input_format: str = "BGR") -> Tensor:
    """Resize an OpenCV BGR image to ``height x width`` and lay it out as ``(1, 3, H, W)``
    float in ``input_format`` channel order: the exported detector's input."""
    import cv2

    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image_bgr.shape}")
    resized = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    if input_format.upper() == "RGB":
        resized = resized[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()[None]
