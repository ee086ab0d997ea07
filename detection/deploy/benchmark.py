"""Latency measurement: timing loop, statistics, the machine record, result files,
the papers' protocols as presets, the speed-vs-accuracy chart, and the report lines of
the scripts in benchmarks/ (`report_header`, `ratio_line`).

    times = time_callable(lambda: model(x), warmup=10, iters=50, synchronize=torch.cuda.synchronize)
    row = {**summarize(times, batch=4), **machine_info("cuda", threads=16)}
    append_results(row, json_path="bench.json", csv_path="bench.csv")

Result files are benchmark logs: a JSON list of row objects, or a CSV with a header row.
`append_results` only extends a file that is already one (`check_results_file`, which a
tool calls before timing anything): a file of any other content is never rewritten.
Writes are atomic (the file holds the old or the new rows, never half of them).
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from backbones.checkpoint_io import atomic_write

from .runtime import runtime_versions

__all__ = [
    "PRESETS", "RESULT_KEYS", "ResultsFileError", "time_callable", "summarize", "machine_info", "cpu_model",
    "append_results", "check_results_file", "read_accuracy", "plot_speed_accuracy", "report_header", "ratio_line",
]

#: Columns every benchmark row has: how a result file is recognised as a benchmark log.
RESULT_KEYS = ("median_ms",)


class ResultsFileError(ValueError):
    """A result file that is not a benchmark log (or cannot be read as one): never rewritten."""

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


def _read_json_rows(path: str) -> List[Dict[str, Any]]:
    """The rows of an existing JSON benchmark log (``[]`` for an empty file)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ResultsFileError(f"{path}: not UTF-8 text (byte {err.start}); not a benchmark log") from None
    if not text.strip():
        return []
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultsFileError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); not a benchmark log") from None
    if not isinstance(loaded, list) or not all(isinstance(r, dict) and all(k in r for k in RESULT_KEYS) for r in loaded):
        what = f"a JSON {type(loaded).__name__}" if not isinstance(loaded, list) else "a JSON list of other records"
        raise ResultsFileError(
            f"{path} is {what}, not a benchmark log (a list of rows with {', '.join(RESULT_KEYS)}); "
            "it is left as it is: choose another file"
        )
    return loaded


def _read_csv_rows(path: str) -> Tuple[List[str], List[Dict[str, str]]]:
    """Header and rows of an existing CSV benchmark log (``([], [])`` for an empty file)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ResultsFileError(f"{path}: not UTF-8 text (byte {err.start}); not a benchmark log") from None
    if not text.strip():
        return [], []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    except csv.Error as err:
        raise ResultsFileError(f"{path}: not a readable CSV ({err}); not a benchmark log") from None
    if not all(k in fields for k in RESULT_KEYS):
        raise ResultsFileError(
            f"{path} is a CSV with columns {fields[:6]}{' ...' if len(fields) > 6 else ''}, not a benchmark log "
            f"(columns {', '.join(RESULT_KEYS)}, ...); it is left as it is: choose another file"
        )
    return fields, rows


def check_results_file(path: str, kind: str) -> None:
    """`ResultsFileError` unless ``path`` is absent, empty, or a benchmark log of ``kind``
    (``"json"`` or ``"csv"``) that `append_results` may extend."""
    if not os.path.exists(path):
        return
    if not os.path.isfile(path):
        raise ResultsFileError(f"{path} is not a regular file; not a benchmark log")
    (_read_json_rows if kind == "json" else _read_csv_rows)(path)


def append_results(row: Mapping[str, Any], json_path: str = "", csv_path: str = "") -> None:
    """Append ``row`` to a JSON list file and/or a CSV file (header written once; a row
    with new columns rewrites the file with the union of columns). An existing file must
    be a benchmark log (`check_results_file`); each file is replaced atomically."""
    if json_path:
        rows: List[Any] = _read_json_rows(json_path) if os.path.isfile(json_path) else []
        rows.append(dict(row))
        atomic_write(json_path, json.dumps(rows, indent=2))
    if csv_path:
        fields, old = _read_csv_rows(csv_path) if os.path.isfile(csv_path) else ([], [])
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=fields + [k for k in row if k not in fields])
        writer.writeheader()
        writer.writerows(old)
        writer.writerow(dict(row))
        atomic_write(csv_path, out.getvalue())


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
    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(path)[1].lstrip(".").lower() or "png")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
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
