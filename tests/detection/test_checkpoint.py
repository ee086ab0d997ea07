"""DetectionCheckpointer: atomic writes, load/resume, clear errors for bad files."""
import os

import pytest
import torch
from torch import nn

from detection.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    DetectionCheckpointer,
    atomic_torch_save,
)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))


def test_save_load_roundtrip_and_last_checkpoint(tmp_path):
    model = _model(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 0.5**it)
    opt.step()
    sched.step()
    ckpt = DetectionCheckpointer(model, str(tmp_path), optimizer=opt, scheduler=sched)
    path = ckpt.save("model_0000009", iteration=9)
    assert path == str(tmp_path / "model_0000009.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # no temporary leftovers
    assert ckpt.has_checkpoint() and ckpt.get_checkpoint_file() == path
    assert ckpt.get_all_checkpoint_files() == [path]

    other = _model(1)
    opt2 = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda it: 0.5**it)
    extra = DetectionCheckpointer(other, str(tmp_path), optimizer=opt2, scheduler=sched2).resume_or_load("", resume=True)
    assert extra["iteration"] == 9
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert sched2.last_epoch == 1 and opt2.param_groups[0]["lr"] == pytest.approx(0.05)


def test_resume_false_loads_weights_only(tmp_path):
    src = _model(0)
    DetectionCheckpointer(src, str(tmp_path / "a")).save("model_final", iteration=99)
    dst = _model(1)
    opt = torch.optim.SGD(dst.parameters(), lr=0.1)
    ck = DetectionCheckpointer(dst, str(tmp_path / "b"), optimizer=opt)
    extra = ck.resume_or_load(str(tmp_path / "a" / "model_final.pth"), resume=False)
    assert extra.get("iteration") == 99
    assert torch.equal(dst[0].weight, src[0].weight)
    assert ck.resume_or_load("", resume=False) == {}  # nothing given: keeps init


def test_bare_state_dict_with_module_prefix_and_shape_mismatch(tmp_path):
    src = _model(0)
    state = {"module." + k: v for k, v in src.state_dict().items()}
    state["module.2.weight"] = torch.zeros(5, 4)  # e.g. a different NUM_CLASSES: skipped, not fatal
    p = tmp_path / "bare.pth"
    torch.save(state, p)
    dst = _model(1)
    before = dst[2].weight.clone()
    DetectionCheckpointer(dst).load(str(p))
    assert torch.equal(dst[0].weight, src[0].weight)
    assert torch.equal(dst[2].weight, before)


def test_missing_file_error(tmp_path):
    ck = DetectionCheckpointer(_model())
    with pytest.raises(CheckpointNotFoundError, match="not found: .*nope.pth"):
        ck.load(str(tmp_path / "nope.pth"))
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)


def test_truncated_file_error(tmp_path):
    good = tmp_path / "good.pth"
    atomic_torch_save({"model": _model().state_dict()}, str(good))
    data = good.read_bytes()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        DetectionCheckpointer(_model()).load(str(bad))
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        DetectionCheckpointer(_model()).load(str(empty))


def test_refuses_pickled_objects(tmp_path):
    p = tmp_path / "obj.pth"
    torch.save({"model": {}, "evil": _Obj()}, p)
    with pytest.raises(CheckpointError, match="weights_only"):
        DetectionCheckpointer(_model()).load(str(p))


class _Obj:
    pass


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "model_final.pth"
    atomic_torch_save({"a": torch.ones(1)}, str(p))
    old = p.read_bytes()

    def boom(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"a": torch.zeros(1)}, str(p))
    assert p.read_bytes() == old
    assert os.listdir(tmp_path) == ["model_final.pth"]


def test_not_main_process_does_not_write(tmp_path):
    ck = DetectionCheckpointer(_model(), str(tmp_path), save_to_disk=False)
    assert ck.save("model_final") is None
    assert os.listdir(tmp_path) == []


def test_unknown_checkpoint_kind(tmp_path):
    p = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, p)
    with pytest.raises(CheckpointError, match="MODEL.BACKBONE.WEIGHTS"):
        DetectionCheckpointer(_model()).load(str(p))


def test_plain_backbone_checkpoint_is_handed_to_backbones_weights(tmp_path):
    import backbones
    from backbones.weights import save_backbone_checkpoint

    class Det(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbones.build_backbone("shufflenet_v2_0.5x")
            self.head = nn.Linear(4, 2)

    src = backbones.build_backbone("shufflenet_v2_0.5x")
    with torch.no_grad():
        for p in src.parameters():
            p.fill_(0.5)
    path = save_backbone_checkpoint(src, str(tmp_path / "bb.pth"))
    det = Det()
    assert DetectionCheckpointer(det).load(path) == {}
    for (k, a), b in zip(src.state_dict().items(), det.backbone.state_dict().values()):
        assert torch.equal(a, b), k
