#!/usr/bin/env python
"""Issue 6, target 5: GPU throughput of Light-Head R-CNN ShuffleNet v2 1.0x, batch 4 at
800x1200, fp16, in images/s — beside the ShuffleNet v2 paper's 146 images/s (GTX 1080Ti,
Table 7 protocol) and torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` timed on the same
GPU in the same run (interleaved rounds, CUDA-synchronised, medians).

    .venv/bin/python benchmarks/speed_gpu.py                      # needs a CUDA device
    .venv/bin/python benchmarks/speed_gpu.py --device cpu --input 256x384 --batch 1 --rounds 2
                                                                  # the same code path on CPU (fp32; a smoke run)

Random weights, eval mode, ``torch.inference_mode``; fp16 = CUDA autocast to float16 for
both models (``--fp32`` turns it off); our model runs fused (``model.fuse()``, channels-last,
cuDNN convolutions rather than the CPU Winograd path). Prints the GPU name, versions, and one
"ours X, reference Y, ratio R" line; exits 2 with one line when CUDA is asked for but absent.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from detection.config.config import load_config
from detection.deploy.benchmark import ratio_line, report_header
from detection.modeling.meta_arch import build_model

ROOT = Path(__file__).resolve().parents[1]

CONFIG = ROOT / "configs" / "COCO-LightHead" / "lighthead_shufflenet_v2_1.0x.yaml"
PAPER_IMAGES_PER_S = 146.0  # ShuffleNet v2 paper, Light-Head R-CNN ShuffleNet v2 1.0x-class (146 MFLOPs), GTX 1080Ti


def timed_rounds(contestants: Dict[str, Callable[[], object]], rounds: int, warmup: int, sync: Callable[[], None]) -> Dict[str, float]:
    """Median seconds per call, the contestants alternating every round."""
    for _ in range(warmup):
        for fn in contestants.values():
            fn()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, fn in contestants.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke run of the same code)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--input", default="800x1200", help="HxW of every image (default 800x1200)")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--fp32", action="store_true", help="no fp16 autocast")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("speed_gpu.py: error: no CUDA device here (target 5 needs a GPU; --device cpu runs a smoke test)",
              file=sys.stderr)
        return 2
    try:
        height, width = (int(v) for v in args.input.lower().split("x"))
    except ValueError:
        print(f"speed_gpu.py: error: --input must be HxW, got {args.input!r}", file=sys.stderr)
        return 2
    autocast = device.type == "cuda" and not args.fp32
    precision = "fp16 autocast" if autocast else "fp32"
    import torchvision

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU smoke run)"
    print(report_header("GPU detector throughput (issue 6 target 5)", {"gpu": gpu, "cuda": str(torch.version.cuda)}))
    print(f"protocol: batch {args.batch}, {height}x{width}, {precision}, {args.rounds} interleaved rounds after "
          f"{args.warmup} warm-up rounds, random weights, eval + inference_mode")

    torch.manual_seed(0)
    # at torchvision's score threshold (the COCO protocol's 0.0 decodes every (RoI, class) pair)
    cfg = load_config(str(CONFIG), ["MODEL.DEVICE", str(device), "INPUT.MIN_SIZE_TEST", str(min(height, width)),
                                    "INPUT.MAX_SIZE_TEST", str(max(height, width)),
                                    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"])
    ours = build_model(cfg).eval().to(device)
    ours = ours.fuse(channels_last=device.type == "cuda")
    reference = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, rpn_post_nms_top_n_test=1000,
        min_size=min(height, width), max_size=max(height, width),
    ).eval().to(device)
    images = [torch.rand(3, height, width, device=device) for _ in range(args.batch)]
    ours_inputs = [{"image": img * 255, "height": height, "width": width} for img in images]

    def run(model, inputs):
        def call():
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=autocast):
                model(inputs)
        return call

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    medians = timed_rounds({"ours": run(ours, ours_inputs), "reference": run(reference, images)},
                           args.rounds, args.warmup, sync)
    ours_ips, ref_ips = args.batch / medians["ours"], args.batch / medians["reference"]
    print(f"ours: {medians['ours'] * 1e3:.1f} ms per batch of {args.batch}; reference: {medians['reference'] * 1e3:.1f} ms")
    print(ratio_line("throughput vs torchvision fasterrcnn_mobilenet_v3_large_fpn, same device",
                     ours_ips, ref_ips, "images/s", True, 1.0))
    print(ratio_line("throughput vs the paper (GTX 1080Ti, 146 images/s)", ours_ips, PAPER_IMAGES_PER_S,
                     "images/s", True, 1.0, labels=("ours", "paper")))
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
