"""Draw training curves from a run's metrics.json (one JSON object per logging step).

    python tools/plot_metrics.py OUTPUT_DIR [--output curves.png]

Writes one PNG (default OUTPUT_DIR/curves.png) with three panels: every ``loss*`` term
and ``total_loss`` against the iteration, the learning rate, and every evaluation metric
in the file (keys ending in ``/AP``, ``/AP50``, ``/AP50_07`` ... as written by train_net).
Lines that are not valid JSON (a run killed mid-write) are skipped with a warning naming
the file and line. ``--output`` must name a .png/.svg/.pdf/.jpg file in a writable
folder (checked before reading the metrics). Exit status 2 for a missing/empty metrics
file or an output that cannot be written.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from backbones.checkpoint_io import atomic_write

from .common import CHART_EXTENSIONS, OutputPathError, check_output_file

Series = Dict[str, List[Tuple[int, float]]]

# Evaluation keys worth a curve; per-class APs would crowd the panel.
EVAL_SUFFIXES = ("/AP", "/AP50", "/AP75", "/AP50_07", "/top1", "/top5")


def read_metrics(path: str) -> List[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                print(f"warning: {path}:{lineno}: skipped, not valid JSON ({err.msg})", file=sys.stderr)
                continue
            if isinstance(record, dict) and "iteration" in record:
                records.append(record)
    return records


def split_series(records: Sequence[dict]) -> Tuple[Series, Series, Series]:
    losses: Series = defaultdict(list)
    lr: Series = defaultdict(list)
    evals: Series = defaultdict(list)
    for r in records:
        it = int(r["iteration"])
        for key, value in r.items():
            if not isinstance(value, (int, float)) or value is None:
                continue
            if key.startswith("loss") or key == "total_loss":
                losses[key].append((it, float(value)))
            elif key == "lr":
                lr[key].append((it, float(value)))
            elif key.endswith(EVAL_SUFFIXES):
                evals[key].append((it, float(value)))
    return losses, lr, evals


def plot(records: Sequence[dict], output: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses, lr, evals = split_series(records)
    panels = [("loss", losses, True), ("learning rate", lr, False), ("evaluation (%)", evals, False)]
    iterations = [int(r["iteration"]) for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharex=True)
    for ax, (name, series, log_scale) in zip(axes, panels):
        for key, points in sorted(series.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(points) < 10 else None, label=key)
        ax.set_title(name)
        ax.set_xlabel("iteration")
        if log_scale and series:
            ax.set_yscale("log")
        if series:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
    axes[0].set_xlim(min(iterations) - 1, max(iterations) + 1)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format=os.path.splitext(output)[1].lstrip(".").lower())
    plt.close(fig)
    atomic_write(output, buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", help="a training OUTPUT_DIR (or a metrics.json file)")
    parser.add_argument("--output", default="",
                        help=f"image path, {'/'.join(CHART_EXTENSIONS)} (default: <output_dir>/curves.png)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.output_dir
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.json")
    if not os.path.isfile(path):
        print(f"error: no metrics file at {path}", file=sys.stderr)
        return 2
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(path)), "curves.png")
    try:
        check_output_file(output, "--output", CHART_EXTENSIONS)
    except OutputPathError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        records = read_metrics(path)
    except UnicodeDecodeError as err:
        print(f"error: {path}: not UTF-8 text (byte {err.start}); not a metrics.json", file=sys.stderr)
        return 2
    if not records:
        print(f"error: {path} holds no metrics records", file=sys.stderr)
        return 2
    plot(records, output, title=os.path.basename(os.path.dirname(os.path.abspath(path))))
    print(f"wrote {output} ({len(records)} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
