"""The papers' LR schedules: values at given iterations match the recipe formulas."""
import math

import pytest
import torch

from detection.classification import get_classification_cfg
from detection.classification.solver import build_classification_lr_scheduler
from detection.config import ConfigError
from helpers import with_solver


def _lrs(cfg, iters):
    """LR the optimizer uses at each iteration in ``iters`` (stepping once per iteration)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    sched = build_classification_lr_scheduler(cfg, opt)
    out, it = {}, 0
    for target in sorted(iters):
        while it < target:
            opt.step()
            sched.step()
            it += 1
        out[target] = opt.param_groups[0]["lr"]
    return out


def _cfg(**solver):
    return with_solver(get_classification_cfg(), **solver)


def test_linear_decay_shufflenet_recipe():
    # ShuffleNet v1/v2: "linear-decay learning rate policy (decreased from 0.5 to 0)".
    cfg = _cfg(LR_SCHEDULER_NAME="LinearDecayLR", BASE_LR=0.5, BASE_LR_END=0.0, MAX_ITER=1000)
    lrs = _lrs(cfg, [0, 1, 250, 500, 999, 1000, 1003])
    for it, lr in lrs.items():
        assert lr == pytest.approx(0.5 * max(0.0, 1 - it / 1000), abs=1e-12), it
    assert lrs[1003] == 0.0


def test_linear_decay_to_nonzero_end_with_warmup():
    cfg = _cfg(LR_SCHEDULER_NAME="LinearDecayLR", BASE_LR=0.4, BASE_LR_END=0.04, MAX_ITER=100,
               WARMUP_ITERS=10, WARMUP_FACTOR=0.1, WARMUP_METHOD="linear")
    lrs = _lrs(cfg, [0, 5, 10, 50, 100])
    linear = lambda it: 0.04 + 0.36 * (1 - it / 100)  # noqa: E731
    assert lrs[0] == pytest.approx(0.1 * linear(0))
    assert lrs[5] == pytest.approx((0.1 * 0.5 + 0.5) * linear(5))
    assert lrs[10] == pytest.approx(linear(10)) and lrs[50] == pytest.approx(0.22)
    assert lrs[100] == pytest.approx(0.04)


def test_epoch_step_fd_mobilenet_recipe():
    # FD-MobileNet: 0.1, divided by 10 every 30 epochs (here 7 iterations per epoch).
    cfg = _cfg(LR_SCHEDULER_NAME="EpochStepLR", BASE_LR=0.1, GAMMA=0.1, STEP_EPOCHS=30, ITERS_PER_EPOCH=7, MAX_ITER=630)
    lrs = _lrs(cfg, [0, 7 * 30 - 1, 7 * 30, 7 * 60 - 1, 7 * 60, 7 * 89])
    assert lrs[0] == pytest.approx(0.1) and lrs[209] == pytest.approx(0.1)
    assert lrs[210] == pytest.approx(0.01) and lrs[419] == pytest.approx(0.01)
    assert lrs[420] == pytest.approx(0.001) and lrs[623] == pytest.approx(0.001)


@pytest.mark.parametrize("epoch", [0, 1, 2, 17, 399])
def test_epoch_exponential_seesaw_recipe(epoch):
    # SeesawNet: 0.045, scaled by 0.98 every epoch; constant within an epoch.
    cfg = _cfg(LR_SCHEDULER_NAME="EpochStepLR", BASE_LR=0.045, GAMMA=0.98, STEP_EPOCHS=1, ITERS_PER_EPOCH=5, MAX_ITER=2000)
    lrs = _lrs(cfg, [5 * epoch, 5 * epoch + 4])
    expected = 0.045 * 0.98**epoch
    assert lrs[5 * epoch] == pytest.approx(expected, rel=1e-9)
    assert lrs[5 * epoch + 4] == pytest.approx(expected, rel=1e-9)


def test_detector_schedules_still_available():
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupMultiStepLR", BASE_LR=0.1, STEPS=(3,), GAMMA=0.1, WARMUP_ITERS=0, MAX_ITER=5)
    lrs = _lrs(cfg, [2, 3])
    assert lrs[2] == pytest.approx(0.1) and lrs[3] == pytest.approx(0.01)
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR=0.1, WARMUP_ITERS=0, MAX_ITER=10)
    assert _lrs(cfg, [5])[5] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.parametrize(
    "solver, message",
    [
        (dict(LR_SCHEDULER_NAME="StepLR"), "LinearDecayLR"),
        (dict(LR_SCHEDULER_NAME="EpochStepLR", ITERS_PER_EPOCH=0), "ITERS_PER_EPOCH"),
        (dict(LR_SCHEDULER_NAME="EpochStepLR", ITERS_PER_EPOCH=3, STEP_EPOCHS=0), "STEP_EPOCHS"),
        (dict(LR_SCHEDULER_NAME="LinearDecayLR", MAX_ITER=0), "MAX_ITER"),
    ],
)
def test_bad_schedule_config(solver, message):
    with pytest.raises(ConfigError, match=message):
        _lrs(_cfg(**solver), [0])
