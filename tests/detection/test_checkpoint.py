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


# ---------------------------------------------------------------------------- weights that do not fit
TINY_DETECTOR = ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "MODEL.ROI_HEADS.NUM_CLASSES", "2",
                 "MODEL.LIGHT_HEAD.FC_DIM", "64", "MODEL.ROI_BOX_HEAD.FC_DIM", "64"]


def _detector(*overrides):
    from detection.config import load_config
    from detection.model_info import model_info_from_cfg
    from detection.modeling import build_model

    cfg = load_config("", [*TINY_DETECTOR, *overrides])
    torch.manual_seed(0)
    return build_model(cfg), model_info_from_cfg(cfg, ["a", "b"][: cfg.MODEL.ROI_HEADS.NUM_CLASSES])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LightHeadRCNN + shufflenet_v2_0.5x checkpoint recording classes [a, b]."""
    model, info = _detector()
    out = tmp_path_factory.mktemp("det")
    DetectionCheckpointer(model, str(out), model_info=info).save("model_final", iteration=3)
    return str(out / "model_final.pth"), model


def test_checkpoint_records_the_model_info(trained):
    from detection.checkpoint import read_model_info

    path, _ = trained
    info = read_model_info(path)
    assert (info.meta_architecture, info.backbone, info.num_classes, info.thing_classes) == (
        "LightHeadRCNN", "shufflenet_v2_0.5x", 2, ("a", "b"))
    ck = DetectionCheckpointer(_detector()[0])
    assert "model_info" not in ck.load(path)  # parsed, not handed back as extra data
    assert ck.loaded_info == info


@pytest.mark.parametrize("overrides,built", [
    (["MODEL.BACKBONE.NAME", "shufflenet_v2_1.0x"], "LightHeadRCNN + shufflenet_v2_1.0x"),
    (["MODEL.BACKBONE.NAME", "mobilenet_v2_0.5x", "MODEL.BACKBONE.HEAD_FEATURE", ""], "LightHeadRCNN + mobilenet_v2_0.5x"),
    (["MODEL.META_ARCHITECTURE", "FasterRCNN"], "FasterRCNN + shufflenet_v2_0.5x"),
])
@pytest.mark.parametrize("complete", [False, True])
def test_weights_of_another_architecture_are_refused(trained, overrides, built, complete):
    path, _ = trained
    model, info = _detector(*overrides)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        DetectionCheckpointer(model, model_info=info, require_complete=complete).load(path)
    text = str(err.value)
    assert text.startswith(f"{path} holds a LightHeadRCNN + shufflenet_v2_0.5x detector but this config builds {built}: ")
    assert "of the model's" in text and "tensors (" in text and "\n" not in text
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was loaded


def test_weights_that_fill_under_half_of_the_model_are_refused_without_a_record(tmp_path):
    # an old checkpoint (no model_info) of another backbone: judged by the tensors that fit
    other, _ = _detector("MODEL.BACKBONE.NAME", "shufflenet_v2_1.0x")
    path = tmp_path / "old.pth"
    torch.save({"model": other.state_dict(), "iteration": 1, "__litedet__": 1}, path)
    model, info = _detector()
    with pytest.raises(CheckpointError, match=r"does not fit this model \(its architecture is not recorded; this config "
                                              r"builds LightHeadRCNN \+ shufflenet_v2_0.5x\): only \d+ of the model's \d+ "
                                              r"tensors \(\d+%\) would load"):
        DetectionCheckpointer(model, model_info=info).load(str(path))


def test_other_class_count_fine_tunes_but_cannot_be_evaluated(trained, caplog):
    path, source = trained
    model, info = _detector("MODEL.ROI_HEADS.NUM_CLASSES", "3")
    with caplog.at_level("WARNING", logger="detection.checkpoint"):
        DetectionCheckpointer(model, model_info=info).load(path)  # training: the head is retrained
    assert "skipping parameters with a different shape" in caplog.text and "cls_score.weight" in caplog.text
    for (k, a), b in zip(source.backbone.state_dict().items(), model.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError) as err:
        DetectionCheckpointer(_detector("MODEL.ROI_HEADS.NUM_CLASSES", "3")[0], model_info=info,
                              require_complete=True).load(path)
    text = str(err.value)
    assert text.startswith(f"{path} does not fill 4 of the model's ")
    assert "roi_heads.box_predictor.cls_score.weight: (3, 64) in file, (4, 64) in model" in text
    assert "trained for 2 classes and the model has 3 (MODEL.ROI_HEADS.NUM_CLASSES 2)" in text


def test_complete_load_of_the_same_architecture(trained):
    path, source = trained
    model, info = _detector()
    DetectionCheckpointer(model, model_info=info, require_complete=True).load(path)
    for (k, a), b in zip(source.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
