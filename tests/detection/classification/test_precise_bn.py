"""TEST.PRECISE_BN: the ShuffleNet-Series BN recalibration pass, against an independent
re-statement of the authors' update (momentum 1 / iters) on fixed tensors."""
import copy

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detection.classification import resolve_config
from detection.classification.config import get_classification_cfg
from detection.classification.precise_bn import batch_norms, recalibrate_bn_stats
from detection.classification.toy import make_toy_image_folder
from detection.config import ConfigError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        FrozenBatchNorm2d(4), nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5, momentum=0.3),
    )


def _batches(n: int = 5):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(6, 3, 5, 7, generator=g) * (i + 1) + i for i in range(n)]


def _authors_pass(model: nn.Module, batches) -> None:
    """ShuffleNetV1/train.py's bn_process loop without the (lr 0) optimizer step: before
    batch ``iters`` (1, 2, ...) every BN's momentum is 1 / iters."""
    model.train()
    with torch.no_grad():
        for iters, x in enumerate(batches, start=1):
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = 1 / iters
            model(x)


def test_matches_the_authors_update_and_plain_batch_averages():
    batches = _batches()
    ours, theirs = _model().eval(), _model()
    ours[1].running_mean.fill_(5.0)  # stale statistics must not survive
    weights = {k: v.clone() for k, v in ours.state_dict().items() if "running" not in k and "tracked" not in k}
    assert recalibrate_bn_stats(ours, batches, num_iters=len(batches)) == 2
    _authors_pass(theirs, batches)
    for a, b in zip(batch_norms(ours), batch_norms(theirs)):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-5, atol=1e-6)
    # first BN: plain averages of the per-batch channel means / unbiased variances of conv(x)
    conv = ours[0]
    with torch.no_grad():
        feats = [conv(x) for x in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.transpose(0, 1).flatten(1).var(1, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(ours[1].running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1].running_var, var, rtol=1e-5, atol=1e-6)
    # weights untouched, momentum and eval mode restored, frozen BN left alone
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in weights.items())
    assert (ours[1].momentum, ours[5].momentum) == (0.1, 0.3) and not ours.training
    assert torch.equal(ours[3].running_mean, torch.zeros(4)) and len(batch_norms(ours)) == 2


def test_uses_only_num_iters_batches_and_checks_them():
    batches = _batches(5)
    a, b = _model(), _model()
    recalibrate_bn_stats(a, iter(batches), num_iters=2)
    recalibrate_bn_stats(b, batches[:2], num_iters=2)
    assert torch.equal(a[1].running_var, b[1].running_var) and a.training
    with pytest.raises(ValueError, match="ran out after 2 of 3 batches"):
        recalibrate_bn_stats(_model(), batches[:2], num_iters=3)
    with pytest.raises(ValueError, match="num_iters must be positive"):
        recalibrate_bn_stats(_model(), batches, num_iters=0)
    assert recalibrate_bn_stats(nn.Conv2d(3, 3, 1), batches, num_iters=1) == 0


def test_resolve_config_fills_one_epoch(tmp_path):
    make_toy_image_folder(str(tmp_path), num_classes=3, train_per_class=5, val_per_class=1, size=16, seed=0)
    cfg = get_classification_cfg()
    cfg.merge_from_list(["DATASETS.ROOT", str(tmp_path), "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "3"])
    assert resolve_config(cfg).TEST.PRECISE_BN.NUM_ITER == 0  # disabled: left alone
    on = copy.deepcopy(cfg)
    on.merge_from_list(["TEST.PRECISE_BN.ENABLED", "True"])
    assert resolve_config(on).TEST.PRECISE_BN.NUM_ITER == 4  # ceil(15 images / 4)
    on.merge_from_list(["TEST.PRECISE_BN.NUM_ITER", "7"])
    assert resolve_config(on).TEST.PRECISE_BN.NUM_ITER == 7
    on.merge_from_list(["TEST.PRECISE_BN.NUM_ITER", "-1"])
    with pytest.raises(ConfigError, match="TEST.PRECISE_BN.NUM_ITER"):
        resolve_config(on)
