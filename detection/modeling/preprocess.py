"""Turn mapper outputs into a padded, normalised batch, and boxes back to image pixels."""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

__all__ = ["ImagePreprocessor", "rescale_boxes"]


class ImagePreprocessor(nn.Module):
    """Normalise with pixel mean/std and pad to a common, stride-divisible size.

    Resizing happens in the data mapper (as in detectron2), so this module never
    resamples: what the mapper produced is what the network sees.
    """

    def __init__(self, pixel_mean: Sequence[float], pixel_std: Sequence[float], size_divisibility: int) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.size_divisibility = size_divisibility

    def forward(self, images: List[Tensor]) -> ImageList:
        sizes: List[Tuple[int, int]] = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        d = max(1, self.size_divisibility)
        max_h = int(math.ceil(max(s[0] for s in sizes) / d) * d)
        max_w = int(math.ceil(max(s[1] for s in sizes) / d) * d)
        batch = images[0].new_zeros((len(images), images[0].shape[0], max_h, max_w), dtype=torch.float32)
        for i, im in enumerate(images):
            batch[i, :, : im.shape[-2], : im.shape[-1]].copy_((im.float() - self.pixel_mean) / self.pixel_std)
        return ImageList(batch, sizes)


def rescale_boxes(result: Dict[str, Tensor], from_size: Tuple[int, int], to_size: Tuple[int, int]) -> Dict[str, Tensor]:
    """Scale boxes predicted on the (resized) network input back to the original image."""
    boxes = result["boxes"]
    if boxes.numel():
        sy = to_size[0] / from_size[0]
        sx = to_size[1] / from_size[1]
        boxes = boxes * boxes.new_tensor([sx, sy, sx, sy])
        boxes[:, 0::2].clamp_(0, to_size[1])
        boxes[:, 1::2].clamp_(0, to_size[0])
    return {**result, "boxes": boxes}
