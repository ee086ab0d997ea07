"""The classes of a trained model, end to end: tools/train_net.py records them in every
checkpoint; evaluation (at the end of training and --eval-only) maps a test set listing
them in another order by name and refuses other classes with one line; the demo and the
export name the checkpoint's classes, with or without a dataset registered. A real tiny
Light-Head R-CNN is trained for two iterations on a two-class set built here."""
import json
import logging
import os
import sys

import cv2
import numpy as np
import pytest
import torch

from detection.cli.common import REPO_ROOT as ROOT
from detection.data import DatasetCatalog, MetadataCatalog

pytest.importorskip("detection.modeling")

CONFIG = os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml")
TINY = ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96", "MODEL.RPN.POST_NMS_TOPK_TEST", "20",
        "TEST.DETECTIONS_PER_IMAGE", "10", "DATALOADER.NUM_WORKERS", "0", "SEED", "0", "SOLVER.IMS_PER_BATCH", "1",
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(1,)", "MODEL.ROI_HEADS.NUM_CLASSES", "2"]
PHOTOS = "/usr/share/doc/opencv-doc/examples/data"
#: two objects per image, at the same place in every image: one "a", one "b"
BOXES = {"a": (5, 6, 25, 30), "b": (30, 10, 50, 40)}


def _images(root, n=3):
    (root / "img").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.random.default_rng(i).integers(0, 120, (48, 64, 3), dtype=np.uint8)
        for x1, y1, x2, y2 in BOXES.values():
            img[y1:y2, x1:x2] = 230
        cv2.imwrite(str(root / "img" / f"{i}.png"), img)
    return n


def _coco(root, categories):
    """A COCO json over ``root/img`` whose categories are ``[(id, name), ...]``; boxes whose
    name is not listed are left out."""
    n = _images(root)
    ids = {name: cid for cid, name in categories}
    images = [{"id": i + 1, "file_name": f"{i}.png", "height": 48, "width": 64} for i in range(n)]
    anns = [
        {"id": len(images) * k + i + 1, "image_id": i + 1, "category_id": ids[name], "iscrowd": 0,
         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
        for i in range(n) for k, (name, (x1, y1, x2, y2)) in enumerate(BOXES.items()) if name in ids
    ]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": c, "name": nm} for c, nm in categories]}))
    return path


def _voc(root):
    n = _images(root)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.jpg"), cv2.imread(str(root / "img" / f"{i}.png")))
        objects = "".join(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for name, (x1, y1, x2, y2) in BOXES.items()
        )
        (root / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><size><width>64</width><height>48</height><depth>3</depth></size>{objects}</annotation>")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(str(i) for i in range(n)) + "\n")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``{name: (kind, path or root, classes)}`` of the test sets, and the REGISTER_* overrides."""
    root = tmp_path_factory.mktemp("classes")
    tag = root.name
    sets = {
        f"ab_{tag}": _coco(root / "ab", [(1, "a"), (2, "b")]),
        f"ba_{tag}": _coco(root / "ba", [(1, "b"), (2, "a")]),  # the same boxes, the category list reordered
        f"xy_{tag}": _coco(root / "xy", [(1, "x"), (2, "y")]),
        f"abc_{tag}": _coco(root / "abc", [(1, "a"), (2, "b"), (3, "c")]),
    }
    voc = _voc(root / "voc")
    coco = [[name, str(path), str(path.parent / "img")] for name, path in sets.items()]
    vocs = [[f"vab_{tag}", str(voc), "test", "a,b"], [f"vba_{tag}", str(voc), "test", "b,a"]]
    register = ["DATASETS.REGISTER_COCO", repr(coco), "DATASETS.REGISTER_VOC", repr(vocs)]
    names = {k.split("_")[0]: k for k in [*sets, *(v[0] for v in vocs)]}
    yield names, register, root
    for name in [*sets, *(v[0] for v in vocs)]:
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture
def tool(monkeypatch):
    """Call a tool's main() in this process; its logging set-up is undone afterwards."""

    def call(module, argv):
        monkeypatch.setattr(sys, "argv", [f"tools/{module.__name__.rsplit('.', 1)[-1]}.py", *argv])
        return module.main(argv)

    yield call
    for name in ("detection", "backbones", "fvcore", "__main__"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def _test_sets(names, *keys):
    return "(" + "".join(f"'{names[k]}', " for k in keys) + ")"


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Two iterations on [a, b], evaluated at the end on the same set listed as [a, b] and
    as [b, a], in COCO and VOC form."""
    from detection.cli import train_net

    names, register, _ = data
    out = tmp_path_factory.mktemp("trained")
    argv = ["--config-file", CONFIG, *TINY, *register, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1",
            "DATASETS.TRAIN", f"('{names['ab']}',)", "DATASETS.TEST", _test_sets(names, "ab", "ba", "vab", "vba"),
            "OUTPUT_DIR", str(out)]
    saved = sys.argv
    sys.argv = ["tools/train_net.py", *argv]
    try:
        assert train_net.main(argv) == 0
    finally:
        sys.argv = saved
        for name in ("detection", "backbones", "fvcore", "__main__"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    return out


def _without_names(checkpoint_file, path):
    """A copy of a checkpoint as litedet wrote them before they recorded the model's classes."""
    checkpoint = torch.load(checkpoint_file, weights_only=True)
    del checkpoint["model_info"]
    torch.save(checkpoint, path)
    return path


def _per_class(results, dataset):
    bbox = results[dataset]["bbox"]
    return {k: v for k, v in bbox.items() if k.startswith(("AP-", "AP50-"))}


def test_every_checkpoint_records_the_classes_and_architecture(trained):
    for name in ("model_0000000.pth", "model_final.pth"):
        info = torch.load(trained / name, weights_only=True)["model_info"]
        assert info == {"meta_architecture": "LightHeadRCNN", "backbone": "shufflenet_v2_0.5x", "num_classes": 2,
                        "thing_classes": ["a", "b"]}


def test_end_of_training_evaluation_maps_a_reordered_test_set_by_name(trained, data):
    names, _, _ = data
    log = (trained / "log.txt").read_text()
    for key in ("ba", "vba"):
        assert f"DATASETS.TEST dataset '{names[key]}' lists the model's classes in another order ([b, a], model: [a, b])" in log
    results = json.loads((trained / "metrics_final.json").read_text())["results"]
    # the same model on the same boxes: each class scores the same whatever the list's order
    assert _per_class(results, names["ba"]) == _per_class(results, names["ab"])
    assert _per_class(results, names["vba"]) == _per_class(results, names["vab"])
    assert set(_per_class(results, names["ab"])) == {"AP-a", "AP-b"}


def test_eval_only_maps_a_reordered_test_set_by_name(trained, data, tool, tmp_path):
    from detection.cli import train_net

    names, register, _ = data
    out = tmp_path / "eval"
    assert tool(train_net, ["--config-file", CONFIG, "--eval-only", *TINY, *register, "DATASETS.TRAIN", "()",
                            "DATASETS.TEST", _test_sets(names, "ba"), "MODEL.WEIGHTS", str(trained / "model_final.pth"),
                            "OUTPUT_DIR", str(out)]) == 0
    assert "lists the model's classes in another order" in (out / "log.txt").read_text()
    evaluated = json.loads((out / "metrics_final.json").read_text())["results"]["bbox"]
    at_training = json.loads((trained / "metrics_final.json").read_text())["results"]
    assert {k: evaluated[k] for k in ("AP-a", "AP-b")} == _per_class(at_training, names["ab"])


@pytest.mark.parametrize("key, listed, detail", [
    ("xy", "[x, y]", "only the model has [a, b]; only the dataset has [x, y]"),
    ("abc", "[a, b, c]", "only the dataset has [c]"),
])
def test_eval_only_on_other_classes_is_one_line_exit_2(trained, data, tool, tmp_path, capsys, key, listed, detail):
    from detection.cli import train_net

    names, register, _ = data
    weights = trained / "model_final.pth"
    out = tmp_path / "eval"
    assert tool(train_net, ["--config-file", CONFIG, "--eval-only", *TINY, *register, "DATASETS.TRAIN", "()",
                            "DATASETS.TEST", _test_sets(names, key), "MODEL.WEIGHTS", str(weights),
                            "OUTPUT_DIR", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"train_net.py: config error: the model in MODEL.WEIGHTS {weights} has 2 classes [a, b] but "
                   f"DATASETS.TEST dataset '{names[key]}' has {len(listed.split(','))} classes {listed} ({detail}); "
                   "a model's scores are only meaningful on the classes it was trained on\n")
    assert not (out / "metrics_final.json").exists()


def test_training_with_a_test_set_of_other_classes_stops_before_training(data, tool, tmp_path, capsys):
    from detection.cli import train_net

    names, register, _ = data
    out = tmp_path / "run"
    assert tool(train_net, ["--config-file", CONFIG, *TINY, *register, "SOLVER.MAX_ITER", "2",
                            "DATASETS.TRAIN", f"('{names['ab']}',)", "DATASETS.TEST", _test_sets(names, "xy"),
                            "OUTPUT_DIR", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train_net.py: config error: the model's training set, DATASETS.TRAIN dataset '{names['ab']}', "
                          f"has 2 classes [a, b] but DATASETS.TEST dataset '{names['xy']}' has 2 classes [x, y]")
    assert err.count("\n") == 1 and not out.exists()  # nothing written, nothing trained


def test_checkpoint_without_names_warns_once_and_evaluates(trained, data, tool, tmp_path):
    from detection.cli import train_net

    names, register, _ = data
    old = _without_names(trained / "model_final.pth", tmp_path / "old.pth")
    out = tmp_path / "eval"
    assert tool(train_net, ["--config-file", CONFIG, "--eval-only", *TINY, *register, "DATASETS.TRAIN", "()",
                            "DATASETS.TEST", _test_sets(names, "ab"), "MODEL.WEIGHTS", str(old),
                            "OUTPUT_DIR", str(out)]) == 0
    log = (out / "log.txt").read_text()
    assert log.count(f"MODEL.WEIGHTS {old} records no class names") == 1
    assert json.loads((out / "metrics_final.json").read_text())["results"]["bbox"]["AP-a"] is not None


# ---------------------------------------------------------------------------- demo and export
def _video(path, source_dir, frames=3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for i in range(frames):
        writer.write(cv2.imread(str(source_dir / "img" / f"{i % 3}.png")))
    writer.release()
    return path


@pytest.mark.parametrize("test_sets", ["()", "ba"])
def test_demo_names_the_checkpoint_classes(trained, data, tool, tmp_path, test_sets):
    """Without any dataset, or with a test set listing the classes in another order: the
    labels are the checkpoint's names."""
    from detection.cli import demo

    names, register, root = data
    video = _video(tmp_path / "clip.avi", root / "ab")
    sets = test_sets if test_sets == "()" else _test_sets(names, test_sets)
    assert tool(demo, ["--config-file", CONFIG, "--input", str(video), "--output", str(tmp_path / "out"),
                       "--confidence-threshold", "0.0", *TINY, *register, "DATASETS.TEST", sets,
                       "MODEL.WEIGHTS", str(trained / "model_final.pth")]) == 0
    record = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert record["class_names"] == ["a", "b"]
    drawn = [(label, name) for frame in record["frames"] for label, name in zip(frame["labels"], frame["class_names"])]
    assert drawn and all(name == "ab"[label] for label, name in drawn)


def test_demo_names_a_registered_coco_test_set_for_a_checkpoint_without_names(trained, data, tool, tmp_path):
    from detection.cli import demo

    names, register, root = data
    old = _without_names(trained / "model_final.pth", tmp_path / "old.pth")
    video = _video(tmp_path / "clip.avi", root / "ab")
    assert tool(demo, ["--config-file", CONFIG, "--input", str(video), "--output", str(tmp_path / "out"),
                       "--confidence-threshold", "0.0", *TINY, *register, "DATASETS.TEST", _test_sets(names, "ab"),
                       "MODEL.WEIGHTS", str(old)]) == 0
    assert json.loads((tmp_path / "out" / "clip.json").read_text())["class_names"] == ["a", "b"]


def test_demo_refuses_a_test_set_of_other_classes(trained, data, tool, tmp_path, capsys):
    from detection.cli import demo

    names, register, root = data
    weights = trained / "model_final.pth"
    assert tool(demo, ["--config-file", CONFIG, "--input", str(root / "ab" / "img"), "--output", str(tmp_path / "out"),
                       *TINY, *register, "DATASETS.TEST", _test_sets(names, "xy"), "MODEL.WEIGHTS", str(weights)]) == 2
    err = capsys.readouterr().err
    assert f"the model in MODEL.WEIGHTS {weights} has 2 classes [a, b] but DATASETS.TEST dataset '{names['xy']}'" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("test_sets", ["()", "ab"])
def test_export_writes_the_checkpoint_class_names(trained, data, tool, tmp_path, test_sets):
    from detection.cli import export

    names, register, _ = data
    sets = test_sets if test_sets == "()" else _test_sets(names, test_sets)
    assert tool(export, ["--config-file", CONFIG, "--format", "torchscript", "--backbone-only", "--no-check",
                         "--input", "64x64", "--output", str(tmp_path / "exp"), *TINY, *register, "DATASETS.TEST", sets,
                         "MODEL.WEIGHTS", str(trained / "model_final.pth")]) == 0
    assert json.loads((tmp_path / "exp" / "backbone.json").read_text())["class_names"] == ["a", "b"]


def test_demo_on_real_photos_without_a_dataset(trained, tool, tmp_path, capsys):
    """Issue 16's demo: a folder of real photos (opencv-doc's), no dataset registered, the
    class names from the checkpoint."""
    from detection.cli import demo

    photos = [os.path.join(PHOTOS, f) for f in ("apple.jpg", "HappyFish.jpg", "messi5.jpg")]
    if not all(os.path.isfile(p) for p in photos):
        pytest.skip(f"{PHOTOS} not installed (Debian package opencv-doc)")
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos:
        os.symlink(p, folder / os.path.basename(p))
    weights = trained / "model_final.pth"
    args = ["--config-file", CONFIG, "--input", str(folder), "--output", str(tmp_path / "out"), "--confidence-threshold",
            "0.0", *TINY, "DATASETS.TEST", "()", "MODEL.WEIGHTS", str(weights)]
    assert tool(demo, args) == 0
    assert f"Class names from MODEL.WEIGHTS {weights}: [a, b]" in capsys.readouterr().out
    for p in photos:
        written = cv2.imread(str(tmp_path / "out" / os.path.basename(p)))
        assert written is not None and written.shape == cv2.imread(p).shape
        assert not np.array_equal(written, cv2.imread(p))  # boxes and labels drawn
    # what the boxes are labelled with: the checkpoint's names
    parsed = demo.build_parser().parse_args(args)
    visual = demo.VisualizationDemo(demo.setup_cfg(parsed), parsed.confidence_threshold)
    (_, image), = demo.iter_frames(photos[:1])
    record = visual.frame_record(0, 0.0, visual.run_on_image(image)[0])
    assert record["class_names"] and set(record["class_names"]) <= {"a", "b"}
