"""ImageFolder scanning, transforms, the resumable train loader and the start-up resolution."""
import os

import pytest
import torch

from detection.classification import (
    ImageFolderError,
    build_classification_test_loader,
    build_classification_train_loader,
    get_classification_cfg,
    resolve_config,
    scan_image_folder,
)
from detection.classification.toy import make_toy_image_folder
from detection.config import ConfigError


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_image_folder(str(root), num_classes=3, train_per_class=5, val_per_class=2, size=40, seed=0)
    return root


def _cfg(root, **overrides):
    cfg = get_classification_cfg()
    cfg.DATASETS.ROOT = str(root)
    cfg.INPUT.TRAIN_CROP_SIZE, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.TEST_CROP_SIZE = 24, 32, 28
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS, cfg.SEED = 4, 0, 3
    cfg.TEST.IMS_PER_BATCH = 4
    cfg.merge_from_list([x for kv in overrides.items() for x in kv])
    return cfg


def test_scan_labels_follow_sorted_class_folders(toy_root):
    classes, samples = scan_image_folder(str(toy_root / "train"))
    assert classes == ["circle", "square", "triangle"] and len(samples) == 15
    assert all(os.path.basename(os.path.dirname(p)) == classes[label] for p, label in samples)
    # a test split with a subset of the classes keeps the training labels
    _, val = scan_image_folder(str(toy_root / "val"), ["aaa", "circle", "square", "triangle"])
    assert sorted({label for _, label in val}) == [1, 2, 3]


def test_scan_errors_name_the_path(tmp_path, toy_root):
    with pytest.raises(ImageFolderError, match=f"image folder not found: {tmp_path / 'nope'}"):
        scan_image_folder(str(tmp_path / "nope"))
    (tmp_path / "flat").mkdir()
    with pytest.raises(ImageFolderError, match="no class folders in"):
        scan_image_folder(str(tmp_path / "flat"))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ImageFolderError, match=f"class folder has no images.*{tmp_path / 'empty' / 'cat'}"):
        scan_image_folder(str(tmp_path / "empty"))
    with pytest.raises(ImageFolderError, match="training split lacks: \\['square', 'triangle'\\]"):
        scan_image_folder(str(toy_root / "val"), ["circle"])


def test_loaders_batches(toy_root):
    cfg = _cfg(toy_root)
    batch = next(iter(build_classification_train_loader(cfg)))
    assert batch.images.shape == (4, 3, 24, 24) and batch.images.dtype == torch.uint8
    assert batch.labels.dtype == torch.int64 and len(batch) == 4
    test = list(build_classification_test_loader(cfg, "val"))
    assert [len(b) for b in test] == [4, 2] and test[0].images.shape[-2:] == (28, 28)
    assert torch.cat([b.labels for b in test]).tolist() == [0, 0, 1, 1, 2, 2]


def test_train_loader_resumes_the_same_stream(toy_root):
    cfg = _cfg(toy_root)
    a = build_classification_train_loader(cfg)
    first = [next(a).labels.tolist() for _ in range(6)]  # crosses an epoch boundary (15 images)
    b = build_classification_train_loader(cfg)
    for _ in range(2):
        next(b)
    state = b.state_dict()
    c = build_classification_train_loader(cfg)
    c.load_state_dict(state)
    assert [next(c).labels.tolist() for _ in range(4)] == first[2:]
    with pytest.raises(ValueError, match="batch_size"):
        c.load_state_dict(dict(state, batch_size=8))


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_loader_repeats_the_augmentations(toy_root, workers):
    """A resumed run sees the very images (same random crops and flips) the uninterrupted run
    saw, with or without worker processes, and starting the loader in this process leaves
    the global torch RNG (dropout, ...) alone."""
    cfg = _cfg(toy_root, **{"DATALOADER.NUM_WORKERS": str(workers)})
    torch.manual_seed(123)
    expected_rng = torch.rand(3)
    torch.manual_seed(123)
    a = build_classification_train_loader(cfg)
    first = [next(a) for _ in range(5)]
    a.close()
    assert torch.equal(torch.rand(3), expected_rng)
    b = build_classification_train_loader(cfg)
    next(b), next(b)
    state = b.state_dict()
    b.close()
    c = build_classification_train_loader(cfg)
    c.load_state_dict(state)
    rest = [next(c) for _ in range(3)]
    c.close()
    for want, got in zip(first[2:], rest):
        assert torch.equal(want.labels, got.labels) and torch.equal(want.images, got.images)
    if workers:  # augmentation does not depend on which process ran it
        serial = build_classification_train_loader(_cfg(toy_root))
        assert all(torch.equal(next(serial).images, batch.images) for batch in first)


def test_resume_with_random_seed_continues_the_saved_stream(toy_root):
    """SEED < 0 (every shipped recipe) draws a new data seed per process; a resumed run
    must continue the checkpoint's stream, not refuse the position and start a new one."""
    cfg = _cfg(toy_root, SEED="-1")
    a = build_classification_train_loader(cfg)
    first = [next(a) for _ in range(5)]
    state = dict(a.state_dict(), num_batches=2)
    b = build_classification_train_loader(cfg)
    assert b.seed != a.seed  # (a 1 in 2**31 coincidence would make this test vacuous)
    with pytest.raises(ValueError, match="batch_size"):  # a refused state leaves the seed alone
        b.load_state_dict(dict(state, batch_size=99))
    assert b.seed != a.seed
    b.load_state_dict(state)
    assert b.seed == a.seed
    for want in first[2:]:
        got = next(b)
        assert torch.equal(want.labels, got.labels) and torch.equal(want.images, got.images)
    fixed = build_classification_train_loader(_cfg(toy_root, SEED="5"))
    with pytest.raises(ValueError, match="seed"):  # an explicit SEED still has to match
        fixed.load_state_dict(state)


def test_resolve_config_fills_data_dependent_keys(toy_root):
    cfg = _cfg(toy_root, **{"SOLVER.MAX_EPOCHS": "3", "SOLVER.LR_SCHEDULER_NAME": "EpochStepLR"})
    out = resolve_config(cfg)
    assert out.MODEL.NUM_CLASSES == 3
    assert out.SOLVER.ITERS_PER_EPOCH == 4  # ceil(15 / 4)
    assert out.SOLVER.MAX_ITER == 12 and out.is_frozen()


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"MODEL.NUM_CLASSES": "5"}, ConfigError, "MODEL.NUM_CLASSES is 5 but .*train has 3 class folders"),
        ({"MODEL.BACKBONE.NAME": "shufflenet_v2_1.1x"}, ConfigError, "did you mean"),
        ({"MODEL.DEVICE": "gpu0"}, ConfigError, "MODEL.DEVICE"),
        ({"SOLVER.MAX_EPOCHS": "0", "SOLVER.MAX_ITER": "0"}, ConfigError, "SOLVER.MAX_ITER must be positive"),
        ({"DATASETS.TEST": "('nosplit',)"}, ImageFolderError, "image folder not found: .*nosplit"),
        ({"DATASETS.ROOT": "/does/not/exist"}, ImageFolderError, "/does/not/exist/train"),
    ],
)
def test_resolve_config_errors(toy_root, overrides, error, message):
    with pytest.raises(error, match=message):
        resolve_config(_cfg(toy_root, **overrides))


def test_eval_only_without_training_split_needs_every_class(tmp_path, toy_root):
    """Without DATASETS.ROOT/train, labels are the test split's sorted class folders; that is
    only right when the test split holds every class, so a count that differs from
    MODEL.NUM_CLASSES is an error (it would shift or drop labels silently)."""
    import shutil

    shutil.copytree(toy_root / "val", tmp_path / "val")
    cfg = _cfg(tmp_path, **{"MODEL.NUM_CLASSES": "3"})
    assert resolve_config(cfg, train=False).MODEL.NUM_CLASSES == 3  # every class there: fine
    assert resolve_config(_cfg(tmp_path), train=False).MODEL.NUM_CLASSES == 3  # 0: counted
    shutil.rmtree(tmp_path / "val" / "circle")  # "square" would get label 0 instead of 1
    with pytest.raises(ConfigError, match=r"MODEL.NUM_CLASSES is 3 but .*val has 2 class folders.*train"):
        resolve_config(cfg, train=False)
    (tmp_path / "train" / "circle").mkdir(parents=True)  # the training class names suffice
    for name in ("square", "triangle"):
        (tmp_path / "train" / name).mkdir()
    assert resolve_config(cfg, train=False).MODEL.NUM_CLASSES == 3


def test_unreadable_image_names_the_file(tmp_path):
    from detection.classification import ImageFolderDataset
    from detection.classification.data import build_test_transform

    bad = tmp_path / "cat" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not an image")
    ds = ImageFolderDataset([(str(bad), 0)], build_test_transform(get_classification_cfg()), ["cat"])
    with pytest.raises(ImageFolderError, match=f"cannot read image {bad}"):
        ds[0]
