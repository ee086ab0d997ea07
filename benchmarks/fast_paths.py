"""What each inference fast path of ``fuse()`` earns on the whole model, measured interleaved.

For every fast path the fused model is timed with and without it (everything else equal),
in the same rounds, on the two models of the speed targets: the ShuffleNet v2 1.0x
classifier at 224x224 and Light-Head R-CNN ShuffleNet v2 1.0x at 800x1200 (random
weights, batch 1, eval mode, ``torch.inference_mode``, 1 thread). The order of the
contestants rotates from round to round, so neither a slow phase of a shared machine nor
a cache warmed by the previous contestant favours one of them. Reported per path: the
ratio of the medians and the median of the per-round ratios (without / with: 1.05 means
the path saves 5% of the whole model's time). A fast path stays in ``fuse()`` only if it
earns at least ``KEEP_THRESHOLD`` on the classifier or the detector.

    python benchmarks/fast_paths.py                       # both models (~5 min)
    python benchmarks/fast_paths.py --model classifier --rounds 200
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch

import backbones
from backbones import shufflenet_v2
from backbones.shufflenet_v2 import ShuffleV2Block

KEEP_THRESHOLD = 1.05
ROOT = Path(__file__).resolve().parents[1]
LIGHTHEAD_CONFIG = ROOT / "configs/COCO-LightHead/lighthead_shufflenet_v2_1.0x.yaml"


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
    """One line per contestant, then one per (path, with, without) comparison."""
    for name, ts in times.items():
        print(f"   {name:58s} {statistics.median(ts) * 1e3:9.2f} ms")
    for path, with_path, without in comparisons:
        of_medians = statistics.median(times[without]) / statistics.median(times[with_path])
        paired = statistics.median(a / b for a, b in zip(times[without], times[with_path]))
        verdict = "keep" if min(of_medians, paired) >= KEEP_THRESHOLD else (
            "drop" if max(of_medians, paired) < KEEP_THRESHOLD else "borderline")
        print(
            f"{path}: without / with = {of_medians:.3f} (medians), {paired:.3f} (per-round median) "
            f"-> {verdict} (threshold {KEEP_THRESHOLD:.2f})"
        )


def set_flag(model: torch.nn.Module, kind: type, **values) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, kind):
            for key, value in values.items():
                setattr(m, key, value)
    return model


def without_onednn(fn: Callable[[], object]) -> Callable[[], object]:
    def call():
        saved = shufflenet_v2.USE_ONEDNN_LINEAR
        shufflenet_v2.USE_ONEDNN_LINEAR = False
        try:
            return fn()
        finally:
            shufflenet_v2.USE_ONEDNN_LINEAR = saved

    return call


def classifier(rounds: int) -> None:
    print("\n== ShuffleNet v2 1.0x classifier, 224x224, batch 1 ==")
    torch.manual_seed(0)
    model = backbones.build_classifier("shufflenet_v2_1.0x").eval()
    fused = model.fuse()
    folded_cl = set_flag(model.fuse(), ShuffleV2Block, fused=False)
    units_nchw_form = set_flag(model.fuse(), ShuffleV2Block, fused_nhwc=False)
    folded = set_flag(model.fuse(channels_last=False), ShuffleV2Block, fused=False)
    x = torch.randn(1, 3, 224, 224)
    contestants = {
        "fuse()": lambda: fused(x),
        "fuse() without fused units": lambda: folded_cl(x),
        "fuse() with the NCHW-form units": lambda: units_nchw_form(x),
        "BN folded only (NCHW)": lambda: folded(x),
        "unfused": lambda: model(x),
    }
    with torch.inference_mode():
        times = rotating_rounds(contestants, rounds, warmup=5)
    report(
        times,
        [
            ("fused ShuffleNet v2 units (NHWC GEMM form)", "fuse()", "fuse() without fused units"),
            ("NHWC GEMM form over the NCHW-form units", "fuse()", "fuse() with the NCHW-form units"),
            ("channels-last (with the units)", "fuse()", "BN folded only (NCHW)"),
            ("BN folding", "BN folded only (NCHW)", "unfused"),
        ],
    )
    onnx_units(model, x, rounds)


def onnx_units(model: torch.nn.Module, x: torch.Tensor, rounds: int) -> None:
    """Target 1b's form: the NCHW-form fused units against plain units, both in ONNX Runtime."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("ONNX Runtime comparison skipped: onnxruntime is not installed")
        return
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from speed_inference import ort_session

    stack = model.fuse(channels_last=False)
    plain = set_flag(model.fuse(channels_last=False), ShuffleV2Block, fused=False)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {
            "ONNX Runtime, NCHW-form fused units": ort_session(stack, x, Path(tmp) / "stack.onnx"),
            "ONNX Runtime, plain units (BN folded)": ort_session(plain, x, Path(tmp) / "plain.onnx"),
        }
        feed = {"x": x.numpy()}
        times = rotating_rounds({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, rounds, warmup=5)
    report(times, [("NCHW-form units in ONNX Runtime (target 1b)", *sessions)])


def detector(rounds: int) -> None:
    from detection.config.config import load_config
    from detection.modeling.meta_arch import build_model

    print("\n== Light-Head R-CNN ShuffleNet v2 1.0x, 800x1200, batch 1 ==")
    torch.manual_seed(0)
    model = build_model(load_config(str(LIGHTHEAD_CONFIG))).eval()
    fused = model.fuse()
    no_wino = model.fuse(winograd=False)
    no_units = set_flag(model.fuse(), ShuffleV2Block, fused=False)
    units_nchw_form = set_flag(model.fuse(), ShuffleV2Block, fused_nhwc=False)
    rpn_two = model.fuse()
    rpn_two.rpn.head.fused = False
    all_deltas = model.fuse()
    all_deltas.roi_heads.fused = False
    all_deltas_two = model.fuse()
    all_deltas_two.roi_heads.fused = all_deltas_two.roi_heads.box_predictor.fused = False
    folded = model.fuse(channels_last=False)
    set_flag(folded, ShuffleV2Block, fused=False)
    folded.rpn.head.fused = folded.roi_heads.fused = folded.roi_heads.box_predictor.fused = False
    image = torch.rand(3, 800, 1200) * 255
    inputs = [{"image": image, "height": 800, "width": 1200}]
    contestants = {
        "fuse()": lambda: fused(inputs),
        "fuse() without Winograd": lambda: no_wino(inputs),
        "fuse() without oneDNN linear": without_onednn(lambda: fused(inputs)),
        "fuse() without fused units": lambda: no_units(inputs),
        "fuse() with the NCHW-form units": lambda: units_nchw_form(inputs),
        "fuse() without the RPN head's one GEMM": lambda: rpn_two(inputs),
        "fuse() without scored-pair deltas": lambda: all_deltas(inputs),
        "fuse() without scored-pair deltas, predictor as 2 GEMMs": lambda: all_deltas_two(inputs),
        "BN folded only (NCHW)": lambda: folded(inputs),
        "unfused": lambda: model(inputs),
    }
    with torch.inference_mode():
        times = rotating_rounds(contestants, rounds, warmup=1)
    report(
        times,
        [
            ("Winograd RPN conv", "fuse()", "fuse() without Winograd"),
            ("oneDNN linear with fused ReLU", "fuse()", "fuse() without oneDNN linear"),
            ("fused ShuffleNet v2 units (NHWC GEMM form)", "fuse()", "fuse() without fused units"),
            ("NHWC GEMM form over the NCHW-form units", "fuse()", "fuse() with the NCHW-form units"),
            ("RPN head's 1x1 convs as one GEMM", "fuse()", "fuse() without the RPN head's one GEMM"),
            ("scored-pair box deltas (random weights)", "fuse()", "fuse() without scored-pair deltas"),
            (
                "box predictor as one GEMM",
                "fuse() without scored-pair deltas",
                "fuse() without scored-pair deltas, predictor as 2 GEMMs",
            ),
            ("channels-last with everything above", "fuse()", "BN folded only (NCHW)"),
            ("BN folding", "BN folded only (NCHW)", "unfused"),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["classifier", "detector", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 150 classifier, 25 detector)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("== litedet fast paths: each one's share of the whole model (benchmarks/fast_paths.py) ==")
    print(f"date (UTC) {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}, torch {torch.__version__}, "
          f"1 thread, load average at start {os.getloadavg()[0]:.2f}")
    if args.model in ("classifier", "all"):
        classifier(args.rounds or 150)
    if args.model in ("detector", "all"):
        detector(args.rounds or 25)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
