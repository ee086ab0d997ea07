"""The training loop with a tiny fake model and loader (no dependency on the real detector)."""
import json
import os

import pytest
import torch
from torch import nn

from detection.config import get_cfg
from detection.engine import Trainer


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


class FakeEvalTrainer(Trainer):
    evaluated_at = []

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        assert not model.training
        return {"bbox": {"AP": 12.5, "AP50": 30.0}}


def _cfg(tmp_path, **solver):
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


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_metrics_json_checkpoints_and_resume(tmp_path):
    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg, model=FakeDetector(), data_loader=fake_loader(), log_period=2)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 0
    trainer.train()

    lines = _lines(tmp_path / "metrics.json")
    assert [r["iteration"] for r in lines] == [1, 3, 5, 6]
    for r in lines:
        assert {"loss_a", "loss_b", "total_loss", "lr", "time", "data_time"} <= set(r)
        assert r["total_loss"] >= 0 and r["time"] >= r["data_time"] >= 0
    # lr recorded is the one used in that iteration: warmup 0.5 -> 1 over 2 its, /10 from it 4
    assert lines[0]["lr"] == pytest.approx(0.0075)  # it 1: 0.01 * (0.5 * (1 - 1/2) + 1/2)
    assert lines[2]["lr"] == pytest.approx(0.001)
    files = sorted(os.listdir(tmp_path))
    assert "model_0000002.pth" in files and "model_0000005.pth" in files and "model_final.pth" in files
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert any(f.startswith("events.out.tfevents") for f in files)
    ckpt = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert ckpt["iteration"] == 6 and {"model", "optimizer", "scheduler"} <= set(ckpt)

    # resume with a longer schedule: continues at 7, appends to metrics.json
    cfg2 = _cfg(tmp_path, MAX_ITER=9)
    t2 = Trainer(cfg2, model=FakeDetector(), data_loader=fake_loader(), log_period=2)
    t2.resume_or_load(resume=True)
    assert t2.start_iter == 7
    assert t2.scheduler.last_epoch == 7
    t2.train()
    assert [r["iteration"] for r in _lines(tmp_path / "metrics.json")] == [1, 3, 5, 6, 7, 8]


def test_lr_in_metrics_matches_schedule(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=6, CHECKPOINT_PERIOD=0)
    trainer = Trainer(cfg, model=FakeDetector(), data_loader=fake_loader(), log_period=1)
    trainer.train()
    lrs = [r["lr"] for r in _lines(tmp_path / "metrics.json")]
    # it0: 0.5, it1: 0.75 (linear warmup over 2), it2-3: 1, it4-5: 0.1
    assert lrs == pytest.approx([0.005, 0.0075, 0.01, 0.01, 0.001, 0.001])
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == ["model_final.pth"]


def test_periodic_and_final_evaluation_in_metrics(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=6)
    cfg.DATASETS.TEST = ("fake_val",)
    cfg.TEST.EVAL_PERIOD = 4
    trainer = FakeEvalTrainer(cfg, model=FakeDetector(), data_loader=fake_loader(), log_period=20)
    results = trainer.train()
    assert results == {"bbox": {"AP": 12.5, "AP50": 30.0}}
    lines = _lines(tmp_path / "metrics.json")
    assert [r["iteration"] for r in lines] == [3, 5]
    assert all(r["bbox/AP"] == 12.5 and r["bbox/AP50"] == 30.0 for r in lines)
    assert trainer.model.training


def test_non_finite_loss_stops_with_iteration_and_term(tmp_path):
    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg, model=FakeDetector(nan_at=3), data_loader=fake_loader(), log_period=1)
    with pytest.raises(FloatingPointError, match=r"iteration 3: loss_b=nan"):
        trainer.train()


def test_clip_and_amp_flags_on_cpu(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=2, CHECKPOINT_PERIOD=0)
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    cfg.SOLVER.AMP.ENABLED = True  # CUDA only: falls back to float32 on CPU with a warning
    trainer = Trainer(cfg, model=FakeDetector(), data_loader=fake_loader())
    assert trainer.amp is False
    trainer.train()
    assert (tmp_path / "model_final.pth").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=3, CHECKPOINT_PERIOD=0)
    cfg.MODEL.DEVICE = "cuda"
    cfg.SOLVER.AMP.ENABLED = True

    def cuda_loader():
        for batch in fake_loader():
            yield [{**b, "image": b["image"].cuda()} for b in batch]

    trainer = Trainer(cfg, model=FakeDetector(), data_loader=cuda_loader())
    assert trainer.amp
    trainer.train()
    assert "scaler" in torch.load(tmp_path / "model_final.pth", weights_only=True)


def test_resume_of_finished_run_only_evaluates(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=3, CHECKPOINT_PERIOD=0)
    FakeEvalTrainer(cfg, model=FakeDetector(), data_loader=fake_loader()).train()
    cfg.DATASETS.TEST = ("fake_val",)
    model = FakeDetector()
    t = FakeEvalTrainer(cfg, model=model, data_loader=fake_loader())
    t.resume_or_load(resume=True)
    assert t.start_iter == 3
    assert t.train() == {"bbox": {"AP": 12.5, "AP50": 30.0}}
    assert model.calls == 0 and t.iter == 2
