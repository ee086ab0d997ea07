"""Fault handling of the training loop: stop signals, failed batches and non-finite losses.

- SIGTERM / SIGINT (`StopSignals`) ask the loop to stop at the next iteration boundary,
  where it saves a checkpoint; a second Ctrl-C aborts at once.
- Every iteration, the ranks agree (one small all-reduce, `agree_on_step`) on whether any
  of them failed to load its batch, met a non-finite loss or received a stop signal, before
  the gradient all-reduce where a lone failure would leave the others waiting forever.
- A non-finite loss stops training with a `FloatingPointError` naming the iteration, the
  loss terms and the last good checkpoint (`non_finite_loss_error`).
"""
from __future__ import annotations

import math
import signal
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..data.errors import BadSampleError
from ..utils import comm

__all__ = ["StopSignals", "agree_on_step", "non_finite_loss_error"]


class StopSignals:
    """While entered (main thread only): SIGTERM / SIGINT are recorded in ``signum``
    instead of killing the process; a second SIGINT raises `KeyboardInterrupt` (stop now,
    without a checkpoint). The previous handlers are restored on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        # Only note it: logging from a signal handler can deadlock on the handler lock.
        self.signum = signum


def agree_on_step(
    data_error: Optional[BaseException], finite: bool, stop_requested: bool, device: Optional[torch.device]
) -> Tuple[bool, bool]:
    """Share this rank's step outcome with every rank; returns ``(any loss non-finite, any
    rank asked to stop)``. A batch that failed to load on any rank raises here on every rank:
    the failing rank its own error, the others a `BadSampleError` pointing to it."""
    data_error_any, nonfinite_any, stop_any = comm.any_across_ranks(
        [data_error is not None, not finite, stop_requested], device=device
    )
    if data_error_any:
        if data_error is not None:
            raise data_error
        raise BadSampleError(f"(rank {comm.get_rank()})", "stopped: another rank failed to load its batch (see its message)")
    return nonfinite_any, stop_any


def non_finite_loss_error(loss_dict: Mapping[str, torch.Tensor], iteration: int, saved: str) -> FloatingPointError:
    """The error for a non-finite loss at ``iteration``: the non-finite terms (or another
    rank's), every term, ``saved`` (which checkpoint holds the last good state) and advice."""
    values = {k: float(v.detach().float().sum()) for k, v in loss_dict.items()}
    bad: List[str] = [k for k, v in values.items() if not math.isfinite(v)]
    where = f"iteration {iteration}" + (f" (rank {comm.get_rank()})" if comm.get_world_size() > 1 else "")
    bad_text = ", ".join(f"{k}={values[k]}" for k in bad) if bad else "another rank's loss (this rank's terms are finite)"
    return FloatingPointError(
        f"Loss became non-finite at {where}: {bad_text}"
        + " (all terms: "
        + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        + f"). {saved} Try a lower SOLVER.BASE_LR, a longer warmup or SOLVER.CLIP_GRADIENTS.ENABLED True."
    )
