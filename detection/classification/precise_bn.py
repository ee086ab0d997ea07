"""Re-estimate BatchNorm statistics of trained weights: the ShuffleNet-Series final pass.

megvii-model/ShuffleNet-Series (commit aa91feb), ShuffleNetV1/train.py lines 185, 190-193
and 207-208 (ShuffleNetV2/train.py lines 184, 188-191 and 205-206 alike): after the last
iteration the script runs
``train(..., val_interval=int(1280000 / args.batch_size), bn_process=True)``, one epoch's
worth of training batches (1250 of 1024 images), setting every BN's momentum to ``1 / iters``
before batch ``iters`` (1, 2, ...): the running mean and variance end as the plain average of
the per-batch statistics. The learning rate is 0 by then (their LambdaLR, V1 line 154, returns
0 past ``total_iters``), so the weights do not move; only the BN statistics, which lag behind
during training, are re-estimated for the final weights.

`recalibrate_bn_stats` does the same without the backward pass: train-mode forward passes
under ``no_grad`` over the batches it is given (the training loader, same augmentation),
with each BN's statistics reset and its momentum set to None (PyTorch's cumulative average,
i.e. the same ``1 / n`` weights). Under DDP every rank averages its own batches and the
ranks' statistics are then averaged (equal batch counts: the average over every batch); the
authors' ``nn.DataParallel`` kept only GPU 0's share.
"""
from __future__ import annotations

from typing import Any, Iterable, List

import torch
import torch.distributed as dist
from torch import nn

from detection.utils import comm

__all__ = ["recalibrate_bn_stats", "batch_norms"]


def batch_norms(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics (FrozenBatchNorm has none)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _average_over_ranks(norms: List[nn.modules.batchnorm._BatchNorm]) -> None:
    world = comm.get_world_size()
    if world <= 1:
        return
    for bn in norms:
        for stat in (bn.running_mean, bn.running_var):
            dist.all_reduce(stat)
            stat /= world


def recalibrate_bn_stats(model: nn.Module, batches: Iterable[Any], num_iters: int) -> int:
    """Replace the running mean / variance of every BN of ``model`` by the average of its
    batch statistics over ``num_iters`` batches of ``batches`` (each passed to
    ``model(batch)`` in train mode, without gradients). Restores each BN's momentum and the
    model's train/eval mode; returns the number of BN layers recalibrated. Collective under
    DDP: every rank must call it (pass the unwrapped model)."""
    if num_iters <= 0:
        raise ValueError(f"recalibrate_bn_stats: num_iters must be positive, got {num_iters}")
    norms = batch_norms(model)
    if not norms:
        return 0
    momenta = [bn.momentum for bn in norms]
    was_training = model.training
    with comm.fail_together():  # a batch failing to load on one rank stops every rank here
        try:
            for bn in norms:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average: batch n weighs 1 / n
            model.train()
            iterator = iter(batches)
            with torch.no_grad():
                for done in range(num_iters):
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        raise ValueError(
                            f"recalibrate_bn_stats: the data ran out after {done} of {num_iters} batches"
                        ) from None
                    model(batch)
        finally:
            for bn, momentum in zip(norms, momenta):
                bn.momentum = momentum
            model.train(was_training)
    _average_over_ranks(norms)
    return len(norms)
