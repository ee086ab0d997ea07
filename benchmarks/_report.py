"""Shared helpers of the benchmark scripts: the self-describing header and the
"ours X, reference Y, ratio R" lines."""
from __future__ import annotations

import os
import platform
import shlex
import sys
from typing import Dict, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(title: str, extra_versions: Optional[Dict[str, str]] = None) -> str:
    """Command line, hardware and library versions, one item per line."""
    import torch
    import torchvision

    versions = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    versions.update(extra_versions or {})
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        f"== {title} ==",
        "command: " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, REPO_ROOT), *sys.argv]),
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
