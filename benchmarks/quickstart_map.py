#!/usr/bin/env python
"""Accuracy/time target of the quickstart: mAP@0.5 >= 0.60 on litedet_shapes val within
~10 minutes of CPU training on 2 cores.

    .venv/bin/python benchmarks/quickstart_map.py [--output-dir DIR] [--max-iter N] [extra quickstart args]

Runs tools/quickstart.py in a fresh output directory (or ``--output-dir``) and prints, side by side with the
target, the VOC-style mAP@0.5 (area and 11-point), COCO AP50 and AP, the training and total
wall time, the single-image CPU latency, and the machine it ran on. Append the printed
block to benchmarks/README.md when recording a result.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_MAP50 = 0.60
TARGET_TRAIN_MINUTES = 10.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Every other argument goes to tools/quickstart.py (see its --help).")
    p.add_argument("--output-dir", default="", help="where the quickstart writes (default: a fresh temporary folder)")
    return p


def main(argv) -> int:
    args, rest = build_parser().parse_known_args(argv)
    out = os.path.abspath(args.output_dir) if args.output_dir else tempfile.mkdtemp(prefix="litedet_quickstart_")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "quickstart.py"), "--output-dir", out, *rest]
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode:
        print(f"quickstart failed with exit code {result.returncode}", file=sys.stderr)
        return result.returncode
    with open(os.path.join(out, "quickstart_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    voc = next((r["bbox"] for r in summary["results"].values() if "AP50_07" in r.get("bbox", {})), {})
    coco = next((r["bbox"] for r in summary["results"].values() if "AP75" in r.get("bbox", {})), {})
    map50 = voc.get("AP50", coco.get("AP50", float("nan"))) / 100
    train_min = summary["train_seconds"] / 60
    print("\n=== benchmark: quickstart accuracy / time ===")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"config: {summary['config']}")
    print(f"mAP@0.5 (VOC area): ours {map50:.3f}, target {TARGET_MAP50:.2f}, ratio {map50 / TARGET_MAP50:.2f}")
    if voc:
        print(f"mAP@0.5 (VOC07 11-point): {voc['AP50_07'] / 100:.3f}")
    if coco:
        print(f"COCO AP50 {coco['AP50'] / 100:.3f}, AP@[.5:.95] {coco['AP'] / 100:.3f}")
    print(f"training wall time: ours {train_min:.1f} min, budget {TARGET_TRAIN_MINUTES:.0f} min; "
          f"whole quickstart {summary['total_seconds'] / 60:.1f} min")
    for lat in summary["latency"]:
        print(f"latency {lat['threads']} thread(s) {lat['input_hw'][0]}x{lat['input_hw'][1]}: median {lat['median_ms']:.1f} ms")
    print(f"outputs: {out}")
    return 0 if map50 >= TARGET_MAP50 else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
