"""Before training, every registered DATASETS.TEST set is loaded, its image files stat'ed
and its evaluator's ground truth built: a test set that cannot be evaluated stops the run before the
first iteration (nothing trained, nothing saved), not after the whole run."""
import json
import os
import uuid

import pytest

from detection.data import DatasetCatalog, MetadataCatalog, register_from_cfg
from detection.data.errors import BadSampleError, DatasetError
from detection.engine import Trainer

from helpers import fakes as _fakes


@pytest.fixture
def test_set(tmp_path, corpus):
    name = f"startup_test_{uuid.uuid4().hex[:8]}"
    path = corpus.valid_coco(tmp_path / "data", n=3)
    cfg = _fakes.make_cfg(tmp_path / "out", MAX_ITER=2, CHECKPOINT_PERIOD=0)
    cfg.DATASETS.REGISTER_COCO = [[name, str(path), str(tmp_path / "data" / "img")]]
    cfg.DATASETS.TEST = (name,)
    register_from_cfg(cfg)  # what train_net's config check does
    yield cfg, path, tmp_path / "data" / "img"
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _train(cfg):
    trainer = Trainer(cfg, model=_fakes.FakeDetector(), data_loader=_fakes.fake_loader())
    try:
        trainer.train()
    finally:
        assert trainer.iter == 0 and not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))


def test_missing_test_image_stops_before_training(test_set):
    cfg, _, images = test_set
    (images / "2.png").unlink()
    with pytest.raises(BadSampleError, match=r"img/2\.png: image file not found \(test set 'startup_test_\w+'\)"):
        _train(cfg)


def test_unscorable_test_annotations_stop_before_training(test_set):
    cfg, path, _ = test_set
    data = json.loads(path.read_text())
    data["annotations"][3]["area"] = "36"  # what pycocotools would fail on after training
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"ann\.json: annotation 4: 'area' must be a finite number >= 0, got '36'"):
        _train(cfg)


def test_classification_style_test_sets_are_left_alone(test_set):
    """Names that are not catalog datasets (a classifier's split folders, a test's fakes) are
    not the detection check's business."""
    cfg, _, _ = test_set
    cfg.DATASETS.TEST = ("val",)
    trainer = Trainer(cfg, model=_fakes.FakeDetector(), data_loader=_fakes.fake_loader())
    trainer.check_test_datasets(cfg)  # no error: nothing to check
