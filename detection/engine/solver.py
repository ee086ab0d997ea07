"""Optimizer, learning-rate schedules and gradient clipping built from ``cfg.SOLVER``.

The schedules are plain `torch.optim.lr_scheduler.LambdaLR` multipliers of
``SOLVER.BASE_LR``, stepped once per iteration: the value at iteration ``it`` is
``warmup(it) * schedule(it)`` (times a param group's ``SOLVER.LR_MULTIPLIERS`` factor).

* ``WarmupMultiStepLR``: ``schedule(it) = GAMMA ** (number of STEPS <= it)``.
* ``WarmupCosineLR``: ``schedule(it) = end + (1 - end) * 0.5 * (1 + cos(pi * it / MAX_ITER))``
  with ``end = BASE_LR_END / BASE_LR``.
* warmup, for ``it < WARMUP_ITERS``: ``"linear"`` ramps ``WARMUP_FACTOR -> 1``
  (``WARMUP_FACTOR * (1 - a) + a`` with ``a = it / WARMUP_ITERS``); ``"constant"`` holds
  ``WARMUP_FACTOR``. From ``WARMUP_ITERS`` on the factor is 1.
"""
from __future__ import annotations

import bisect
import fnmatch
import logging
import math
from typing import Any, Callable, Dict, Iterable, List, Sequence, Tuple

import torch
from torch import nn

from detection.config import ConfigError
from detection.config_checks import CLIP_TYPES, check_choice, check_lr_multipliers

__all__ = [
    "build_optimizer",
    "build_lr_scheduler",
    "get_default_param_groups",
    "lr_factor",
    "warmup_factor_at_iter",
    "multistep_lr_lambda",
    "cosine_lr_lambda",
    "clip_gradients",
]

logger = logging.getLogger(__name__)

_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,  # BatchNorm{1,2,3}d, SyncBatchNorm, InstanceNorm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def _is_norm(module: nn.Module) -> bool:
    # Also catches custom norms (e.g. a FrozenBatchNorm with an affine) by class name.
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def lr_factor(name: str, lr_multipliers: Sequence[Tuple[str, float]]) -> float:
    """The product of the factors of every ``(pattern, factor)`` whose shell-style pattern
    (`fnmatch`, case-sensitive) matches the parameter name ``name``; 1.0 when none does."""
    factor = 1.0
    for pattern, value in lr_multipliers:
        if fnmatch.fnmatchcase(name, pattern):
            factor *= float(value)
    return factor


def get_default_param_groups(
    model: nn.Module,
    weight_decay: float,
    weight_decay_norm: float,
    lr_multipliers: Sequence[Tuple[str, float]] = (),
) -> List[Dict[str, Any]]:
    """Param groups: normalisation parameters and every bias use ``weight_decay_norm``, all
    other trainable weights ``weight_decay``; each is split further by learning-rate factor
    (`lr_factor` of the parameter's full name under ``lr_multipliers``), a group's factor in
    its ``"lr_factor"``. Groups come factor 1 first, then by factor; decayed before
    undecayed. Frozen and shared parameters are skipped (the latter counted once).

    Raises `ConfigError` for a pattern that matches no trainable parameter (a typo would
    otherwise train silently without its factor)."""
    groups: Dict[Tuple[float, bool], List[nn.Parameter]] = {}
    seen = set()
    matched = set()
    for module_name, module in model.named_modules():
        norm = _is_norm(module)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full_name = f"{module_name}.{name}" if module_name else name
            matched.update(p for p, _ in lr_multipliers if fnmatch.fnmatchcase(full_name, p))
            no_decay = norm or name == "bias"
            groups.setdefault((lr_factor(full_name, lr_multipliers), no_decay), []).append(param)
    unmatched = [p for p, _ in lr_multipliers if p not in matched]
    if unmatched and seen:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        raise ConfigError(
            f"SOLVER.LR_MULTIPLIERS pattern(s) {unmatched} match no trainable parameter of the model "
            f"(parameter names look like {names[:3]}; patterns are fnmatch-style, e.g. 'neck.conv.*')"
        )
    return [
        {"params": params, "weight_decay": weight_decay_norm if no_decay else weight_decay, "lr_factor": factor}
        for (factor, no_decay), params in sorted(groups.items(), key=lambda item: (item[0][0] != 1.0, item[0]))
    ]


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum / Nesterov (or AdamW); ``SOLVER.WEIGHT_DECAY_NORM`` for norm params
    and biases; ``SOLVER.LR_MULTIPLIERS`` factors on the learning rate of the parameters
    they name (each param group's ``"lr"`` is ``BASE_LR * lr_factor``, which the LR
    schedule then scales)."""
    s = cfg.SOLVER
    groups = get_default_param_groups(
        model, s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, check_lr_multipliers(s.LR_MULTIPLIERS)
    )
    if not groups:
        raise ValueError("the model has no trainable parameters (is every stage frozen?)")
    for group in groups:
        group["lr"] = s.BASE_LR * group["lr_factor"]
        if group["lr_factor"] != 1.0:
            logger.info("LR x%g (SOLVER.LR_MULTIPLIERS) for %d parameter tensors", group["lr_factor"], len(group["params"]))
    name = s.OPTIMIZER.upper()
    if name == "ADAMW":
        # For short from-scratch runs (the CPU quickstart); the papers' recipes use SGD.
        return torch.optim.AdamW(groups, lr=s.BASE_LR)
    if name != "SGD":
        raise ConfigError(f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {s.OPTIMIZER!r}")
    if s.NESTEROV and s.MOMENTUM <= 0:
        raise ConfigError("SOLVER.NESTEROV needs SOLVER.MOMENTUM > 0")
    return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)


# ------------------------------------------------------------------- LR schedules
def warmup_factor_at_iter(method: str, it: int, warmup_iters: int, warmup_factor: float) -> float:
    """Warmup multiplier at iteration ``it`` (1.0 once ``it >= warmup_iters``)."""
    if it >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = it / warmup_iters
        return warmup_factor * (1 - alpha) + alpha
    raise ConfigError(f"SOLVER.WARMUP_METHOD must be 'linear' or 'constant', got {method!r}")


def multistep_lr_lambda(
    steps: Sequence[int], gamma: float, warmup_method: str, warmup_iters: int, warmup_factor: float
) -> Callable[[int], float]:
    steps = sorted(int(s) for s in steps)
    warmup_factor_at_iter(warmup_method, 0, max(warmup_iters, 1), warmup_factor)  # validate the method

    def lr_lambda(it: int) -> float:
        return warmup_factor_at_iter(warmup_method, it, warmup_iters, warmup_factor) * gamma ** bisect.bisect_right(
            steps, it
        )

    return lr_lambda


def cosine_lr_lambda(
    max_iter: int, end_factor: float, warmup_method: str, warmup_iters: int, warmup_factor: float
) -> Callable[[int], float]:
    warmup_factor_at_iter(warmup_method, 0, max(warmup_iters, 1), warmup_factor)

    def lr_lambda(it: int) -> float:
        t = min(it, max_iter) / max(max_iter, 1)
        cosine = end_factor + (1.0 - end_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
        return warmup_factor_at_iter(warmup_method, it, warmup_iters, warmup_factor) * cosine

    return lr_lambda


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    s = cfg.SOLVER
    name = s.LR_SCHEDULER_NAME
    common = dict(warmup_method=s.WARMUP_METHOD, warmup_iters=int(s.WARMUP_ITERS), warmup_factor=float(s.WARMUP_FACTOR))
    if name == "WarmupMultiStepLR":
        steps = list(s.STEPS)
        if steps != sorted(steps):
            raise ConfigError(f"SOLVER.STEPS must be increasing, got {tuple(steps)}")
        late = [x for x in steps if x > s.MAX_ITER]
        if late:
            logger.warning("SOLVER.STEPS %s are beyond SOLVER.MAX_ITER=%d and will never apply", late, s.MAX_ITER)
        fn = multistep_lr_lambda(steps, float(s.GAMMA), **common)
    elif name == "WarmupCosineLR":
        end = float(s.BASE_LR_END) / float(s.BASE_LR) if s.BASE_LR else 0.0
        fn = cosine_lr_lambda(int(s.MAX_ITER), end, **common)
    else:
        raise ConfigError(
            f"unknown SOLVER.LR_SCHEDULER_NAME {name!r}; expected 'WarmupMultiStepLR' or 'WarmupCosineLR'"
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


# ------------------------------------------------------------------- gradient clipping
def clip_gradients(cfg, params: Iterable[torch.nn.Parameter]) -> None:
    """Clip in place per ``SOLVER.CLIP_GRADIENTS`` (call after ``GradScaler.unscale_``)."""
    c = cfg.SOLVER.CLIP_GRADIENTS
    if not c.ENABLED:
        return
    params = [p for p in params if p.grad is not None]
    if check_choice("SOLVER.CLIP_GRADIENTS.CLIP_TYPE", c.CLIP_TYPE, CLIP_TYPES) == "value":
        torch.nn.utils.clip_grad_value_(params, c.CLIP_VALUE)
    else:
        torch.nn.utils.clip_grad_norm_(params, c.CLIP_VALUE, norm_type=c.NORM_TYPE)
