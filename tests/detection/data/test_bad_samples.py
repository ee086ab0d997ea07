"""DATALOADER.BAD_SAMPLE_POLICY: "error" names the file, "skip" counts, logs and replaces
(also across DataLoader workers), and too many skips stop the run."""
from __future__ import annotations

import itertools
import logging
import uuid

import pytest

from detection.config import get_cfg
from detection.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detection.data.bad_samples import SKIPPED_KEY, BadSampleCounter, bad_sample_policy, describe_error
from detection.data.errors import BadSampleError


@pytest.fixture
def broken_coco(tmp_path, corpus):
    """6 images, image 2.png truncated."""
    path = corpus.valid_coco(tmp_path, n=6)
    data = (tmp_path / "img" / "2.png").read_bytes()
    (tmp_path / "img" / "2.png").write_bytes(data[: len(data) // 3])
    name = f"skip_test_{uuid.uuid4().hex[:8]}"
    cfg = get_cfg()
    cfg.DATASETS.REGISTER_COCO = [[name, str(path), str(tmp_path / "img")]]
    cfg.DATASETS.TRAIN = (name,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (24,)
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.SEED = 3
    yield cfg
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_policy_from_config():
    cfg = get_cfg()
    assert bad_sample_policy(cfg) == (False, 0.05)
    cfg.DATALOADER.BAD_SAMPLE_POLICY = "skip"
    assert bad_sample_policy(cfg) == (True, 0.05)
    cfg.DATALOADER.BAD_SAMPLE_POLICY = "error"
    cfg.DATALOADER.SKIP_BAD_SAMPLES = True  # the deprecated alias of "skip"
    assert bad_sample_policy(cfg)[0] is True
    cfg.DATALOADER.BAD_SAMPLE_POLICY = "ignore"
    with pytest.raises(ValueError, match="BAD_SAMPLE_POLICY must be 'error' or 'skip', got 'ignore'"):
        bad_sample_policy(cfg)


def test_error_policy_names_the_file(broken_coco):
    loader = build_detection_train_loader(broken_coco)
    with pytest.raises(BadSampleError, match=r"img/2\.png: corrupt or truncated PNG data"):
        list(itertools.islice(loader, 12))


def test_skip_policy_counts_logs_and_replaces(broken_coco, caplog):
    broken_coco.DATALOADER.BAD_SAMPLE_POLICY = "skip"
    loader = build_detection_train_loader(broken_coco)
    with caplog.at_level(logging.WARNING, logger="detection.data"):
        batches = list(itertools.islice(loader, 12))
    assert all(len(b) == 2 for b in batches)
    assert all(SKIPPED_KEY not in x for b in batches for x in b)
    assert {x["image_id"] for b in batches for x in b} <= {1, 2, 4, 5, 6}  # image id 3 is 2.png
    assert loader.bad_samples.num_skipped >= 2 and loader.bad_samples.num_samples == 24
    assert "Skipped bad sample" in caplog.text and "2.png" in caplog.text
    assert f"{loader.bad_samples.num_skipped} skipped so far" in caplog.text


def test_skip_policy_stops_above_max_fraction(broken_coco):
    broken_coco.DATALOADER.BAD_SAMPLE_POLICY = "skip"
    broken_coco.DATALOADER.MAX_BAD_SAMPLE_FRACTION = 0.0
    loader = build_detection_train_loader(broken_coco)
    with pytest.raises(BadSampleError, match=r"MAX_BAD_SAMPLE_FRACTION: 1 of \d+ samples drawn were bad"):
        list(itertools.islice(loader, 12))


def test_counter_fraction_is_measured_over_at_least_min_draws():
    counter = BadSampleCounter(max_fraction=0.05, min_draws=100)
    bad = {"image": 0, SKIPPED_KEY: ["x.jpg: broken"]}
    for _ in range(5):  # 5 skips in 5 batches: allowed (5 <= 0.05 * 100)
        counter.update([dict(bad), {"image": 1}])
    with pytest.raises(BadSampleError, match="6 of 17 samples drawn were bad"):
        counter.update([dict(bad)])


def test_worker_exception_names_the_file(broken_coco):
    broken_coco.DATALOADER.NUM_WORKERS = 1
    loader = build_detection_train_loader(broken_coco)
    with pytest.raises(BadSampleError) as info:
        list(itertools.islice(loader, 12))
    assert "2.png" in str(info.value)  # torch re-raises with the worker's traceback text
    line = describe_error(info.value)
    assert "\n" not in line and line.endswith("img/2.png: corrupt or truncated PNG data (image file is truncated)")


def test_unexpected_mapper_errors_keep_their_type_and_name_the_sample(tmp_path, corpus):
    from detection.data import DatasetMapper

    corpus.save_rgb(tmp_path / "x.png", corpus.noise(8, 8))
    record = {"file_name": str(tmp_path / "x.png"), "image_id": 7, "height": 8, "width": 8,
              "annotations": [{"bbox": [1, 1, 4, 4], "category_id": "cat", "iscrowd": 0}]}  # not an int id
    with pytest.raises(ValueError) as info:
        DatasetMapper(is_train=True, min_size=(8,), max_size=16)(record)
    assert not isinstance(info.value, BadSampleError)
    assert any("x.png" in note and "image_id 7" in note for note in getattr(info.value, "__notes__", []))


def test_skip_count_survives_a_resume():
    counter = BadSampleCounter(max_fraction=0.25, min_draws=4)
    counter.update([{SKIPPED_KEY: ["a.jpg"]}, {}, {}])  # 1 of 4 drawn: allowed
    resumed = BadSampleCounter(max_fraction=0.25, min_draws=4)
    resumed.load_state_dict(counter.state_dict())
    assert (resumed.num_samples, resumed.num_skipped) == (3, 1)
    # the fraction is over the whole run: one more skip now exceeds it (a fresh counter would allow it)
    with pytest.raises(BadSampleError, match="2 of 7 samples"):
        resumed.update([{SKIPPED_KEY: ["b.jpg"]}, {}])
    BadSampleCounter(max_fraction=0.25, min_draws=4).update([{SKIPPED_KEY: ["b.jpg"]}, {}])
