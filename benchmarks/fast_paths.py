"""What each inference fast path of ``fuse()`` earns on the whole model, measured interleaved.

For every fast path the fused model is timed with and without it (everything else equal),
in the same rounds, on the two models of the speed targets: the ShuffleNet v2 1.0x
classifier at 224x224 and Light-Head R-CNN ShuffleNet v2 1.0x at 800x1200 (random
weights, batch 1, eval mode, ``torch.inference_mode``, 1 thread). The variants are built
from `backbones.fast`'s parts (BN folding, the module tables, channels-last) exactly as
``fuse()`` combines them, one part left out. The order of the contestants rotates from
round to round, so neither a slow phase of a shared machine nor a cache warmed by the
previous contestant favours one of them. Reported per path, in wall and CPU time (with
one thread CPU time leaves out the waits for a core of a shared machine): the ratio of the
medians, the median of the per-round ratios and the ratio of the fastest CPU times
(without / with: 1.05 means the path saves 5% of the whole model's time). A fast path
stays in ``fuse()`` only if it earns at least ``KEEP_THRESHOLD`` on the classifier or the
detector (benchmarks/README.md).

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


def rotating_rounds(
    contestants: Dict[str, Callable[[], object]], rounds: int, warmup: int
) -> Dict[str, Dict[str, List[float]]]:
    """Seconds per call of each contestant, wall-clock and CPU (``time.process_time``: with
    one thread, the time the call ran, not the time it waited for a core on a shared
    machine), one call each per round, the order rotating."""
    items = list(contestants.items())
    for _ in range(warmup):
        for _, fn in items:
            fn()
    times: Dict[str, Dict[str, List[float]]] = {"wall": {n: [] for n in contestants}, "cpu": {n: [] for n in contestants}}
    for r in range(rounds):
        shift = r % len(items)
        for name, fn in items[shift:] + items[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times["cpu"][name].append(time.process_time() - cpu)
            times["wall"][name].append(time.perf_counter() - wall)
    return times


def verdict(ratios: Sequence[float]) -> str:
    """``keep`` when every statistic shows the path saving at least ``KEEP_THRESHOLD``,
    ``drop`` when none does, ``borderline`` otherwise (measure again, on a quieter machine)."""
    if min(ratios) >= KEEP_THRESHOLD:
        return "keep"
    return "drop" if max(ratios) < KEEP_THRESHOLD else "borderline"


def report(times: Dict[str, Dict[str, List[float]]], comparisons: Sequence[Tuple[str, str, str]]) -> None:
    """One line per contestant, then one per (path, with it, without it) comparison: the
    ratio of the medians and the median of the per-round ratios, in CPU and wall time, and
    the ratio of the fastest CPU times."""
    for name in times["wall"]:
        wall, cpu = (statistics.median(times[k][name]) * 1e3 for k in ("wall", "cpu"))
        print(f"   {name:62s} {wall:9.2f} ms wall {cpu:9.2f} ms CPU")
    for path, with_path, without in comparisons:
        ratios = {}
        for kind, ts in times.items():
            ratios[f"{kind}, medians"] = statistics.median(ts[without]) / statistics.median(ts[with_path])
            ratios[f"{kind}, per round"] = statistics.median(a / b for a, b in zip(ts[without], ts[with_path]))
        ratios["cpu, best"] = min(times["cpu"][without]) / min(times["cpu"][with_path])  # the least disturbed call
        print(
            f"{path}: without / with = "
            + ", ".join(f"{value:.3f} ({kind})" for kind, value in ratios.items())
            + f" -> {verdict(list(ratios.values()))} (threshold {KEEP_THRESHOLD:.2f})"
        )


def fused_variant(model: nn.Module, modules: ModuleBuilders, channels_last: bool = True) -> nn.Module:
    """What ``fuse()`` makes of ``model`` with exactly the inference modules ``modules``
    (BN always folded): a copy."""
    variant = fold_batchnorms(copy.deepcopy(model))
    swap_modules(variant, modules)
    if channels_last:
        variant.to(memory_format=torch.channels_last)
    return variant.eval()


def check_same_form(fused: nn.Module, variant: nn.Module) -> None:
    """``variant`` (all parts) must be what ``fuse()`` makes, or the comparisons measure something else."""
    if [type(m) for m in fused.modules()] != [type(m) for m in variant.modules()]:
        raise RuntimeError("fused_variant with every part differs from fuse(): update benchmarks/fast_paths.py")


def classifier(rounds: int) -> None:
    """The classifier has no wide dense 3x3 conv (no Winograd) and no detector head."""
    print("\n== ShuffleNet v2 1.0x classifier, 224x224, batch 1 ==")
    torch.manual_seed(0)
    model = backbones.build_classifier("shufflenet_v2_1.0x").eval()
    fused = model.fuse()
    check_same_form(fused, fused_variant(model, CHANNELS_LAST_MODULES))
    folded = fused_variant(model, {}, channels_last=False)
    x = torch.randn(1, 3, 224, 224)
    contestants = {
        "fuse()": lambda: fused(x),
        "BN folded only (NCHW)": lambda: folded(x),
        "unfused": lambda: model(x),
    }
    with torch.inference_mode():
        times = rotating_rounds(contestants, rounds, warmup=5)
    report(times, [("channels-last", "fuse()", "BN folded only (NCHW)"), ("BN folding", "BN folded only (NCHW)", "unfused")])


def detector(rounds: int) -> None:
    from detection.config.config import load_config
    from detection.modeling.fast_heads import HEAD_MODULES
    from detection.modeling.meta_arch import build_model
    from speed_inference import head_inputs, with_scored_pairs

    print("\n== Light-Head R-CNN ShuffleNet v2 1.0x, 800x1200, batch 1 ==")
    torch.manual_seed(0)
    # the score threshold of speed_inference.py's target 2 (not the COCO protocol's 0.0)
    model = build_model(load_config(str(LIGHTHEAD_CONFIG), ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"])).eval()
    fused = model.fuse()
    check_same_form(fused, fused_variant(model, {**CHANNELS_LAST_MODULES, **HEAD_MODULES}))
    no_winograd = fused_variant(model, HEAD_MODULES)
    no_heads = fused_variant(model, CHANNELS_LAST_MODULES)
    channels_last = fused_variant(model, {})
    folded = fused_variant(model, {}, channels_last=False)
    image = torch.rand(3, 800, 1200) * 255
    inputs = [{"image": image, "height": 800, "width": 1200}]
    with torch.inference_mode():
        _, box_features = head_inputs(model, image)
    # the most head work any weights can cause: 19 classes of every RoI above the threshold
    worst, worst_no_heads = (with_scored_pairs(m, WORST_CASE_CLASSES, box_features) for m in (fused, no_heads))
    worst_name = f"{WORST_CASE_CLASSES} classes/RoI scored"
    contestants = {
        "fuse()": lambda: fused(inputs),
        "fuse() without Winograd": lambda: no_winograd(inputs),
        "fuse() without scored-pair heads": lambda: no_heads(inputs),
        f"fuse(), {worst_name}": lambda: worst(inputs),
        f"fuse() without scored-pair heads, {worst_name}": lambda: worst_no_heads(inputs),
        "BN folded, channels-last": lambda: channels_last(inputs),
        "BN folded only (NCHW)": lambda: folded(inputs),
        "unfused": lambda: model(inputs),
    }
    with torch.inference_mode():
        times = rotating_rounds(contestants, rounds, warmup=1)
    report(
        times,
        [
            ("Winograd RPN conv (WinogradConv3x3)", "fuse()", "fuse() without Winograd"),
            ("scored-pair heads, random weights (no pair scored)", "fuse()", "fuse() without scored-pair heads"),
            (
                f"scored-pair heads, {WORST_CASE_CLASSES} classes of every RoI scored",
                f"fuse(), {worst_name}",
                f"fuse() without scored-pair heads, {worst_name}",
            ),
            ("channels-last", "BN folded, channels-last", "BN folded only (NCHW)"),
            ("BN folding", "BN folded only (NCHW)", "unfused"),
        ],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["classifier", "detector", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 300 classifier, 30 detector)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
