"""Tiny stand-ins for the detector and its loader, shared by the engine tests and the
DDP worker script (tests/detection/engine/ddp_train_worker.py)."""
import torch
from torch import nn

from detection.config import get_cfg


class FakeDetector(nn.Module):
    """Train mode: two loss terms; eval mode: one box per image."""

    def __init__(self, nan_at=None):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0]))
        self.norm = nn.BatchNorm1d(2)
        self.calls = 0
        self.nan_at = nan_at

    def forward(self, batched_inputs):
        x = torch.stack([b["image"].float().mean() / 255 for b in batched_inputs])
        if not self.training:
            return [
                {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([0])}
                for _ in batched_inputs
            ]
        self.calls += 1
        loss_a = ((self.w[0] * x - 1) ** 2).mean()
        loss_b = (self.w[1] ** 2) * torch.ones(())
        if self.nan_at is not None and self.calls - 1 == self.nan_at:
            loss_b = loss_b * float("nan")
        return {"loss_a": loss_a, "loss_b": loss_b}


def fake_loader(batch=2):
    g = torch.Generator().manual_seed(0)
    i = 0
    while True:
        yield [
            {"image": torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8, generator=g), "height": 8, "width": 8,
             "image_id": i * batch + j, "file_name": "", "instances": {"boxes": torch.zeros(0, 4),
                                                                     "labels": torch.zeros(0, dtype=torch.int64)}}
            for j in range(batch)
        ]
        i += 1


def make_cfg(tmp_path, **solver):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TEST = ()
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.WARMUP_FACTOR = 0.5
    cfg.SOLVER.STEPS = (4,)
    cfg.SOLVER.MAX_ITER = 7
    cfg.SOLVER.CHECKPOINT_PERIOD = 3
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    return cfg
