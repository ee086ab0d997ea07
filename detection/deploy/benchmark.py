"""Latency measurement: timing loop, statistics, the machine record, result files,
the papers' protocols as presets, the speed-vs-accuracy chart, and the report lines of
the scripts in benchmarks/ (`report_header`, `ratio_line`).

    times = time_callable(lambda: model(x), warmup=10, iters=50, synchronize=torch.cuda.synchronize)
    row = {**summarize(times, batch=4), **machine_info("cuda", threads=16)}
    append_results(row, json_path="bench.json", csv_path="bench.csv")
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .runtime import runtime_versions

__all__ = [
    "PRESETS", "time_callable", "summarize", "machine_info", "cpu_model", "append_results", "read_accuracy",
    "plot_speed_accuracy", "report_header", "ratio_line",
]

# The papers' timing protocols. Keys are tools/benchmark.py option names; explicit
# command-line options override them.
PRESETS: Dict[str, Dict[str, Any]] = {
    # ShuffleNet v2 (Table 7), detection on COCO: GPU, batch 4, 800x1200, images per second
    "gpu-detector": {"device": "cuda", "batch": 4, "input": "800x1200", "backend": "torch", "part": "detector"},
    # ShuffleNet v2 (Table 8), classification: GPU batch 8 at 224x224 (its ARM column: batch 1, = arm-224)
    "gpu-classification": {"device": "cuda", "batch": 8, "input": "224x224", "backend": "torch", "part": "classifier"},
    # ShuffleNet v1 (Table 8): one ARM core (Snapdragon 820), batch 1, three input sizes; ncnn as on the board
    "arm-224": {"device": "cpu", "threads": 1, "batch": 1, "input": "224x224", "backend": "ncnn", "part": "classifier"},
    "arm-480x640": {"device": "cpu", "threads": 1, "batch": 1, "input": "480x640", "backend": "ncnn", "part": "classifier"},
    "arm-720x1280": {"device": "cpu", "threads": 1, "batch": 1, "input": "720x1280", "backend": "ncnn", "part": "classifier"},
    # the same single-core protocol through ONNX Runtime (boards without ncnn)
    "arm-224-ort": {"device": "cpu", "threads": 1, "batch": 1, "input": "224x224", "backend": "onnxruntime", "part": "classifier"},
}


def time_callable(
    fn: Callable[[], Any], warmup: int, iters: int, synchronize: Optional[Callable[[], None]] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> List[float]:
    """Seconds per call for ``iters`` calls after ``warmup`` untimed ones. With
    ``synchronize`` (``torch.cuda.synchronize``) the clock waits for queued GPU work."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    sync = synchronize or (lambda: None)
    for _ in range(max(0, warmup)):
        fn()
    sync()
    times = []
    for i in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        if progress is not None:
            progress(i)
    return times


def summarize(times: Sequence[float], batch: int) -> Dict[str, float]:
    """Median / p10 / p90 / mean latency per batch in ms and throughput in images/s
    (from the median)."""
    t = np.asarray(times, dtype=np.float64) * 1000.0
    median = float(np.median(t))
    return {
        "iters": int(t.size),
        "median_ms": median,
        "p10_ms": float(np.percentile(t, 10)),
        "p90_ms": float(np.percentile(t, 90)),
        "mean_ms": float(t.mean()),
        "min_ms": float(t.min()),
        "images_per_s": batch * 1000.0 / median if median > 0 else float("inf"),
    }


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, else `platform`)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu", threads: int = 0) -> Dict[str, Any]:
    """What a latency figure depends on: CPU, cores, threads used, GPU, library versions."""
    import torch

    info: Dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None,
        "cuda": torch.version.cuda if device.startswith("cuda") else None,
    }
    info.update({f"{name}_version": v for name, v in runtime_versions().items()})
    return info


def append_results(row: Mapping[str, Any], json_path: str = "", csv_path: str = "") -> None:
    """Append ``row`` to a JSON list file and/or a CSV file (header written once; a row
    with new columns rewrites the file with the union of columns)."""
    if json_path:
        rows: List[Any] = []
        if os.path.isfile(json_path) and os.path.getsize(json_path):
            with open(json_path) as f:
                loaded = json.load(f)
            rows = loaded if isinstance(loaded, list) else [loaded]
        rows.append(dict(row))
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(rows, f, indent=2)
    if csv_path:
        old: List[Dict[str, str]] = []
        fields: List[str] = []
        if os.path.isfile(csv_path) and os.path.getsize(csv_path):
            with open(csv_path, newline="") as f:
                reader = csv.DictReader(f)
                fields = list(reader.fieldnames or [])
                old = list(reader)
        new_fields = [k for k in row if k not in fields]
        os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
        if new_fields or not fields:
            with open(csv_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields + new_fields)
                writer.writeheader()
                writer.writerows(old)
                writer.writerow(dict(row))
        else:
            with open(csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=fields).writerow(dict(row))


def read_accuracy(metrics_path: str, key: str = "bbox/AP") -> float:
    """A number from train_net's metrics_final.json: ``key`` is ``TASK/METRIC`` (first
    dataset) or ``DATASET/TASK/METRIC``. ``metrics_path`` may be the output folder."""
    if os.path.isdir(metrics_path):
        metrics_path = os.path.join(metrics_path, "metrics_final.json")
    with open(metrics_path) as f:
        results = json.load(f).get("results", {})
    if not results:
        raise ValueError(f"{metrics_path} has no 'results'")
    parts = key.split("/")
    if len(parts) == 2:
        parts = [next(iter(results))] + parts
    node: Any = results
    for p in parts:
        if not isinstance(node, Mapping) or p not in node:
            raise ValueError(f"{metrics_path}: no {'/'.join(parts)} (looked for {p!r})")
        node = node[p]
    return float(node)


def plot_speed_accuracy(
    points: Sequence[Mapping[str, Any]], path: str, x_key: str = "images_per_s", y_key: str = "accuracy",
    title: str = "", x_label: str = "", y_label: str = "",
) -> str:
    """Scatter of speed vs accuracy with one labelled point per model (``name``), as
    ShuffleNet v2's Figure 1; writes a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for p in points:
        ax.scatter(p[x_key], p[y_key], s=36)
        ax.annotate(str(p.get("name", "")), (p[x_key], p[y_key]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(x_label or x_key)
    ax.set_ylabel(y_label or y_key)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def report_header(title: str, extra_versions: Optional[Mapping[str, str]] = None) -> str:
    """The head of a benchmark script's output, one item per line: command line, CPU,
    torch threads, library versions, and the load average (flagged when the machine is busy)."""
    import torch
    import torchvision

    versions = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    versions.update(extra_versions or {})
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        f"== {title} ==",
        "command: " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv]),
        f"cpu: {cpu_model()} ({os.cpu_count()} logical cores, {platform.machine()})",
        f"torch threads: {torch.get_num_threads()}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"load average at start (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        # a job that ended just before still weighs on the 1-min average; half the cores busy is "busy"
        + ("  <- machine busy, numbers are noisy" if load[0] > 0.5 * (os.cpu_count() or 1) else ""),
    ]
    return "\n".join(lines)


def ratio_line(
    name: str, ours: float, reference: float, unit: str, higher_is_better: bool, target: float,
    labels: tuple = ("ours", "reference"),
) -> str:
    """``name: ours X unit, reference Y unit, ratio R (target >= T: PASS/FAIL)``; the ratio is
    always "how many times better the first is"."""
    ratio = ours / reference if higher_is_better else reference / ours
    verdict = "PASS" if ratio >= target else "FAIL"
    return (
        f"{name}: {labels[0]} {ours:.4g} {unit}, {labels[1]} {reference:.4g} {unit}, ratio {ratio:.3g} "
        f"(target >= {target:g}: {verdict})"
    )
