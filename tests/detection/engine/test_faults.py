"""Trainer fault handling in-process with the tiny fake model: signals, non-finite loss,
corrupt / unwritable checkpoints, keeping the last K checkpoints."""
import errno
import gc
import os
import signal

import pytest
import torch

from detection.checkpoint import CheckpointWriteError
from detection.engine import Trainer
from helpers.fakes import FakeDetector, fake_loader
from helpers.fakes import make_cfg as _cfg


class SignalAt(FakeDetector):
    """Sends ``sig`` ``times`` times to its own process during training call ``at``."""

    def __init__(self, sig, at, times=1):
        super().__init__()
        self.sig, self.at, self.times = sig, at, times

    def forward(self, batched_inputs):
        if self.training and self.calls == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.sig)
        return super().forward(batched_inputs)


@pytest.fixture(autouse=True)
def _collect_leftover_loaders():
    """Finalize DataLoader iterators left by earlier tests in this process first: a signal
    handled while one runs its ``__del__`` would raise there instead of in the trainer."""
    gc.collect()


def _ckpts(path):
    return sorted(f for f in os.listdir(path) if f.endswith(".pth"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_checkpoint_at_iteration_boundary_and_stops(tmp_path, sig):
    before = signal.getsignal(sig)
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=0)
    model = SignalAt(sig, at=3)
    trainer = Trainer(cfg, model=model, data_loader=fake_loader())
    trainer.train()  # returns normally, no KeyboardInterrupt for the first SIGINT
    assert trainer.interrupted == sig and trainer.iter == 3 and model.calls == 4  # iteration 3 completed
    assert _ckpts(tmp_path) == ["model_0000003.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert signal.getsignal(sig) == before  # handlers restored

    # --resume continues after the interrupted iteration and finishes
    t2 = Trainer(cfg, model=FakeDetector(), data_loader=fake_loader())
    t2.resume_or_load(resume=True)
    assert t2.start_iter == 4
    t2.train()
    assert t2.interrupted is None and (tmp_path / "model_final.pth").exists()


def test_signal_right_after_a_periodic_checkpoint_does_not_save_twice(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=3)
    trainer = Trainer(cfg, model=SignalAt(signal.SIGTERM, at=2), data_loader=fake_loader())
    trainer.train()
    assert trainer.interrupted == signal.SIGTERM
    assert _ckpts(tmp_path) == ["model_0000002.pth"]


def test_second_sigint_aborts_immediately(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=0)
    trainer = Trainer(cfg, model=SignalAt(signal.SIGINT, at=2, times=2), data_loader=fake_loader())
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert _ckpts(tmp_path) == []


def test_non_finite_loss_saves_last_good_state(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=0)
    trainer = Trainer(cfg, model=FakeDetector(nan_at=4), data_loader=fake_loader(), log_period=1)
    with pytest.raises(FloatingPointError) as info:
        trainer.train()
    msg = str(info.value)
    assert "iteration 4: loss_b=nan" in msg and "loss_a=" in msg
    assert f"Saved the last good state (after iteration 3) to {tmp_path / 'model_0000003.pth'}" in msg
    ckpt = torch.load(tmp_path / "model_0000003.pth", weights_only=True)
    assert ckpt["iteration"] == 3
    # the saved weights are those after iteration 3, not touched by the bad step
    assert torch.equal(ckpt["model"]["w"], trainer.unwrapped_model.w.detach())
    assert ckpt["scheduler"]["last_epoch"] == 4

    # ... and resuming from it starts at iteration 4 with the same RNG / data position
    # as a run that never diverged
    clean = Trainer(_cfg(tmp_path / "clean", MAX_ITER=4, CHECKPOINT_PERIOD=0), model=FakeDetector(),
                    data_loader=fake_loader())
    clean.train()
    clean_ckpt = torch.load(tmp_path / "clean" / "model_final.pth", weights_only=True)
    assert torch.equal(clean_ckpt["model"]["w"], ckpt["model"]["w"])
    assert torch.equal(clean_ckpt["rng_states"][0]["torch"], ckpt["rng_states"][0]["torch"])


def test_non_finite_loss_right_after_checkpoint_names_it(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=3)
    trainer = Trainer(cfg, model=FakeDetector(nan_at=3), data_loader=fake_loader())
    with pytest.raises(FloatingPointError, match=r"iteration 3: loss_b=nan.*Last good checkpoint: .*model_0000002.pth"):
        trainer.train()
    assert _ckpts(tmp_path) == ["model_0000002.pth"]


def test_non_finite_loss_at_first_iteration(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=0)
    trainer = Trainer(cfg, model=FakeDetector(nan_at=0), data_loader=fake_loader())
    with pytest.raises(FloatingPointError, match="iteration 0: .*No checkpoint was saved"):
        trainer.train()
    assert _ckpts(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "empty", "delete"])
def test_resume_skips_a_corrupt_newest_checkpoint(tmp_path, caplog, damage):
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=2)
    Trainer(cfg, model=FakeDetector(), data_loader=fake_loader()).train()
    newest = tmp_path / "model_final.pth"
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 3])
    elif damage == "empty":
        newest.write_bytes(b"")
    else:
        newest.unlink()

    t = Trainer(_cfg(tmp_path, MAX_ITER=9, CHECKPOINT_PERIOD=2), model=FakeDetector(), data_loader=fake_loader())
    with caplog.at_level("WARNING", logger="detection.checkpoint"):
        t.resume_or_load(resume=True)
    assert t.start_iter == 6  # model_0000005.pth: the previous checkpoint
    assert t.checkpointer.resumed_from == str(tmp_path / "model_0000005.pth")
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert f"Cannot resume from {newest}" in warning and "model_0000005.pth" in warning
    t.train()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def test_resume_with_no_usable_checkpoint_is_a_clear_error(tmp_path):
    from detection.checkpoint import CheckpointError

    cfg = _cfg(tmp_path, MAX_ITER=2, CHECKPOINT_PERIOD=0)
    Trainer(cfg, model=FakeDetector(), data_loader=fake_loader()).train()
    (tmp_path / "model_final.pth").write_bytes(b"garbage")
    t = Trainer(cfg, model=FakeDetector(), data_loader=fake_loader())
    with pytest.raises(CheckpointError, match="no usable checkpoint in .*model_final.pth"):
        t.resume_or_load(resume=True)


def test_checkpoint_max_keep(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=9, CHECKPOINT_PERIOD=2, CHECKPOINT_MAX_KEEP=2)
    Trainer(cfg, model=FakeDetector(), data_loader=fake_loader()).train()
    assert _ckpts(tmp_path) == ["model_0000005.pth", "model_0000007.pth", "model_final.pth"]


def test_disk_full_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=2)
    trainer = Trainer(cfg, model=FakeDetector(), data_loader=fake_loader())
    real_save = torch.save
    calls = []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint (after iteration 3)
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(CheckpointWriteError) as info:
        trainer.train()
    msg = str(info.value)
    assert f"cannot write checkpoint {tmp_path / 'model_0000003.pth'}" in msg and "disk full" in msg
    assert f"previous checkpoint {tmp_path / 'model_0000001.pth'} is intact" in msg
    assert info.value.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["last_checkpoint", "model_0000001.pth", "metrics.json"] + [f for f in os.listdir(tmp_path) if "tfevents" in f]
    )  # no temporary file left behind
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert torch.load(tmp_path / "model_0000001.pth", weights_only=True)["iteration"] == 1


def test_disk_full_while_writing_metrics_names_the_file(tmp_path, monkeypatch):
    from detection.engine import events

    cfg = _cfg(tmp_path, MAX_ITER=4, CHECKPOINT_PERIOD=0)
    trainer = Trainer(cfg, model=FakeDetector(), data_loader=fake_loader(), log_period=2)

    class FullFile:
        closed = False

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.closed = True

    real_init = events.JSONWriter.__init__

    def init(self, path, append=False):
        real_init(self, path, append)
        self._file.close()
        self._file = FullFile()

    monkeypatch.setattr(events.JSONWriter, "__init__", init)
    with pytest.raises(OSError, match=f"cannot write training metrics to {tmp_path / 'metrics.json'}: No space left"):
        trainer.train()


def test_checkpoint_holds_everything_for_exact_resume(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=2, CHECKPOINT_PERIOD=0)
    Trainer(cfg, model=FakeDetector(), data_loader=fake_loader()).train()
    ckpt = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "iteration", "rng_states", "world_size"} <= set(ckpt)
    assert ckpt["world_size"] == 1 and len(ckpt["rng_states"]) == 1
    assert {"python", "numpy", "torch"} <= set(ckpt["rng_states"][0])


def test_compile_option_is_wired(tmp_path, monkeypatch):
    """SOLVER.COMPILE wraps the training model in torch.compile; checkpoints keep the
    plain module's keys. (torch.compile itself is replaced: compiling with inductor on
    a shared CPU takes far longer than a unit test may.)"""
    compiled = []

    def fake_compile(model, *a, **k):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = _cfg(tmp_path, MAX_ITER=2, CHECKPOINT_PERIOD=0, COMPILE=True)
    model = FakeDetector()
    trainer = Trainer(cfg, model=model, data_loader=fake_loader())
    assert compiled == [model] and trainer.unwrapped_model is model
    trainer.train()
    assert set(torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]) == set(model.state_dict())
    cfg.SOLVER.COMPILE = False
    compiled.clear()
    Trainer(cfg, model=FakeDetector(), data_loader=fake_loader())
    assert compiled == []


def test_signal_during_the_last_iteration_finishes_the_run(tmp_path):
    cfg = _cfg(tmp_path, MAX_ITER=5, CHECKPOINT_PERIOD=0)
    trainer = Trainer(cfg, model=SignalAt(signal.SIGTERM, at=4), data_loader=fake_loader())
    trainer.train()
    assert trainer.interrupted is None and trainer.iter == 4
    assert _ckpts(tmp_path) == ["model_final.pth"]


class _RandomDrawingTest(Trainer):
    """An evaluation that draws from the global torch RNG, as a DataLoader does when it seeds
    its workers."""

    @classmethod
    def test(cls, cfg, model, evaluators=None, model_classes=None):
        torch.rand(7)
        return {"fake": {"bbox": {"AP": 1.0}}}


def test_evaluation_leaves_the_training_rng_untouched(tmp_path):
    # a checkpoint and an evaluation at the same step: the state saved is the pre-evaluation
    # one, so evaluation must not move the stream or a resumed run would diverge
    cfg = _cfg(tmp_path, MAX_ITER=7, CHECKPOINT_PERIOD=0)
    cfg.DATASETS.TEST = ("fake",)
    trainer = _RandomDrawingTest(cfg, model=FakeDetector(), data_loader=fake_loader())
    before = torch.get_rng_state()
    trainer._run_evaluation()
    assert torch.equal(torch.get_rng_state(), before)
    assert trainer.last_results == {"fake": {"bbox": {"AP": 1.0}}}


def test_data_error_on_one_rank_is_raised_on_every_rank(tmp_path, monkeypatch):
    from detection.data.errors import BadSampleError
    from detection.utils import comm

    class FailingLoader:
        def __iter__(self):
            raise_at = iter(fake_loader())
            yield next(raise_at)
            raise BadSampleError("img/7.png", "corrupt or truncated PNG data")

    cfg = _cfg(tmp_path, MAX_ITER=5, CHECKPOINT_PERIOD=0)
    trainer = Trainer(cfg, model=FakeDetector(), data_loader=fake_loader())
    # two ranks simulated in one process: this one loads fine; the other reports a data error
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "any_across_ranks", lambda flags, device=None: [True, *flags[1:]])
    monkeypatch.setattr(comm, "reduce_dict", lambda d, average=True: d)
    trainer._data_iter = iter(fake_loader())
    with pytest.raises(BadSampleError, match="another rank failed to load its batch"):
        trainer.run_step()
    # the failing rank re-raises its own error after the agreement
    monkeypatch.setattr(comm, "any_across_ranks", lambda flags, device=None: list(flags))
    trainer._data_iter = iter(FailingLoader())
    trainer.run_step()
    with pytest.raises(BadSampleError, match="img/7.png"):
        trainer.run_step()
