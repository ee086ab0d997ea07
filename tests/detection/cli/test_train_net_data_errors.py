"""tools/train_net.py on datasets that cannot be trained on or evaluated: exit status 2 with
one line naming the file and the problem, before the first iteration (nothing trained,
nothing saved), whether the config check, the training loader or the test-set check meets it."""
import json
import logging
import os
import uuid

import pytest

from detection.cli import train_net
from detection.cli.common import REPO_ROOT as ROOT

pytest.importorskip("detection.modeling")

CONFIG = os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml")
TINY = ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "32", "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_ITER", "2",
        "SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(1,)", "MODEL.DEVICE", "cpu",
        "MODEL.ROI_HEADS.NUM_CLASSES", "2"]


@pytest.fixture
def run(tmp_path, corpus, capsys):
    from detection.data import DatasetCatalog, MetadataCatalog

    names = []

    def run(train_mutate, test_mutate=None, remove_test_image=None):
        sets = []
        for role, mutate in (("tr", train_mutate), ("te", test_mutate)):
            root = tmp_path / role
            path = corpus.valid_coco(root, n=3)
            data = json.loads(path.read_text())
            (mutate or (lambda d: None))(data)
            path.write_text(json.dumps(data))
            name = f"{role}_{uuid.uuid4().hex[:8]}"
            names.append(name)
            sets.append((name, path, root / "img"))
        if remove_test_image:
            (tmp_path / "te" / "img" / remove_test_image).unlink()
        register = json.dumps([[n, str(p), str(i)] for n, p, i in sets])
        out = tmp_path / "out"
        code = train_net.main(["--config-file", CONFIG, *TINY, "OUTPUT_DIR", str(out), "DATASETS.REGISTER_COCO", register,
                               "DATASETS.TRAIN", f"('{sets[0][0]}',)", "DATASETS.TEST", f"('{sets[1][0]}',)"])
        log = (out / "log.txt").read_text() if (out / "log.txt").exists() else ""
        assert "Starting training" not in log and not (out / "model_final.pth").exists()
        return code, capsys.readouterr().err

    yield run
    for name in names:
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    for name in ("detection", "backbones", "fvcore", "__main__"):  # default_setup's handlers
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def _all(key, value):
    def mutate(d):
        for a in d["annotations"]:
            a[key] = value
    return mutate


def test_training_set_without_categories(run):
    code, err = run(lambda d: d.update(categories=[], annotations=[]))
    assert code == 2 and err.count("\n") == 1
    assert "data error: " in err and "tr/ann.json: 'categories' is empty: a detection dataset needs at least one class" in err


def test_training_set_with_only_ignore_regions(run):
    code, err = run(_all("ignore", 1))
    assert code == 2 and err.count("\n") == 1
    assert "data error: DATASETS.TRAIN ['tr_" in err and "nothing to learn: 3 images and 6 boxes, none of them usable" in err


def test_missing_test_image(run):
    code, err = run(None, remove_test_image="2.png")
    assert code == 2 and err.count("\n") == 1
    assert "data error: " in err and "te/img/2.png: image file not found (test set 'te_" in err


def test_test_annotations_the_evaluator_could_not_score(run):
    code, err = run(None, _all("area", "80"))
    assert code == 2 and err.count("\n") == 1
    assert "te/ann.json: annotation 1: 'area' must be a finite number >= 0, got '80'" in err
