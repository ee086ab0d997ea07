"""What the command-line front ends share: where the checkout is, the weights an
evaluation loads, the final results file, the output-folder check."""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Dict, Mapping, Tuple

from torch import nn

from backbones.checkpoint_io import atomic_write
from detection.checkpoint import DetectionCheckpointer
from detection.utils import comm

__all__ = ["REPO_ROOT", "RESULTS_FILE", "load_evaluation_weights", "write_results_file", "make_writable_dir"]

logger = logging.getLogger(__name__)

#: The checkout this package runs from (litedet is installed in editable mode,
#: ``pip install -e .``): the tools find ``configs/`` and ``datasets/`` there.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The final evaluation results of a training / evaluation run, in OUTPUT_DIR.
RESULTS_FILE = "metrics_final.json"


def load_evaluation_weights(model: nn.Module, cfg: Any, resume: bool) -> Tuple[str, Dict[str, Any]]:
    """Load MODEL.WEIGHTS into ``model`` (with ``resume``: OUTPUT_DIR's last checkpoint when
    there is one) on every rank; returns the file actually loaded ("" for none) and the
    checkpoint's extra data (``"iteration"``, ...)."""
    checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
    with comm.fail_together():  # weights unreadable on one node: every rank stops
        extra = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    # the file actually loaded: resume falls back past an unreadable newest checkpoint
    weights = checkpointer.resumed_from or cfg.MODEL.WEIGHTS
    if not weights:
        logger.warning("--eval-only without MODEL.WEIGHTS: evaluating an untrained model")
    return weights, extra


def write_results_file(output_dir: str, record: Mapping[str, Any]) -> str:
    """Main process: write ``record`` to ``output_dir/metrics_final.json`` (replaced
    atomically) as strict JSON, NaN / inf as ``null`` so that jq or JavaScript read it.
    Returns the path on every rank."""
    path = os.path.join(output_dir, RESULTS_FILE)
    if comm.is_main_process():
        atomic_write(path, json.dumps(_finite(record), indent=2, default=_jsonable, allow_nan=False))
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
