"""What the command-line front ends share: where the checkout is, the final results file,
the output-folder check."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from detection.utils import comm

__all__ = ["REPO_ROOT", "RESULTS_FILE", "write_results_file", "make_writable_dir"]

#: The checkout this package runs from (litedet is installed in editable mode,
#: ``pip install -e .``): the tools find ``configs/`` and ``datasets/`` there.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The final evaluation results of a training / evaluation run, in OUTPUT_DIR.
RESULTS_FILE = "metrics_final.json"


def write_results_file(output_dir: str, record: Mapping[str, Any]) -> str:
    """Main process: write ``record`` to ``output_dir/metrics_final.json`` (replaced
    atomically) as strict JSON, NaN / inf as ``null`` so that jq or JavaScript read it.
    Returns the path on every rank."""
    path = os.path.join(output_dir, RESULTS_FILE)
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_finite(record), f, indent=2, default=_jsonable, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return path


def _finite(obj: Any) -> Any:
    if getattr(obj, "ndim", None) == 0 and hasattr(obj, "item"):  # numpy / torch scalar
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch arrays
        return obj.tolist()
    return str(obj)


def make_writable_dir(folder: str) -> None:
    """Create ``folder`` and write (and remove) a probe file in it, so that a tool fails
    before its work, not after; OSError otherwise."""
    os.makedirs(folder, exist_ok=True)
    probe = os.path.join(folder, f".litedet_write_test_{os.getpid()}")
    open(probe, "w").close()
    os.remove(probe)
