"""The classification model: loss in training, logits in eval, classifier-compatible keys;
and every shipped configs/ImageNet recipe loads and builds."""
import os

import pytest
import torch

import backbones
from backbones.weights import load_checkpoint
from detection.classification import (
    ClassificationBatch,
    build_classification_model,
    export_backbone,
    get_classification_cfg,
    load_classification_config,
)
from detection.classification.solver import build_classification_lr_scheduler
from helpers import config_path, shipped_configs

IMAGENET = shipped_configs("ImageNet/*.yaml")
LEAVES = shipped_configs("ImageNet/*.yaml", bases=False)


def _model(name="shufflenet_v2_0.5x", classes=3, **kw):
    cfg = get_classification_cfg()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.NUM_CLASSES = name, classes
    for k, v in kw.items():
        setattr(cfg.MODEL, k, v)
    return build_classification_model(cfg)


def test_train_loss_and_eval_logits():
    model = _model(LABEL_SMOOTHING=0.1)
    batch = ClassificationBatch(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 2]))
    losses = model.train()(batch)
    assert set(losses) == {"loss_cls"} and losses["loss_cls"].ndim == 0 and losses["loss_cls"].requires_grad
    logits = model.eval()(batch)
    assert logits.shape == (2, 3)
    # normalisation with the detector's mean/std happens inside the model
    x = batch.images.float()
    ref = super(type(model), model).forward((x - model.pixel_mean) / model.pixel_std)
    assert torch.allclose(logits, ref)


def test_state_dict_is_a_plain_classifier_and_exports(tmp_path):
    model = _model()
    plain = backbones.build_classifier("shufflenet_v2_0.5x", num_classes=3)
    assert set(model.state_dict()) == set(plain.state_dict())  # no pixel_mean/std buffers
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    path = export_backbone(model, str(tmp_path / "bb.pth"), classes=["a", "b", "c"], extra={"iteration": 7})
    report = load_checkpoint(plain, path)
    assert not report.missing_keys and torch.equal(plain.fc.weight, model.fc.weight)
    meta = torch.load(path, map_location="cpu", weights_only=True)
    assert meta["classes"] == ["a", "b", "c"] and meta["iteration"] == 7 and meta["layout"] == "litedet"


def test_shipped_imagenet_configs_found():
    names = {os.path.basename(p) for p in IMAGENET}
    assert {"Base-Classification.yaml", "Base-ShuffleNet.yaml", "Base-FDMobileNet.yaml", "Base-Seesaw.yaml"} <= names
    assert len(LEAVES) >= 15


@pytest.mark.parametrize("path", LEAVES, ids=os.path.basename)
def test_shipped_imagenet_config_builds(path):
    cfg = load_classification_config(path)
    assert cfg.MODEL.BACKBONE.NAME in backbones.list_backbones()
    assert os.path.basename(path) == cfg.MODEL.BACKBONE.NAME + ".yaml"
    assert cfg.MODEL.NUM_CLASSES == 1000
    model = build_classification_model(cfg)
    assert model.fc.out_features == 1000
    cfg.defrost()
    cfg.SOLVER.ITERS_PER_EPOCH = 5005  # what resolve_config computes for ImageNet at batch 256
    opt = torch.optim.SGD(model.parameters(), lr=cfg.SOLVER.BASE_LR)
    build_classification_lr_scheduler(cfg, opt)


def test_recipes_match_the_papers():
    c = lambda name: load_classification_config(config_path("ImageNet", name))  # noqa: E731
    for name in ("shufflenet_v1_g3_1.0x.yaml", "shufflenet_v2_1.0x.yaml", "shufflenet_v2star_1.0x.yaml"):
        s = c(name).SOLVER
        assert (s.LR_SCHEDULER_NAME, s.BASE_LR, s.BASE_LR_END, s.WEIGHT_DECAY) == ("LinearDecayLR", 0.5, 0.0, 4e-5)
        assert (s.IMS_PER_BATCH, s.MAX_ITER, s.MOMENTUM) == (1024, 300000, 0.9)
    # the authors' ShuffleNetV2/network.py: dropout 0.2 before the FC of the 2.0x model only
    assert c("shufflenet_v2_2.0x.yaml").MODEL.DROPOUT == 0.2
    assert c("shufflenet_v2_1.5x.yaml").MODEL.DROPOUT == 0.0 and c("shufflenet_v1_g3_2.0x.yaml").MODEL.DROPOUT == 0.0
    fd = c("fd_mobilenet_1.0x.yaml")
    s = fd.SOLVER
    assert (s.LR_SCHEDULER_NAME, s.BASE_LR, s.GAMMA, s.STEP_EPOCHS, s.MAX_EPOCHS) == ("EpochStepLR", 0.1, 0.1, 30, 90)
    assert (s.IMS_PER_BATCH, s.WEIGHT_DECAY, s.MOMENTUM, fd.INPUT.COLOR_JITTER) == (256, 4e-5, 0.9, 0.0)
    # the authors' "less_aggressive" RandomResizedCrop (FD-MobileNet pyvision/dataloaders/ImageNet.py)
    assert fd.INPUT.CROP_SCALE == (0.64, 1.0) and c("mobilenet_v1_0.125x.yaml").INPUT.CROP_SCALE == (0.64, 1.0)
    assert not fd.TEST.PRECISE_BN.ENABLED
    # ShuffleNet-Series: a final BN recalibration over one epoch; the FC has no bias
    for name in ("shufflenet_v1_g3_1.0x.yaml", "shufflenet_v2_1.0x.yaml", "shufflenet_v2star_1.0x.yaml"):
        cfg = c(name)
        assert cfg.TEST.PRECISE_BN.ENABLED and cfg.TEST.PRECISE_BN.NUM_ITER == 0
        assert build_classification_model(cfg).fc.bias is None
    assert build_classification_model(fd).fc.bias is not None
    sw = c("seesaw_shuffle_1.0d.yaml")
    s = sw.SOLVER
    assert (s.LR_SCHEDULER_NAME, s.BASE_LR, s.GAMMA, s.STEP_EPOCHS, s.MAX_EPOCHS) == ("EpochStepLR", 0.045, 0.98, 1, 400)
    assert (s.IMS_PER_BATCH, s.WEIGHT_DECAY, s.MOMENTUM) == (96, 4e-5, 0.9)
    # the authors' code/imagenet.py: Resize(256) (short side), not the paper's "256*256"
    assert not sw.INPUT.TEST_RESIZE_SQUARE and sw.INPUT.MIN_SIZE_TEST == 256 and sw.INPUT.TEST_CROP_SIZE == 224
