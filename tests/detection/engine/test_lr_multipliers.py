"""SOLVER.LR_MULTIPLIERS: param groups by parameter-name pattern, and the equivalence with
Light-Head R-CNN's gradient multiplication (zengarden/light_head_rcnn tools/train.py
L133-142: the summed gradient, weight decay included, x3 for ``conv_new`` variables, then
TensorFlow's MomentumOptimizer)."""
import copy

import pytest
import torch
from torch import nn

from detection.config import ConfigError, get_cfg
from detection.config_checks import check_lr_multipliers
from detection.engine.solver import build_lr_scheduler, build_optimizer, get_default_param_groups, lr_factor


class _Detector(nn.Module):
    """Named like litedet's Light-Head model: a backbone, the thin-map conv under
    ``neck.conv`` and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.neck = nn.Module()
        self.neck.conv = nn.Sequential(nn.Conv2d(4, 4, (3, 1), padding=(1, 0)), nn.Conv2d(4, 6, (1, 3), padding=(0, 1)))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.relu(self.neck.conv(self.backbone(x))).mean(dim=(2, 3)))


def _loss(model: nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(4, 3, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randn(4, 2, generator=g, dtype=torch.float64)
    return ((model(x) - y) ** 2).mean()


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.WEIGHT_DECAY = 1e-2
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.LR_MULTIPLIERS = [["neck.conv.*", 3.0]]
    cfg.SOLVER.WARMUP_ITERS = 3
    cfg.SOLVER.WARMUP_FACTOR = 1.0 / 3
    cfg.SOLVER.STEPS = (5,)
    cfg.SOLVER.MAX_ITER = 8
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def _authors_sgd(model: nn.Module, lrs, steps: int, weight_decay: float, momentum: float) -> nn.Module:
    """The authors' update, restated: loss + L2 on conv/FC weights (``weights_regularizer``;
    biases ``no_regularizer``; BN frozen in their model, undecayed here), gradient x3 where
    the variable is the large separable conv's, then ``accum = momentum * accum + grad;
    var -= lr * accum`` (TensorFlow's MomentumOptimizer, accumulators from zero)."""
    accum = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    norm_params = {n for n, _ in model.backbone[1].named_parameters(prefix="backbone.1")}
    for step in range(steps):
        model.zero_grad()
        loss = _loss(model, step)
        decayed = [p for n, p in model.named_parameters() if n.endswith("weight") and n not in norm_params]
        loss = loss + weight_decay / 2 * sum((p**2).sum() for p in decayed)  # tf l2_regularizer: wd * sum(w^2) / 2
        loss.backward()
        with torch.no_grad():
            for name, p in model.named_parameters():
                grad = p.grad * (3.0 if name.startswith("neck.conv.") else 1.0)
                accum[name] = momentum * accum[name] + grad
                p -= lrs[step] * accum[name]
    return model


def _train(model: nn.Module, cfg) -> list:
    """Our optimizer and schedule; returns the base group's LR at each step."""
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    lrs = []
    for step in range(cfg.SOLVER.MAX_ITER):
        lrs.append(optimizer.param_groups[0]["lr"])  # the base group's: the authors' global LR
        optimizer.zero_grad()
        _loss(model, step).backward()
        optimizer.step()
        scheduler.step()
    return lrs


def test_lr_multiplier_equals_the_authors_gradient_scaling():
    torch.manual_seed(0)
    ours = _Detector().double()
    theirs, plain = copy.deepcopy(ours), copy.deepcopy(ours)
    cfg = _cfg()
    lrs = _train(ours, cfg)
    # warm-up from 1/3, then the step: the LR changes while the momentum buffers are live
    assert lrs[0] == pytest.approx(0.05 / 3) and lrs[4] == pytest.approx(0.05) and lrs[6] == pytest.approx(0.005)
    _authors_sgd(theirs, lrs, cfg.SOLVER.MAX_ITER, weight_decay=1e-2, momentum=0.9)
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    # without the factor the neck ends elsewhere (the comparison can fail)
    _train(plain, _cfg(LR_MULTIPLIERS=[]))
    assert not torch.allclose(plain.neck.conv[0].weight, ours.neck.conv[0].weight, rtol=1e-4, atol=1e-6)


def test_param_groups_by_factor_and_decay():
    model = _Detector()
    groups = get_default_param_groups(model, 1e-4, 0.0, [("neck.conv.*", 3.0), ("*.bias", 2.0)])
    summary = [(g["lr_factor"], g["weight_decay"], len(g["params"])) for g in groups]
    # factor 1 first: backbone conv weight + head weight (decayed), BN weight (not); the
    # biases x2 (backbone conv, BN, head); neck weights x3 (decayed); neck biases x3 x2 = x6
    assert summary == [(1.0, 1e-4, 2), (1.0, 0.0, 1), (2.0, 0.0, 3), (3.0, 1e-4, 2), (6.0, 0.0, 2)]
    cfg = _cfg(LR_MULTIPLIERS=[["neck.conv.*", 3.0], ["*.bias", 2.0]], BASE_LR=0.1)
    optimizer = build_optimizer(cfg, model)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.1, 0.2, 0.3, 0.6])
    assert lr_factor("neck.conv.0.bias", [("neck.conv.*", 3.0), ("*.bias", 2.0)]) == 6.0
    assert lr_factor("head.weight", [("neck.conv.*", 3.0)]) == 1.0


def test_frozen_parameters_are_left_out():
    model = _Detector()
    for p in model.neck.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match=r"\['neck.conv.\*'\] match no trainable parameter"):
        get_default_param_groups(model, 1e-4, 0.0, [("neck.conv.*", 3.0)])


def test_unmatched_pattern_is_a_config_error():
    with pytest.raises(ConfigError, match="SOLVER.LR_MULTIPLIERS.*'roi_heads.thin_conv.\\*'.*neck.conv"):
        build_optimizer(_cfg(LR_MULTIPLIERS=[["roi_heads.thin_conv.*", 3.0]]), _Detector())


@pytest.mark.parametrize(
    "value", [[["neck.conv.*"]], [["neck.conv.*", 0.0]], [["", 3.0]], [[3.0, "neck.conv.*"]], [["a", True]], ["neck"]]
)
def test_malformed_multipliers(value):
    with pytest.raises(ConfigError, match=r"SOLVER.LR_MULTIPLIERS must be a list of \[parameter-name pattern"):
        check_lr_multipliers(value)


def test_yaml_and_command_line_forms(tmp_path):
    from detection.config import load_config

    leaf = tmp_path / "x.yaml"
    leaf.write_text('SOLVER:\n  LR_MULTIPLIERS: [["neck.conv.*", 3.0]]\n')
    assert check_lr_multipliers(load_config(str(leaf)).SOLVER.LR_MULTIPLIERS) == [("neck.conv.*", 3.0)]
    cfg = load_config(str(leaf), ["SOLVER.LR_MULTIPLIERS", "[['head.*', 0.5]]"])
    assert check_lr_multipliers(cfg.SOLVER.LR_MULTIPLIERS) == [("head.*", 0.5)]
