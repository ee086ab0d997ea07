"""The main job: build the embedded dataset, train a detector on it on CPU, evaluate it
(COCO mmAP and VOC07/VOC10 mAP@0.5), run the demo on validation images and time inference.

    python tools/quickstart.py                      # defaults below, about 10 minutes on 2 cores
    python tools/quickstart.py --max-iter 200       # shorter run (lower mAP)
    python tools/quickstart.py --config-file configs/quickstart/fasterrcnn_shufflenet_v2_shapes.yaml

Everything lands in OUTPUT_DIR (default ./output/quickstart/<config name>); the dataset in
$LITEDET_DATASETS (default ./datasets). A summary is printed at the end and written to
OUTPUT_DIR/quickstart_summary.json (read by benchmarks/quickstart_map.py).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import List, Optional, Sequence

from .common import REPO_ROOT

DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config-file", default=DEFAULT_CONFIG)
    p.add_argument("--output-dir", default="", help="default: ./output/quickstart/<config name>")
    p.add_argument("--max-iter", type=int, default=0, help="override SOLVER.MAX_ITER (steps scale with it)")
    p.add_argument("--latency-runs", type=int, default=20, help="timed single-image inference runs")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="extra KEY VALUE config overrides")
    return p


def run(cmd: List[str], single_thread: bool = False) -> None:
    print("+", " ".join(cmd), flush=True)
    env = dict(os.environ)
    if single_thread:
        # One torch thread per process: on a 2-core machine, 2 threads plus a loader
        # worker oversubscribe the cores and every iteration waits on thread barriers.
        env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env)
    if result.returncode != 0:
        sys.exit(f"quickstart: step failed with exit code {result.returncode}: {' '.join(cmd)}")


def schedule_overrides(config_file: str, max_iter: int) -> List[str]:
    """Shorten the schedule proportionally (steps and checkpoints follow MAX_ITER)."""
    if max_iter <= 0:
        return []
    from detection.config import load_config

    cfg = load_config(config_file)
    scale = max_iter / cfg.SOLVER.MAX_ITER
    steps = tuple(max(1, int(s * scale)) for s in cfg.SOLVER.STEPS)
    return [
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.STEPS", str(steps),
        "SOLVER.WARMUP_ITERS", str(min(cfg.SOLVER.WARMUP_ITERS, max(1, max_iter // 10))),
        "SOLVER.CHECKPOINT_PERIOD", str(max_iter),
    ]


def measure_latency(config_file: str, weights: str, opts: List[str], runs: int, threads: int) -> dict:
    """Median single-image latency of the trained model (eval mode, CPU, ``threads`` threads)."""
    import cv2
    import torch

    from detection.config import load_config
    from detection.data import DatasetCatalog
    from detection.deploy.benchmark import summarize, time_callable
    from detection.engine.predictor import DefaultPredictor

    torch.set_num_threads(threads)
    cfg = load_config(config_file, opts + ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu"])
    predictor = DefaultPredictor(cfg)
    record = DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]
    image = cv2.imread(record["file_name"])
    stats = summarize(time_callable(lambda: predictor(image), warmup=3, iters=runs), batch=1)
    return {
        "threads": threads,
        "input_hw": [int(image.shape[0]), int(image.shape[1])],
        **{key: stats[key] for key in ("median_ms", "p10_ms", "p90_ms")},
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.time()
    name = os.path.splitext(os.path.basename(args.config_file))[0]
    out = os.path.abspath(args.output_dir or os.path.join("output", "quickstart", name))
    data_root = os.environ.get("LITEDET_DATASETS", "datasets")
    py = sys.executable

    # 1. the embedded dataset (idempotent)
    run([py, "-m", "detection.data.shapes", "--root", data_root])

    # 2. train + evaluate (train_net evaluates every DATASETS.TEST entry at the end)
    opts = schedule_overrides(args.config_file, args.max_iter) + list(args.opts)
    t_train = time.time()
    run([py, "tools/train_net.py", "--config-file", args.config_file, "OUTPUT_DIR", out, *opts], single_thread=True)
    train_s = time.time() - t_train
    weights = os.path.join(out, "model_final.pth")
    with open(os.path.join(out, "metrics_final.json"), encoding="utf-8") as f:
        results = json.load(f)["results"]

    # 3. demo on validation images
    from detection.config import load_config
    from detection.data import DatasetCatalog

    cfg = load_config(args.config_file, opts)
    val_images = [r["file_name"] for r in DatasetCatalog.get(cfg.DATASETS.TEST[0])[:8]]
    demo_dir = os.path.join(out, "demo")
    run([py, "tools/demo.py", "--config-file", args.config_file, "--input", *val_images, "--output", demo_dir,
         *opts, "MODEL.WEIGHTS", weights])

    # 4. latency
    latency = [measure_latency(args.config_file, weights, opts, args.latency_runs, t) for t in (1, 2)]

    summary = {
        "config": os.path.relpath(args.config_file, REPO_ROOT),
        "output_dir": out,
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t_start, 1),
        "results": results,
        "latency": latency,
        "demo_dir": demo_dir,
    }
    with open(os.path.join(out, "quickstart_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)

    print("\n=== litedet quickstart summary ===")
    for dataset, res in results.items():
        bbox = res.get("bbox", {})
        if "AP50_07" in bbox:
            print(f"{dataset:<24} VOC mAP@0.5: area {bbox['AP50']:.1f}  11-point {bbox['AP50_07']:.1f}")
        else:
            print(f"{dataset:<24} COCO AP {bbox.get('AP', float('nan')):.1f}  AP50 {bbox.get('AP50', float('nan')):.1f}  "
                  f"AP75 {bbox.get('AP75', float('nan')):.1f}")
    for lat in latency:
        print(f"latency (CPU, {lat['threads']} thread{'s' if lat['threads'] > 1 else ''}, "
              f"{lat['input_hw'][0]}x{lat['input_hw'][1]} image): median {lat['median_ms']:.1f} ms "
              f"(p10 {lat['p10_ms']:.1f}, p90 {lat['p90_ms']:.1f})")
    print(f"training time {train_s / 60:.1f} min, total {summary['total_seconds'] / 60:.1f} min")
    print(f"weights:  {weights}\nmetrics:  {os.path.join(out, 'metrics_final.json')}\n"
          f"demo:     {demo_dir}\nsummary:  {os.path.join(out, 'quickstart_summary.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
