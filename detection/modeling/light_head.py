"""Light-Head R-CNN's parts (Li et al., 2017): the large separable convolution that
makes the thin feature map, and the light R-CNN subnet on position-sensitive RoIs."""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LargeSeparableConv"]


class LargeSeparableConv(nn.Module):
    """Two branches summed: [k x 1 -> C_mid, 1 x k -> C_out] + [1 x k -> C_mid, k x 1 -> C_out].

    Cheap for a large receptive field (k = 15): cost grows with k, not k^2.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int = 15) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        p = kernel_size // 2
        self.col_first = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, (kernel_size, 1), padding=(p, 0)),
            nn.Conv2d(mid_channels, out_channels, (1, kernel_size), padding=(0, p)),
        )
        self.row_first = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, (1, kernel_size), padding=(0, p)),
            nn.Conv2d(mid_channels, out_channels, (kernel_size, 1), padding=(p, 0)),
        )
        self.relu = nn.ReLU(inplace=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.col_first(x) + self.row_first(x))
