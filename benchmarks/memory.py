"""Peak memory (resident set size) of our detectors against torchvision's, each measured
in its own fresh subprocess (``VmHWM`` from /proc/self/status, the high-water mark of the
RSS; ``ru_maxrss`` where /proc is missing).

- inference: Light-Head R-CNN ShuffleNet v2 1.0x
  (configs/COCO-LightHead/lighthead_shufflenet_v2_1.0x.yaml) on one 800 x 1200 image, eval
  mode under ``torch.inference_mode``, plain and fused (``model.eval().fuse()``), against torchvision's
  ``fasterrcnn_mobilenet_v3_large_fpn`` (weights=None, weights_backbone=None, 91 classes,
  min_size=800, max_size=1200 so that it also runs at 800 x 1200);
- training: the setting of ``benchmarks/speed_training.py`` (Light-Head R-CNN ShuffleNet
  v2 0.5x, BN trainable, 512 x 683 images, batch 8, SGD steps) against
  ``fasterrcnn_mobilenet_v3_large_320_fpn`` (weights=None, weights_backbone=None,
  min_size=512, max_size=1024), on the same seeded synthetic batch.

Each line gives the peak RSS and the RSS of the process after imports and model
construction (so the run's own working memory is the difference). Lower is better.

Run: ``.venv/bin/python benchmarks/memory.py`` (about 2 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from detection.deploy.benchmark import ratio_line, report_header

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INFERENCE_CONFIG = "configs/COCO-LightHead/lighthead_shufflenet_v2_1.0x.yaml"
TRAINING_CONFIG = "configs/COCO-LightHead/lighthead_shufflenet_v2_0.5x.yaml"


def rss_mib(field: str) -> float:
    """VmHWM (peak) or VmRSS (current) of this process in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def synthetic_batch(batch: int, height: int, width: int, seed: int = 0):
    """uint8 RGB images and 1-6 boxes each with labels in 0..4."""
    import torch

    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(batch):
        image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
        n = int(torch.randint(1, 7, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([width - 150.0, height - 150.0])
        wh = 20 + torch.rand(n, 2, generator=g) * 120
        boxes = torch.cat([xy, xy + wh], dim=1)
        labels = torch.randint(0, 5, (n,), generator=g)
        items.append({"image": image, "height": height, "width": width, "instances": {"boxes": boxes, "labels": labels}})
    return items


def child(which: str, mode: str, threads: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if mode == "inference":
        items = synthetic_batch(1, 800, 1200)
    else:
        items = synthetic_batch(8, 512, 683)
    if which in ("ours", "ours-fused"):
        from detection.config import load_config
        from detection.modeling import build_model

        if mode == "inference":
            # at torchvision's score threshold (the COCO protocol's 0.0 decodes every pair)
            cfg = load_config(
                os.path.join(REPO_ROOT, INFERENCE_CONFIG), ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"]
            )
        else:
            cfg = load_config(
                os.path.join(REPO_ROOT, TRAINING_CONFIG),
                ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "0"],
            )
        model = build_model(cfg)
        if which == "ours-fused":  # the inference fast path (BN folded, fused units, channels-last)
            model = model.eval().fuse(inplace=True)
        run = lambda: model(items)  # noqa: E731
    else:
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn, fasterrcnn_mobilenet_v3_large_fpn

        if mode == "inference":
            model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, min_size=800, max_size=1200)
        else:
            model = fasterrcnn_mobilenet_v3_large_320_fpn(
                weights=None, weights_backbone=None, num_classes=81, min_size=512, max_size=1024
            )
        images = [d["image"] for d in items]
        targets = [{"boxes": d["instances"]["boxes"], "labels": d["instances"]["labels"] + 1} for d in items]
        run = lambda: model([im.float() / 255.0 for im in images], targets if model.training else None)  # noqa: E731
    baseline = rss_mib("VmRSS")
    t = time.perf_counter()
    if mode == "inference":
        model.eval()
        with torch.inference_mode():
            for _ in range(steps):
                run()
    else:
        model.train()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.002, momentum=0.9)
        for _ in range(steps):
            losses = run()
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
    return {"peak_mib": rss_mib("VmHWM"), "baseline_mib": baseline, "seconds": time.perf_counter() - t}


def measure(which: str, mode: str, threads: int, steps: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", which, "--mode", mode,
           "--threads", str(threads), "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"memory measurement {which}/{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads in each subprocess (default 2)")
    p.add_argument("--inference-runs", type=int, default=3, help="forward passes at 800x1200 (default 3)")
    p.add_argument("--training-steps", type=int, default=2, help="SGD steps of batch 8 at 512 px (default 2)")
    p.add_argument("--only", choices=["inference", "training"], help="measure only one of the two")
    p.add_argument("--child", choices=["ours", "ours-fused", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["inference", "training"], help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.mode, args.threads, args.steps)))
        return 0
    sys.stdout.reconfigure(line_buffering=True)
    import torch

    torch.set_num_threads(args.threads)
    print(report_header("Peak memory (RSS): litedet vs torchvision, one fresh subprocess per measurement"))
    settings = {
        "inference": (args.inference_runs,
                      f"ours {INFERENCE_CONFIG} (Light-Head R-CNN ShuffleNet v2 1.0x); reference torchvision "
                      "fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, min_size=800, max_size=1200); "
                      f"one 800x1200 image, {args.inference_runs} forward passes, eval + inference_mode"),
        "training": (args.training_steps,
                     f"ours {TRAINING_CONFIG} + NORM BN, FREEZE_AT 0 (Light-Head R-CNN ShuffleNet v2 0.5x); reference "
                     "torchvision fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=81, "
                     f"min_size=512, max_size=1024); batch 8 of 512x683, {args.training_steps} SGD steps"),
    }
    for mode, (steps, text) in settings.items():
        if args.only and mode != args.only:
            continue
        print(f"{mode}: {text}")
        variants = ("ours", "ours-fused", "reference") if mode == "inference" else ("ours", "reference")
        res = {which: measure(which, mode, args.threads, steps) for which in variants}
        for which, r in res.items():
            print(f"  {which}: peak RSS {r['peak_mib']:.0f} MiB (after imports + model build {r['baseline_mib']:.0f} MiB; "
                  f"run {r['seconds']:.1f} s)")
        print(ratio_line(f"{mode} peak RSS", res["ours"]["peak_mib"], res["reference"]["peak_mib"], "MiB", False, 1.0))
        if "ours-fused" in res:
            print(ratio_line(f"{mode} peak RSS, ours fused (model.eval().fuse())", res["ours-fused"]["peak_mib"],
                             res["reference"]["peak_mib"], "MiB", False, 1.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
