"""What the command-line front ends share: where the checkout is, the weights an
evaluation loads, the final results file, the checks of output paths made before any
work (`check_output_folder`, `check_output_file`), and the argparse types of numeric
flags (`bounded`: ``--confidence-threshold 2`` is refused by the parser, exit 2)."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

from backbones.checkpoint_io import atomic_write
from detection.checkpoint import DetectionCheckpointer
from detection.config_checks import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, Domain
from detection.model_info import ModelInfo
from detection.utils import comm

__all__ = [
    "REPO_ROOT", "RESULTS_FILE", "CHART_EXTENSIONS", "OutputPathError", "bounded", "check_output_file",
    "check_output_folder", "load_evaluation_weights", "make_writable_dir", "non_negative_int", "positive_int",
    "probability", "write_results_file",
]

logger = logging.getLogger(__name__)

#: The checkout this package runs from (litedet is installed in editable mode,
#: ``pip install -e .``): the tools find ``configs/`` and ``datasets/`` there.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The final evaluation results of a training / evaluation run, in OUTPUT_DIR.
RESULTS_FILE = "metrics_final.json"


def load_evaluation_weights(
    model: nn.Module, cfg: Any, resume: bool, model_info: Optional[ModelInfo] = None
) -> Tuple[str, Dict[str, Any], Optional[ModelInfo]]:
    """Load MODEL.WEIGHTS into ``model`` (with ``resume``: OUTPUT_DIR's last checkpoint when
    there is one) on every rank; every tensor of the model must come from the file, and a
    file recording another architecture than ``model_info``'s is refused (`CheckpointError`).
    Returns the file actually loaded ("" for none), the checkpoint's extra data
    (``"iteration"``, ...) and the `ModelInfo` it records (None when none)."""
    checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR, model_info=model_info, require_complete=True)
    with comm.fail_together():  # weights unreadable on one node: every rank stops
        extra = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    # the file actually loaded: resume falls back past an unreadable newest checkpoint
    weights = checkpointer.resumed_from or cfg.MODEL.WEIGHTS
    if not weights:
        logger.warning("--eval-only without MODEL.WEIGHTS: evaluating an untrained model")
    return weights, extra, checkpointer.loaded_info


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


# ----------------------------------------------------------------------------- output paths
#: Image formats matplotlib writes, for charts (``--chart``, ``plot_metrics --output``).
CHART_EXTENSIONS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


class OutputPathError(ValueError):
    """An output path a tool cannot write (one line naming the flag and the path; exit 2)."""


def _blocking_file(folder: str) -> str:
    """The existing non-folder that ``folder`` or one of its ancestors is ("" for none)."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return ""
        path = parent
    return "" if os.path.isdir(path) else path


def check_output_folder(folder: str, flag: str) -> None:
    """Before any work: ``folder`` is (or can be created as) a writable folder, else
    `OutputPathError` naming ``flag`` and the path."""
    blocking = _blocking_file(folder)
    if blocking:
        where = "is a file" if blocking == os.path.abspath(folder) else f"cannot be created: {blocking} is a file"
        raise OutputPathError(f"{flag} {folder}: {where}, not a folder")
    try:
        make_writable_dir(folder)
    except OSError as err:
        raise OutputPathError(f"{flag} {folder}: cannot write there ({err.strerror or err})") from None


def check_output_file(path: str, flag: str, extensions: Sequence[str] = ()) -> None:
    """Before any work: ``path`` names a file (not a folder) whose folder can be written,
    with one of ``extensions`` when given; else `OutputPathError` naming ``flag`` and the
    path. Whether an existing file may be replaced or appended to is the caller's check."""
    if os.path.isdir(path):
        raise OutputPathError(f"{flag} {path}: is a folder; give a file name")
    ext = os.path.splitext(path)[1].lower()
    if extensions and ext not in extensions:
        raise OutputPathError(
            f"{flag} {path}: the file name must end in {', '.join(extensions)} (the format is taken from it)"
        )
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {path}: the file is not writable")
    folder = os.path.dirname(os.path.abspath(path))
    blocking = _blocking_file(folder)
    if blocking:
        raise OutputPathError(f"{flag} {path}: its folder cannot be created, {blocking} is a file")
    try:
        make_writable_dir(folder)
    except OSError as err:
        raise OutputPathError(f"{flag} {path}: cannot write to {folder} ({err.strerror or err})") from None


# ----------------------------------------------------------------------------- argparse types
def bounded(kind: Callable[[str], Union[int, float]], domain: Domain, name: str) -> Callable[[str], Union[int, float]]:
    """An argparse ``type``: ``kind(text)`` (int or float) inside ``domain``, else the
    parser's one-line usage error (exit 2) saying what the flag takes."""

    def parse(text: str) -> Union[int, float]:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
        if not domain.contains(value):
            raise argparse.ArgumentTypeError(f"must be {domain.describe()}, got {text!r}")
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse


#: A score or fraction: a finite number in [0, 1].
probability = bounded(float, FRACTION, "a number in [0, 1]")
#: A count that may be 0.
non_negative_int = bounded(int, NON_NEGATIVE, "an integer >= 0")
#: A count of at least 1.
positive_int = bounded(int, AT_LEAST_ONE, "an integer >= 1")
