"""The training loop with a tiny fake model and loader (no dependency on the real detector)."""
import json
import os

import pytest
import torch

from detection.engine import Trainer
from helpers.fakes import FakeDetector, fake_loader
from helpers.fakes import make_cfg as _cfg


class FakeEvalTrainer(Trainer):
    evaluated_at = []

    @classmethod
    def test(cls, cfg, model, evaluators=None, model_classes=None):
        assert not model.training
        return {"bbox": {"AP": 12.5, "AP50": 30.0}}


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


def test_clip_and_bf16_amp_on_cpu(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=2, CHECKPOINT_PERIOD=0)
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.DTYPE = "bfloat16"  # CPU autocast: bfloat16, no loss scaling

    class DtypeProbe(FakeDetector):
        seen = []

        def forward(self, batched_inputs):
            self.seen.append((torch.ones(2, 2) @ torch.ones(2, 2)).dtype)  # autocast-eligible op
            return super().forward(batched_inputs)

    model = DtypeProbe()
    trainer = Trainer(cfg, model=model, data_loader=fake_loader())
    assert trainer.amp and trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    trainer.train()
    assert model.seen == [torch.bfloat16, torch.bfloat16]
    assert model.w.dtype == torch.float32  # master weights stay float32
    assert (tmp_path / "model_final.pth").exists()


def test_fp16_amp_on_cpu_is_refused(tmp_path):
    from detection.config import ConfigError

    cfg = _cfg(tmp_path, MAX_ITER=2)
    cfg.SOLVER.AMP.ENABLED = True  # DTYPE float16 (default) needs CUDA
    with pytest.raises(ConfigError, match="not supported on cpu: use SOLVER.AMP.DTYPE bfloat16"):
        Trainer(cfg, model=FakeDetector(), data_loader=fake_loader())
    cfg.SOLVER.AMP.DTYPE = "float8"
    with pytest.raises(ConfigError, match="SOLVER.AMP.DTYPE must be 'float16' or 'bfloat16', got 'float8'"):
        Trainer(cfg, model=FakeDetector(), data_loader=fake_loader())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP with float16 + GradScaler needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_amp_on_cuda(tmp_path, dtype):
    cfg = _cfg(tmp_path, MAX_ITER=3, CHECKPOINT_PERIOD=0)
    cfg.MODEL.DEVICE = "cuda"
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.DTYPE = dtype
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16 support")

    def cuda_loader():
        for batch in fake_loader():
            yield [{**b, "image": b["image"].cuda()} for b in batch]

    trainer = Trainer(cfg, model=FakeDetector(), data_loader=cuda_loader())
    assert trainer.amp and trainer.scaler.is_enabled() == (dtype == "float16")
    trainer.train()
    assert ("scaler" in torch.load(tmp_path / "model_final.pth", weights_only=True)) == (dtype == "float16")


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
