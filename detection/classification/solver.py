"""Learning-rate schedules of the classification papers, per iteration.

Like the detector's schedules (`detection.engine.solver`), these are
`torch.optim.lr_scheduler.LambdaLR` multipliers of ``SOLVER.BASE_LR`` stepped once per
iteration, with the same optional warmup (``warmup(it) * schedule(it)``):

* ``LinearDecayLR`` (ShuffleNet v1/v2: "linear-decay learning rate policy (decreased from
  0.5 to 0)"): ``lr(it) = BASE_LR_END + (BASE_LR - BASE_LR_END) * max(0, 1 - it / MAX_ITER)``.
* ``EpochStepLR`` (FD-MobileNet: "starts from 0.1 and decays by an order of magnitude every
  30 epochs" -> GAMMA 0.1, STEP_EPOCHS 30; SeesawNet: "from 0.045 ... scale it by 0.98 every
  epoch" -> GAMMA 0.98, STEP_EPOCHS 1):
  ``lr(it) = BASE_LR * GAMMA ** floor(floor(it / ITERS_PER_EPOCH) / STEP_EPOCHS)``.

Any other ``SOLVER.LR_SCHEDULER_NAME`` (``WarmupMultiStepLR``, ``WarmupCosineLR``) is
built by the detector's `detection.engine.solver.build_lr_scheduler`.
"""
from __future__ import annotations

from typing import Callable

import torch

from detection.config import ConfigError
from detection.engine.solver import build_lr_scheduler as build_detection_lr_scheduler
from detection.engine.solver import warmup_factor_at_iter

__all__ = [
    "CLASSIFICATION_SCHEDULERS",
    "linear_decay_lr_lambda",
    "epoch_step_lr_lambda",
    "build_classification_lr_scheduler",
    "uses_epochs",
]

#: Schedules this module adds; they need no warmup but accept one.
CLASSIFICATION_SCHEDULERS = ("LinearDecayLR", "EpochStepLR")


def linear_decay_lr_lambda(
    max_iter: int, end_factor: float, warmup_method: str, warmup_iters: int, warmup_factor: float
) -> Callable[[int], float]:
    """Multiplier ``end + (1 - end) * max(0, 1 - it / max_iter)`` (times the warmup)."""
    if max_iter <= 0:
        raise ConfigError(f"LinearDecayLR needs SOLVER.MAX_ITER > 0, got {max_iter}")
    warmup_factor_at_iter(warmup_method, 0, max(warmup_iters, 1), warmup_factor)  # validate the method

    def lr_lambda(it: int) -> float:
        linear = end_factor + (1.0 - end_factor) * max(0.0, 1.0 - it / max_iter)
        return warmup_factor_at_iter(warmup_method, it, warmup_iters, warmup_factor) * linear

    return lr_lambda


def epoch_step_lr_lambda(
    iters_per_epoch: int, step_epochs: int, gamma: float, warmup_method: str, warmup_iters: int, warmup_factor: float
) -> Callable[[int], float]:
    """Multiplier ``gamma ** ((it // iters_per_epoch) // step_epochs)`` (times the warmup)."""
    if iters_per_epoch <= 0:
        raise ConfigError(f"EpochStepLR needs SOLVER.ITERS_PER_EPOCH > 0, got {iters_per_epoch}")
    if step_epochs <= 0:
        raise ConfigError(f"EpochStepLR needs SOLVER.STEP_EPOCHS > 0, got {step_epochs}")
    warmup_factor_at_iter(warmup_method, 0, max(warmup_iters, 1), warmup_factor)

    def lr_lambda(it: int) -> float:
        decays = (it // iters_per_epoch) // step_epochs
        return warmup_factor_at_iter(warmup_method, it, warmup_iters, warmup_factor) * gamma**decays

    return lr_lambda


def uses_epochs(cfg) -> bool:
    """Whether the config needs ``SOLVER.ITERS_PER_EPOCH`` (epoch-based length or schedule)."""
    return int(cfg.SOLVER.MAX_EPOCHS) > 0 or cfg.SOLVER.LR_SCHEDULER_NAME == "EpochStepLR"


def build_classification_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule named by ``SOLVER.LR_SCHEDULER_NAME`` (see the module docstring)."""
    s = cfg.SOLVER
    name = s.LR_SCHEDULER_NAME
    common = dict(warmup_method=s.WARMUP_METHOD, warmup_iters=int(s.WARMUP_ITERS), warmup_factor=float(s.WARMUP_FACTOR))
    if name == "LinearDecayLR":
        end = float(s.BASE_LR_END) / float(s.BASE_LR) if s.BASE_LR else 0.0
        fn = linear_decay_lr_lambda(int(s.MAX_ITER), end, **common)
    elif name == "EpochStepLR":
        fn = epoch_step_lr_lambda(int(s.ITERS_PER_EPOCH), int(s.STEP_EPOCHS), float(s.GAMMA), **common)
    else:
        try:
            return build_detection_lr_scheduler(cfg, optimizer)
        except ConfigError as err:
            raise ConfigError(f"{err} (or one of {list(CLASSIFICATION_SCHEDULERS)} for classification)") from None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
