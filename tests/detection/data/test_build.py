"""The train/test loaders built from a config: batches, grouping, resume, workers, bad samples."""
from __future__ import annotations

import itertools
import json
import uuid

import cv2
import numpy as np
import pytest

from detection.config import get_cfg
from detection.data import (
    BadSampleError,
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)


@pytest.fixture
def tiny_coco(tmp_path):
    """8 images: 5 landscape (40x60), 3 portrait (60x40); image 4 has no boxes.

    Registered through DATASETS.REGISTER_COCO, so the config path is exercised too.
    """
    images, anns = [], []
    for i in range(8):
        h, w = (60, 40) if i in (1, 5, 6) else (40, 60)
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((h, w, 3), 10 * i, np.uint8))
        images.append({"id": i, "file_name": f"{i}.png", "height": h, "width": w})
        if i != 4:
            anns.append({"id": i + 1, "image_id": i, "category_id": 1 + i % 2, "bbox": [2, 3, 10, 12], "iscrowd": 0})
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    name = f"loader_test_{uuid.uuid4().hex[:8]}"
    cfg = get_cfg()
    cfg.DATASETS.REGISTER_COCO = [[name, str(tmp_path / "ann.json"), str(tmp_path)]]
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = (name,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    cfg.INPUT.MIN_SIZE_TEST = 40
    cfg.INPUT.MAX_SIZE_TEST = 100
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.SEED = 1
    yield cfg, name, tmp_path
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _orientation(item):
    return item["image"].shape[2] > item["image"].shape[1]  # landscape


def test_train_loader_batches_and_grouping(tiny_coco):
    cfg, _, _ = tiny_coco
    loader = build_detection_train_loader(cfg)
    batches = list(itertools.islice(loader, 12))
    assert all(len(b) == 2 for b in batches)
    for b in batches:
        assert len({_orientation(x) for x in b}) == 1
        for x in b:
            assert x["instances"]["boxes"].shape[1] == 4
    seen = {x["image_id"] for b in batches for x in b}
    assert seen == set(range(8))  # 24 samples cover all 8 images, incl. the empty one


@pytest.mark.parametrize("seed", [7, -1])
def test_train_loader_resume_replays_the_same_batches(tiny_coco, seed):
    """With SEED < 0 the data seed is drawn at random in each process: a resumed loader
    takes the saved seed, so it still replays the interrupted run's batches."""
    cfg, _, _ = tiny_coco
    cfg.SEED = seed
    loader = build_detection_train_loader(cfg)
    for _ in range(5):
        next(loader)
    state = loader.state_dict()
    rest = [[x["image_id"] for x in b] for b in itertools.islice(loader, 4)]
    resumed = build_detection_train_loader(cfg)
    if seed < 0:
        assert resumed.seed != loader.seed
    resumed.load_state_dict(state)
    assert resumed.seed == loader.seed
    assert [[x["image_id"] for x in b] for b in itertools.islice(resumed, 4)] == rest


def test_train_loader_with_workers(tiny_coco):
    cfg, _, _ = tiny_coco
    cfg.DATALOADER.NUM_WORKERS = 2
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    cfg.SOLVER.IMS_PER_BATCH = 3
    loader = build_detection_train_loader(cfg)
    batches = list(itertools.islice(loader, 4))
    loader.close()
    assert [len(b) for b in batches] == [3, 3, 3, 3]


def test_filter_empty_annotations(tiny_coco):
    cfg, _, _ = tiny_coco
    cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True
    loader = build_detection_train_loader(cfg)
    assert len(loader.dataset) == 7
    seen = {x["image_id"] for b in itertools.islice(loader, 12) for x in b}
    assert 4 not in seen


def test_batch_size_and_class_checks(tiny_coco):
    cfg, _, _ = tiny_coco
    cfg.SOLVER.IMS_PER_BATCH = 0
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        build_detection_train_loader(cfg)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        build_detection_train_loader(cfg)


def test_bad_samples_fail_or_are_skipped(tiny_coco):
    cfg, _, root = tiny_coco
    (root / "3.png").write_bytes(b"corrupt")
    loader = build_detection_train_loader(cfg)
    with pytest.raises(BadSampleError, match="3.png"):
        list(itertools.islice(loader, 12))
    cfg.DATALOADER.SKIP_BAD_SAMPLES = True
    loader = build_detection_train_loader(cfg)
    batches = list(itertools.islice(loader, 12))
    assert all(len(b) == 2 for b in batches)
    assert 3 not in {x["image_id"] for b in batches for x in b}
    test_batches = list(build_detection_test_loader(cfg, cfg.DATASETS.TEST[0]))
    assert sum(1 for b in test_batches if not b) == 1 and len(test_batches) == 8


def test_test_loader(tiny_coco):
    cfg, name, _ = tiny_coco
    loader = build_detection_test_loader(cfg, name)
    batches = list(loader)
    assert len(batches) == 8 and all(isinstance(b, list) and len(b) == 1 for b in batches)
    assert [b[0]["image_id"] for b in batches] == list(range(8))
    first = batches[0][0]
    assert tuple(first["image"].shape) == (3, 40, 60) and "instances" not in first


def test_workers_fork_with_opencv_threads_stopped(tiny_coco, monkeypatch):
    """Workers must be forked while OpenCV's thread pool is shut down (a pool alive at fork
    time made the workers' cv2.setNumThreads(1) hang); the count is restored afterwards."""
    import detection.data.loaders as loaders_mod

    cfg, _, _ = tiny_coco
    cfg.DATALOADER.NUM_WORKERS = 1
    cv2.setNumThreads(2)
    seen = []
    original_iter = loaders_mod.DataLoader.__iter__

    def recording_iter(self):
        seen.append(cv2.getNumThreads())
        return original_iter(self)

    monkeypatch.setattr(loaders_mod.DataLoader, "__iter__", recording_iter)
    # Parallel OpenCV work in this process before the fork (what in-process dataset generation does).
    cv2.resize(np.zeros((1200, 1600, 3), np.uint8), (800, 600))
    loader = build_detection_train_loader(cfg)
    batch = next(iter(loader))
    loader.close()
    assert len(batch) == 2
    assert seen == [1]
    assert cv2.getNumThreads() == 2


def _rewrite(cfg_name_root, mutate):
    """Edit the fixture's json and re-register (the catalog caches nothing, the loader re-reads)."""
    cfg, name, root = cfg_name_root
    data = json.loads((root / "ann.json").read_text())
    mutate(data)
    (root / "ann.json").write_text(json.dumps(data))
    return cfg, name, root


@pytest.mark.parametrize("case", ["crowd_only", "no_annotations", "all_degenerate"])
def test_nothing_to_learn_is_refused_before_training(case, tiny_coco):
    from detection.data.errors import DatasetError

    def mutate(d):
        if case == "crowd_only":
            for a in d["annotations"]:
                a["iscrowd"] = 1
        elif case == "no_annotations":
            d["annotations"] = []
        else:
            for a in d["annotations"]:
                a["bbox"] = [2, 3, 0, 12]
    cfg, name, _ = _rewrite(tiny_coco, mutate)
    with pytest.raises(DatasetError, match=rf"DATASETS.TRAIN \['{name}'\]: nothing to learn: 8 images and "
                                           rf"\d boxes, none of them usable") as info:
        build_detection_train_loader(cfg)
    assert info.value.kind == "no_usable_boxes"


def test_exif_orientation_counted_once_per_image_in_training(tiny_coco, caplog):
    """Training applies EXIF as check_dataset and the evaluators do, and says so: one warning
    with the rule at the first rotated image, the count at 10, 100, ..."""
    import logging

    from PIL import Image

    cfg, name, root = tiny_coco
    for i in (0, 2):
        im = Image.fromarray(np.full((40, 60, 3), 10 * i, np.uint8))
        exif = im.getexif()
        exif[0x0112] = 3  # 180 degrees: the size does not reveal it
        im.save(root / f"{i}.png", exif=exif)
    loader = build_detection_train_loader(cfg)
    with caplog.at_level(logging.WARNING, logger="detection.data.bad_samples"):
        batches = list(itertools.islice(loader, 16))
    assert all("exif_orientation" not in item for batch in batches for item in batch)  # marks taken off
    assert loader.exif_orientations.count == 2
    lines = [r.getMessage() for r in caplog.records if "EXIF" in r.getMessage()]
    assert len(lines) == 1 and "carries EXIF orientation 3: litedet trains on the displayed (rotated) image" in lines[0]
    assert lines[0].startswith(str(root))


def test_test_set_images_are_checked_before_training(tiny_coco, caplog):
    import logging

    from detection.data import get_detection_dataset_dicts, register_from_cfg
    from detection.data.build import check_image_files

    cfg, name, root = tiny_coco
    register_from_cfg(cfg)
    (root / "3.png").unlink()
    (root / "5.png").unlink()
    records = get_detection_dataset_dicts(name)
    with pytest.raises(BadSampleError, match=rf"3\.png: image file not found \(test set '{name}'\)") as info:
        check_image_files(records, name)
    assert info.value.kind == "missing_image"
    with pytest.raises(BadSampleError, match=r"3\.png: image file not found"):  # before any inference
        build_detection_test_loader(cfg, name)
    with caplog.at_level(logging.WARNING, logger="detection.data.build"):
        assert check_image_files(records, name, skip_bad_samples=True) == 2
    assert f"dataset '{name}': 2 image file(s) missing or unreadable, e.g. {root / '3.png'}" in caplog.text
