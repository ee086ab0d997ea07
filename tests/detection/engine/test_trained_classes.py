"""The trainer records what its model is in every checkpoint, refuses to resume a run of
other classes, and evaluates a test set that lists the model's classes in another order by
mapping labels by name (a real COCO evaluator on perfect detections)."""
import json

import pytest
import torch
from torch import nn

from detection.data import DatasetCatalog, MetadataCatalog
from detection.engine import Trainer
from detection.model_info import ClassMismatchError

from helpers.fakes import FakeDetector, fake_loader
from helpers.fakes import make_cfg as _cfg


@pytest.fixture
def named(request):
    """Register metadata-only datasets ``{name: classes}``; removed afterwards."""
    names = []

    def register(name, classes):
        MetadataCatalog.get(name).set(thing_classes=list(classes))
        names.append(name)
        return name

    yield register
    for name in names:
        MetadataCatalog.remove(name)
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)


def test_every_checkpoint_records_the_model_and_its_training_classes(tmp_path, named):
    cfg = _cfg(tmp_path, MAX_ITER=3, CHECKPOINT_PERIOD=2)
    cfg.DATASETS.TRAIN = (named(f"ci_train_{tmp_path.name}", ["cat", "dog"]),)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    Trainer(cfg, model=FakeDetector(), data_loader=fake_loader()).train()
    for name in ("model_0000001.pth", "model_final.pth"):
        info = torch.load(tmp_path / name, weights_only=True)["model_info"]
        assert info == {"meta_architecture": cfg.MODEL.META_ARCHITECTURE, "backbone": cfg.MODEL.BACKBONE.NAME,
                        "num_classes": 2, "thing_classes": ["cat", "dog"]}


@pytest.mark.parametrize("classes", [["dog", "cat"], ["cat", "bird"]])
def test_resume_refuses_a_run_of_other_classes(tmp_path, named, classes):
    cfg = _cfg(tmp_path, MAX_ITER=2)
    cfg.DATASETS.TRAIN = (named(f"ci_a_{tmp_path.name}", ["cat", "dog"]),)
    Trainer(cfg, model=FakeDetector(), data_loader=fake_loader()).train()
    cfg2 = _cfg(tmp_path, MAX_ITER=4)
    cfg2.DATASETS.TRAIN = (named(f"ci_b_{tmp_path.name}", classes),)
    trainer = Trainer(cfg2, model=FakeDetector(), data_loader=fake_loader())
    with pytest.raises(ClassMismatchError, match=rf"cannot --resume from {tmp_path / 'model_final.pth'}: it was trained "
                                                 rf"on \[cat, dog\] but DATASETS.TRAIN has \[{classes[0]}, {classes[1]}\]"):
        trainer.resume_or_load(resume=True)


class PerfectDetector(nn.Module):
    """Eval mode: the ground-truth boxes of each image, labelled in the model's class order."""

    def __init__(self, truth):
        super().__init__()
        self.truth = truth  # image_id -> [(box_xyxy, model label)]
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batched_inputs):
        out = []
        for b in batched_inputs:
            objects = self.truth[b["image_id"]]
            out.append({"boxes": torch.tensor([box for box, _ in objects], dtype=torch.float32),
                        "scores": torch.full((len(objects),), 0.9), "labels": torch.tensor([c for _, c in objects])})
        return out


@pytest.fixture
def permuted_coco(tmp_path, corpus):
    """A COCO test set listing the classes as [b, a] (ids 1, 2) while the model's order is
    [a, b]; every image has one 'a' box and one 'b' box."""
    from detection.data import register_coco_instances

    root = tmp_path / "perm"
    (root / "img").mkdir(parents=True)
    images, anns, truth = [], [], {}
    for i in range(3):
        corpus.save_rgb(root / "img" / f"{i}.png", corpus.noise(24, 32, i))
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 24, "width": 32})
        anns.append({"id": 2 * i + 1, "image_id": i + 1, "category_id": 2, "bbox": [2, 3, 10, 8], "iscrowd": 0, "area": 80})
        anns.append({"id": 2 * i + 2, "image_id": i + 1, "category_id": 1, "bbox": [14, 4, 6, 6], "iscrowd": 0, "area": 36})
        truth[i + 1] = [([2.0, 3.0, 12.0, 11.0], 0), ([14.0, 4.0, 20.0, 10.0], 1)]  # a -> label 0, b -> label 1
    json_file = root / "ann.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns,
                                     "categories": [{"id": 1, "name": "b"}, {"id": 2, "name": "a"}]}))
    name = f"ci_perm_{tmp_path.name}"
    register_coco_instances(name, str(json_file), str(root / "img"))
    yield name, truth
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_test_set_with_the_classes_in_another_order_is_mapped_by_name(tmp_path, permuted_coco, caplog):
    name, truth = permuted_coco
    cfg = _cfg(tmp_path)
    cfg.DATASETS.TEST = (name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TEST = 0
    model = PerfectDetector(truth)
    with caplog.at_level("INFO", logger="detection.engine.train_loop"):
        mapped = Trainer.test(cfg, model, model_classes=["a", "b"])["bbox"]
    assert (mapped["AP"], mapped["AP-a"], mapped["AP-b"]) == (100.0, 100.0, 100.0)
    assert f"DATASETS.TEST dataset '{name}' lists the model's classes in another order ([b, a], model: [a, b])" in caplog.text
    # without the model's names the labels would be scored as the test set's: every box wrong
    unmapped = Trainer.test(cfg, model)["bbox"]
    assert (unmapped["AP-a"], unmapped["AP-b"]) == (0.0, 0.0)
    with pytest.raises(ClassMismatchError, match=rf"the model has 2 classes \[a, c\] but DATASETS.TEST "
                                                 rf"dataset '{name}' has 2 classes \[b, a\]"):
        Trainer.test(cfg, model, model_classes=["a", "c"])
