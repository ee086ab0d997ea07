"""Training metrics: an in-memory history plus writers for ``metrics.json`` and TensorBoard.

``metrics.json`` has one JSON object per line, detectron2-style::

    {"iteration": 19, "loss_cls": 0.61, ..., "total_loss": 1.42, "lr": 0.0199,
     "time": 0.41, "data_time": 0.01, "eta_seconds": 3600.0}

Losses, ``time`` and ``data_time`` are medians over the iterations since the previous
line (the logging window); ``lr`` is the latest value. Evaluation results are added as
``"<dataset>/bbox/AP"`` (or ``"bbox/AP"`` for a single test set) at the iteration they
were computed. Non-finite values (e.g. an AP with no ground truth) are written as null.
"""
from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["MetricsHistory", "JSONWriter", "TensorboardWriter", "flatten_results"]

logger = logging.getLogger(__name__)


def flatten_results(results: Mapping[str, Any], prefix: str = "") -> Dict[str, float]:
    """``{"bbox": {"AP": 30.1}}`` -> ``{"bbox/AP": 30.1}`` (non-numbers dropped)."""
    flat: Dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class MetricsHistory:
    """Scalars per iteration, reduced per logging window."""

    SMOOTHED = ("time", "data_time")

    def __init__(self) -> None:
        self._window: Dict[str, List[float]] = defaultdict(list)
        self._latest: Dict[str, float] = {}
        self._extra: Dict[str, float] = {}
        self.iter_times: List[float] = []  # all step times, for the ETA

    def put_losses(self, losses: Mapping[str, float]) -> None:
        for k, v in losses.items():
            self._window[k].append(float(v))

    def put_scalar(self, name: str, value: float, smooth: bool = False) -> None:
        if smooth:
            self._window[name].append(float(value))
        else:
            self._latest[name] = float(value)

    def put_results(self, flat: Mapping[str, float]) -> None:
        self._extra.update(flat)

    def has_pending(self) -> bool:
        return bool(self._window or self._latest or self._extra)

    def pop_window(self) -> Dict[str, float]:
        """Medians of the window's values plus latest scalars and results; resets the window."""
        out: Dict[str, float] = {}
        for k, values in self._window.items():
            if values:
                out[k] = statistics.median(values)
        out.update(self._latest)
        out.update(self._extra)
        self._window.clear()
        self._extra.clear()
        return out

    def median_iter_time(self, last: int = 20) -> Optional[float]:
        if not self.iter_times:
            return None
        return statistics.median(self.iter_times[-last:])


class JSONWriter:
    """Appends one line per call to ``path`` (created fresh unless ``append``)."""

    def __init__(self, path: str, append: bool = False) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a" if append else "w", encoding="utf-8")

    def write(self, iteration: int, scalars: Mapping[str, float]) -> None:
        record: Dict[str, Any] = {"iteration": int(iteration)}
        for k, v in scalars.items():
            record[k] = v if math.isfinite(v) else None  # NaN/inf -> null (strict JSON)
        try:
            self._file.write(json.dumps(record, sort_keys=False) + "\n")
            self._file.flush()
        except OSError as err:  # e.g. disk full: name the file instead of a bare errno
            raise OSError(err.errno, f"cannot write training metrics to {self.path}: {err.strerror or err}") from err
        try:
            os.fsync(self._file.fileno())
        except OSError:
            pass

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class TensorboardWriter:
    """Scalars to TensorBoard event files in ``log_dir``; a no-op if tensorboard is missing."""

    def __init__(self, log_dir: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as err:  # noqa: BLE001 - tensorboard is optional at runtime
            logger.warning("TensorBoard logging disabled: %s", err)
            self._writer = None
        else:
            self._writer = SummaryWriter(log_dir=log_dir)

    def write(self, iteration: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        for k, v in scalars.items():
            if k != "eta_seconds":
                self._writer.add_scalar(k, v, iteration)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
