"""Export-friendly views of the models: plain tensors in, a tuple of tensors out.

The detectors take a list of detectron2-style dicts and return a list of dicts, which
neither tracing nor ONNX accept. `TracingDetector` runs the same modules on one image
tensor of fixed size (already resized, channels in the model's INPUT.FORMAT, 0-255),
so an exported graph sees exactly what the PyTorch model sees.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

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
        if not torch.jit.is_tracing() and image.shape[0] != 1:
            raise ValueError(f"TracingDetector takes one image (1, 3, H, W), got shape {tuple(image.shape)}")
        model = self.model
        # A reshape with traced sizes, not image[0]: an exported graph given a batch > 1
        # fails instead of silently returning the first image's detections.
        images = model.transform([image.reshape(image.shape[1:])])
        features = model.extract_features(images.tensors)
        proposals, _ = model.rpn(images, features)
        detections, _ = model.roi_heads(features, proposals, images.image_sizes)
        det = detections[0]
        return det["boxes"], det["scores"], det["labels"] - 1  # torchvision's background is 0


class BackboneFeatures(nn.Module):
    """Backbone (or classifier) whose dict output becomes a tuple in ``names`` order.

    With ``pixel_mean`` / ``pixel_std`` (a detector's backbone) the input is the 0-255
    image that the detector takes, normalised inside the graph as the detector does;
    without them it goes to the backbone as is.
    """

    def __init__(
        self, backbone: nn.Module, names: Sequence[str] = (),
        pixel_mean: Optional[Tensor] = None, pixel_std: Optional[Tensor] = None,
    ) -> None:
        super().__init__()
        if (pixel_mean is None) != (pixel_std is None):
            raise ValueError("BackboneFeatures: give both pixel_mean and pixel_std, or neither")
        self.backbone = backbone
        self.names = list(names)
        self.normalize = pixel_mean is not None
        if pixel_mean is not None and pixel_std is not None:
            self.register_buffer("pixel_mean", pixel_mean.detach().clone().view(-1, 1, 1), persistent=False)
            self.register_buffer("pixel_std", pixel_std.detach().clone().view(-1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if self.normalize:
            x = (x - self.pixel_mean) / self.pixel_std
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
