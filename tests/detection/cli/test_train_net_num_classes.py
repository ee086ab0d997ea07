"""tools/train_net.py and MODEL.ROI_HEADS.NUM_CLASSES on COCO-json and VOC datasets built
here: left at its default it is taken from the training set and logged; set and different
(smaller or larger) it stops the run before training with one line and exit 2. The
Trainer is a stub: what is under test is the start-up."""
import sys

import pytest

from detection.data import DatasetCatalog, MetadataCatalog


class StubTrainer:
    """Records the config it was built with; trains nothing."""

    built = []

    def __init__(self, cfg):
        StubTrainer.built.append(cfg)
        self.interrupted, self.iter, self.checkpointer = None, 0, None

    def resume_or_load(self, resume):
        pass

    def train(self):
        return {}


@pytest.fixture
def dataset(tmp_path, corpus, request):
    """``(name, DATASETS.REGISTER_* override)`` of a 2-class dataset: a COCO json ("a", "b")
    or a VOC folder ("cat", "dog")."""
    name = f"nc_{request.param}_{tmp_path.name}"
    if request.param == "coco":
        json_file = corpus.valid_coco(tmp_path / "coco", n=2)
        override = ["DATASETS.REGISTER_COCO", f"[['{name}', '{json_file}', '{json_file.parent / 'img'}']]"]
    else:
        root = corpus.valid_voc(tmp_path / "voc", n=2)
        override = ["DATASETS.REGISTER_VOC", f"[['{name}', '{root}', 'train', 'cat,dog']]"]
    yield name, override
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _argv(tmp_path, name, override, *extra):
    return [
        "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", "1", *override, "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()", *extra,
    ]


@pytest.mark.parametrize("dataset", ["coco", "voc"], indirect=True)
def test_default_num_classes_is_taken_from_the_training_set_and_logged(train_net, monkeypatch, tmp_path, dataset):
    name, override = dataset
    StubTrainer.built.clear()
    monkeypatch.setattr(train_net, "Trainer", StubTrainer)
    argv = _argv(tmp_path, name, override)
    monkeypatch.setattr(sys, "argv", ["tools/train_net.py", *argv])
    assert train_net.main(argv) == 0
    assert [cfg.MODEL.ROI_HEADS.NUM_CLASSES for cfg in StubTrainer.built] == [2]
    log = (tmp_path / "out" / "log.txt").read_text()
    assert f"MODEL.ROI_HEADS.NUM_CLASSES: 2, the number of classes in DATASETS.TRAIN dataset '{name}'" in log
    assert "    NUM_CLASSES: 2\n" in (tmp_path / "out" / "config.yaml").read_text()  # what --eval-only reads back


@pytest.mark.parametrize("dataset", ["coco", "voc"], indirect=True)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_num_classes_that_disagrees_stops_before_training(train_net, monkeypatch, tmp_path, capsys, dataset, num_classes):
    name, override = dataset
    StubTrainer.built.clear()
    monkeypatch.setattr(train_net, "Trainer", StubTrainer)
    argv = _argv(tmp_path, name, override, "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes))
    monkeypatch.setattr(sys, "argv", ["tools/train_net.py", *argv])
    assert train_net.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"train_net.py: config error: MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but DATASETS.TRAIN dataset '{name}' ("
    )
    assert "has 2 classes; set MODEL.ROI_HEADS.NUM_CLASSES 2" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert StubTrainer.built == []
