"""What each inference fast path of ``fuse()`` earns on the whole model, measured interleaved.

For every fast path the fused model is timed with and without it (everything else equal),
in the same rounds, on the two models of the speed targets: the ShuffleNet v2 1.0x
classifier at 224x224 and Light-Head R-CNN ShuffleNet v2 1.0x at 800x1200 (random
weights, batch 1, eval mode, ``torch.inference_mode``, 1 thread). The variants are built
from `backbones.fast`'s parts (BN folding, the module tables, channels-last) exactly as
``fuse()`` combines them, one part left out. The order of the contestants rotates from
round to round, so neither a slow phase of a shared machine nor a cache warmed by the
previous contestant favours one of them. Reported per path: the ratio of the medians and
the median of the per-round ratios (without / with: 1.05 means the path saves 5% of the
whole model's time). A fast path stays in ``fuse()`` only if it earns at least
``KEEP_THRESHOLD`` on the classifier or the detector (benchmarks/README.md).

    python benchmarks/fast_paths.py                       # both models (~6 min)
    python benchmarks/fast_paths.py --model classifier --rounds 300
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn

import backbones
from backbones.fast import CHANNELS_LAST_MODULES, ModuleBuilders, fold_batchnorms, swap_modules

#: the least share of the whole model's time a fast path must save to be kept
KEEP_THRESHOLD = 1.05
ROOT = Path(__file__).resolve().parents[1]
LIGHTHEAD_CONFIG = ROOT / "configs/COCO-LightHead/lighthead_shufflenet_v2_1.0x.yaml"
WORST_CASE_CLASSES = 19  # see speed_inference.with_scored_pairs


def rotating_rounds(contestants: Dict[str, Callable[[], object]], rounds: int, warmup: int) -> Dict[str, List[float]]:
    """Seconds per call of each contestant, one call each per round, the order rotating."""
    items = list(contestants.items())
    for _ in range(warmup):
        for _, fn in items:
            fn()
    times: Dict[str, List[float]] = {name: [] for name in contestants}
    for r in range(rounds):
        shift = r % len(items)
        for name, fn in items[shift:] + items[:shift]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def report(times: Dict[str, List[float]], comparisons: Sequence[Tuple[str, str, str]]) -> None:
    """One line per contestant, then one per (path, with it, without it) comparison."""
    for name, ts in times.items():
        print(f"   {name:62s} {statistics.median(ts) * 1e3:9.2f} ms")
    for path, with_path, without in comparisons:
        of_medians = statistics.median(times[without]) / statistics.median(times[with_path])
        paired = statistics.median(a / b for a, b in zip(times[without], times[with_path]))
        verdict = "keep" if min(of_medians, paired) >= KEEP_THRESHOLD else (
            "drop" if max(of_medians, paired) < KEEP_THRESHOLD else "borderline")
        print(
            f"{path}: without / with = {of_medians:.3f} (medians), {paired:.3f} (per-round median) "
            f"-> {verdict} (threshold {KEEP_THRESHOLD:.2f})"
        )


def fused_variant(model: nn.Module, modules: ModuleBuilders, channels_last: bool = True) -> nn.Module:
    """What ``fuse()`` makes of ``model`` with exactly the inference modules ``modules``
    (BN always folded): a copy."""
    variant = fold_batchnorms(copy.deepcopy(model))
    swap_modules(variant, modules)
    if channels_last:
        variant.to(memory_format=torch.channels_last)
    return variant.eval()


def same_modules(a: nn.Module, b: nn.Module) -> bool:
    return [type(m) for m in a.modules()] == [type(m) for m in b.modules()]


def classifier(rounds: int) -> None:
    print("\n== ShuffleNet v2 1.0x classifier, 224x224, batch 1 ==")
    torch.manual_seed(0)
    model = backbones.build_classifier("shufflenet_v2_1.0x").eval()
    fused = model.fuse()
    assert same_modules(fused, fused_variant(model, CHANNELS_LAST_MODULES))
    no_units = fused_variant(model, {})
    folded = fused_variant(model, {}, channels_last=False)
    x = torch.randn(1, 3, 224, 224)
    contestants = {
        "fuse()": lambda: fused(x),
        "fuse() without fused units": lambda: no_units(x),
        "BN folded only (NCHW)": lambda: folded(x),
        "unfused": lambda: model(x),
    }
    with torch.inference_mode():
        times = rotating_rounds(contestants, rounds, warmup=5)
    report(
        times,
        [
            ("fused ShuffleNet v2 units (FusedShuffleV2Block)", "fuse()", "fuse() without fused units"),
            ("channels-last", "fuse() without fused units", "BN folded only (NCHW)"),
            ("BN folding", "BN folded only (NCHW)", "unfused"),
        ],
    )


def detector(rounds: int) -> None:
    from detection.config.config import load_config
    from detection.modeling.fast_heads import HEAD_MODULES
    from detection.modeling.meta_arch import build_model
    from speed_inference import head_inputs, with_scored_pairs

    print("\n== Light-Head R-CNN ShuffleNet v2 1.0x, 800x1200, batch 1 ==")
    torch.manual_seed(0)
    model = build_model(load_config(str(LIGHTHEAD_CONFIG))).eval()
    fused = model.fuse()
    assert same_modules(fused, fused_variant(model, {**CHANNELS_LAST_MODULES, **HEAD_MODULES}))
    no_units = fused_variant(model, HEAD_MODULES)
    no_heads = fused_variant(model, CHANNELS_LAST_MODULES)
    folded = fused_variant(model, {}, channels_last=False)
    from backbones.fast.winograd import winograd_if_wide
    wino = fused_variant(model, {**CHANNELS_LAST_MODULES, **HEAD_MODULES, nn.Conv2d: winograd_if_wide})
    image = torch.rand(3, 800, 1200) * 255
    inputs = [{"image": image, "height": 800, "width": 1200}]
    with torch.inference_mode():
        _, box_features = head_inputs(model, image)
    # the most head work any weights can cause: 19 classes of every RoI above the threshold
    worst, worst_no_heads = (with_scored_pairs(m, WORST_CASE_CLASSES, box_features) for m in (fused, no_heads))
    contestants = {
        "fuse()": lambda: fused(inputs),
        "fuse() without fused units": lambda: no_units(inputs),
        "fuse() + Winograd RPN conv": lambda: wino(inputs),
        "fuse() without scored-pair heads": lambda: no_heads(inputs),
        f"fuse(), {WORST_CASE_CLASSES} classes/RoI scored": lambda: worst(inputs),
        f"fuse() without scored-pair heads, {WORST_CASE_CLASSES} classes/RoI scored": lambda: worst_no_heads(inputs),
        "BN folded only (NCHW)": lambda: folded(inputs),
        "unfused": lambda: model(inputs),
    }
    with torch.inference_mode():
        times = rotating_rounds(contestants, rounds, warmup=1)
    report(
        times,
        [
            ("fused ShuffleNet v2 units (FusedShuffleV2Block)", "fuse()", "fuse() without fused units"),
            ("Winograd RPN conv (candidate)", "fuse() + Winograd RPN conv", "fuse()"),
            ("scored-pair heads, random weights (no pair scored)", "fuse()", "fuse() without scored-pair heads"),
            (
                f"scored-pair heads, {WORST_CASE_CLASSES} classes of every RoI scored",
                f"fuse(), {WORST_CASE_CLASSES} classes/RoI scored",
                f"fuse() without scored-pair heads, {WORST_CASE_CLASSES} classes/RoI scored",
            ),
            ("channels-last with the fused units", "fuse() without scored-pair heads", "BN folded only (NCHW)"),
            ("BN folding", "BN folded only (NCHW)", "unfused"),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["classifier", "detector", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 300 classifier, 30 detector)")
    args = parser.parse_args()
    if args.rounds < 0:
        parser.error("--rounds must be >= 0")
    torch.set_num_threads(1)
    print("== litedet fast paths: each one's share of the whole model (benchmarks/fast_paths.py) ==")
    print(
        f"date (UTC) {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}, torch {torch.__version__}, 1 thread, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    if args.model in ("classifier", "all"):
        classifier(args.rounds or 300)
    if args.model in ("detector", "all"):
        detector(args.rounds or 30)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
