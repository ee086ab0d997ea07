"""Tiny stand-ins for the detector, its loader and its mapper, shared by the engine and
data tests and the DDP worker script (tests/detection/engine/train_loop_ddp_worker.py)."""
import numpy as np
import torch
from torch import nn

from detection.config import get_cfg
from helpers import with_solver


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
    return with_solver(cfg, **solver)


class LinearFake(nn.Module):
    """Least squares on 4 features per image (``x`` plus the mapper's ``noise``): the loss
    is a mean over images, so averaging per-rank gradients (DDP) equals the gradient of
    the whole batch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[0.5, -0.25, 1.0, 0.0]]))
            self.linear.bias.fill_(0.1)

    def forward(self, batched_inputs):
        x = torch.tensor([b["x"] for b in batched_inputs], dtype=torch.float32)
        x = x + torch.tensor([b["noise"] for b in batched_inputs], dtype=torch.float32)
        y = torch.tensor([b["y"] for b in batched_inputs], dtype=torch.float32)
        err = self.linear(x).squeeze(1) - y
        return {"loss_fit": (err**2).mean(), "loss_l1": 0.1 * err.abs().mean()}


class NoisyMapper:
    """A mapper with random augmentation, as `DatasetMapper`: the record plus ``noise``
    (4 draws of N(0, 0.1)) from the generator that the loader seeds through
    ``set_random_seed``."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def set_random_seed(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, record):
        return {**record, "noise": tuple(float(v) for v in self.rng.normal(0, 0.1, 4))}


def linear_train_loader(total_batch, rank=None, world_size=None, seed=0, num_images=10):
    """The real sharded TrainingSampler + TrainLoader over a synthetic dataset."""
    from detection.data import MapDataset, TrainingSampler, TrainLoader

    g = np.random.default_rng(123)
    records = [
        {"width": 8, "height": 8, "x": g.normal(size=4).tolist(), "y": float(g.normal())} for _ in range(num_images)
    ]
    sampler = TrainingSampler(len(records), shuffle=True, seed=seed, rank=rank, world_size=world_size)
    world = sampler.state_dict()["world_size"]
    return TrainLoader(
        MapDataset(records, NoisyMapper()), sampler, batch_size=total_batch // world,
        aspect_ratio_grouping=False, num_workers=0, seed=seed,
    )
