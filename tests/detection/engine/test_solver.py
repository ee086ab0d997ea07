"""LR schedules (values checked by hand), param groups and gradient clipping."""
import math

import pytest
import torch
from torch import nn

from detection.config import ConfigError, get_cfg
from detection.engine.solver import (
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    get_default_param_groups,
    warmup_factor_at_iter,
)
from helpers import with_solver


def _lrs(cfg, n):
    model = nn.Linear(2, 2)
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _cfg(**solver):
    return with_solver(get_cfg(), **solver)


def test_multistep_linear_warmup_values():
    cfg = _cfg(BASE_LR=0.1, WARMUP_ITERS=4, WARMUP_FACTOR=0.2, STEPS=(6, 8), GAMMA=0.1, MAX_ITER=10)
    lrs = _lrs(cfg, 10)
    # warmup: 0.1 * (0.2 * (1 - it/4) + it/4) = 0.02, 0.04, 0.06, 0.08; then 0.1 until step 6
    expected = [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_multistep_constant_warmup_values():
    cfg = _cfg(BASE_LR=1.0, WARMUP_ITERS=3, WARMUP_FACTOR=0.5, WARMUP_METHOD="constant", STEPS=(2,), GAMMA=0.5)
    # constant warmup multiplies the step schedule: 0.5, 0.5, 0.5*0.5, then 0.5
    assert _lrs(cfg, 5) == pytest.approx([0.5, 0.5, 0.25, 0.5, 0.5])


def test_no_warmup_and_voc_protocol_steps():
    cfg = _cfg(BASE_LR=1e-3, WARMUP_ITERS=0, STEPS=(25055, 50110), MAX_ITER=75165)
    model = nn.Linear(1, 1)
    sched = build_lr_scheduler(cfg, build_optimizer(cfg, model))
    fn = sched.lr_lambdas[0]
    assert fn(0) == 1.0 and fn(25054) == 1.0
    assert fn(25055) == pytest.approx(0.1) and fn(50109) == pytest.approx(0.1)
    assert fn(50110) == pytest.approx(0.01) and fn(75164) == pytest.approx(0.01)


def test_cosine_values():
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR=0.2, MAX_ITER=8, WARMUP_ITERS=2, WARMUP_FACTOR=0.5)
    lrs = _lrs(cfg, 9)
    cos = [0.5 * (1 + math.cos(math.pi * i / 8)) for i in range(9)]
    assert lrs[0] == pytest.approx(0.2 * 0.5 * cos[0])  # 0.1
    assert lrs[1] == pytest.approx(0.2 * 0.75 * cos[1])
    assert lrs[4] == pytest.approx(0.1)  # half way: 0.2 * 0.5
    assert lrs[8] == pytest.approx(0.0, abs=1e-12)


def test_cosine_base_lr_end():
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR=1.0, BASE_LR_END=0.1, MAX_ITER=4, WARMUP_ITERS=0)
    lrs = _lrs(cfg, 5)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(0.55)  # 0.1 + 0.9 * 0.5
    assert lrs[4] == pytest.approx(0.1)


def test_warmup_factor_helper_and_errors():
    assert warmup_factor_at_iter("linear", 0, 10, 0.001) == pytest.approx(0.001)
    assert warmup_factor_at_iter("linear", 5, 10, 0.0) == pytest.approx(0.5)
    assert warmup_factor_at_iter("linear", 10, 10, 0.001) == 1.0
    with pytest.raises(ConfigError, match="WARMUP_METHOD"):
        _lrs(_cfg(WARMUP_METHOD="exp"), 1)
    with pytest.raises(ConfigError, match="LR_SCHEDULER_NAME"):
        _lrs(_cfg(LR_SCHEDULER_NAME="Poly"), 1)
    with pytest.raises(ConfigError, match="increasing"):
        _lrs(_cfg(STEPS=(10, 5)), 1)


def test_weight_decay_groups_and_sgd_options():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))
    model[0].weight.requires_grad_(False)  # frozen parameters are skipped
    groups = get_default_param_groups(model, 1e-4, 0.0)
    decay, no_decay = groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(model[1].weight), id(model[1].bias), id(model[2].bias), id(model[3].weight), id(model[3].bias)
    }
    cfg = _cfg(MOMENTUM=0.8, NESTEROV=True, WEIGHT_DECAY=3e-5, WEIGHT_DECAY_NORM=1e-6)
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.8 and opt.defaults["nesterov"] is True
    assert [g["weight_decay"] for g in opt.param_groups] == [3e-5, 1e-6]


@pytest.mark.parametrize("kind", ["value", "norm"])
def test_clip_gradients(kind):
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = kind
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, -4.0, 0.5, 0.0])
    clip_gradients(cfg, [p])
    if kind == "value":
        assert p.grad.tolist() == [1.0, -1.0, 0.5, 0.0]
    else:
        assert float(p.grad.norm()) == pytest.approx(1.0, rel=1e-4)
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "bogus"
    with pytest.raises(ConfigError, match="CLIP_TYPE"):
        clip_gradients(cfg, [p])
