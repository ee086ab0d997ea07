"""DatasetCatalog / MetadataCatalog behaviour and user-dataset registration (from code and config)."""
from __future__ import annotations

import functools
import json
import uuid

import pytest

from detection.config import get_cfg
from detection.data import (
    VOC_CLASSES,
    DatasetCatalog,
    MetadataCatalog,
    get_data_root,
    get_detection_dataset_dicts,
    register_coco_instances,
    register_from_cfg,
    register_pascal_voc,
)


@pytest.fixture
def unique_name():
    """A fresh dataset name, unregistered again after the test (the catalogs are global)."""
    names = []

    def make(prefix: str = "test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        names.append(name)
        return name

    yield make
    for n in names:
        if n in DatasetCatalog:
            DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def _records(n: int):
    return [{"file_name": f"{i}.jpg", "image_id": i, "height": 10, "width": 20, "annotations": []} for i in range(n)]


def _write_coco(path, classes=("a", "b")):
    data = {
        "images": [{"id": 1, "file_name": "x.jpg", "height": 10, "width": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3], "iscrowd": 0}],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
    }
    path.write_text(json.dumps(data))
    return str(path)


def test_register_get_list_remove(unique_name):
    name = unique_name()
    DatasetCatalog.register(name, functools.partial(_records, 3))
    assert name in DatasetCatalog.list()
    assert len(DatasetCatalog.get(name)) == 3
    DatasetCatalog.remove(name)
    assert name not in DatasetCatalog


def test_reregister_equal_spec_is_noop_and_different_spec_raises(unique_name):
    name = unique_name()
    DatasetCatalog.register(name, functools.partial(_records, 3))
    DatasetCatalog.register(name, functools.partial(_records, 3))  # equal spec: fine
    with pytest.raises(ValueError, match="already registered"):
        DatasetCatalog.register(name, functools.partial(_records, 4))
    assert len(DatasetCatalog.get(name)) == 3


def test_register_coco_twice_same_args_ok_other_args_raise(unique_name, tmp_path):
    name = unique_name()
    register_coco_instances(name, str(tmp_path / "a.json"), str(tmp_path))
    register_coco_instances(name, tmp_path / "a.json", tmp_path)  # Path vs str: same spec
    with pytest.raises(ValueError):
        register_coco_instances(name, str(tmp_path / "b.json"), str(tmp_path))


def test_unknown_name_lists_registered_and_close_matches():
    with pytest.raises(KeyError) as info:
        DatasetCatalog.get("coco_2017_vall")
    msg = str(info.value)
    assert "coco_2017_val" in msg and "did you mean" in msg
    assert "voc_2007_test" in msg  # the full list of registered names


def test_loader_must_return_list(unique_name):
    name = unique_name()
    DatasetCatalog.register(name, lambda: {"not": "a list"})
    with pytest.raises(TypeError, match="list"):
        DatasetCatalog.get(name)


def test_metadata_conflict_raises_and_get_default(unique_name):
    meta = MetadataCatalog.get(unique_name())
    meta.thing_classes = ["a", "b"]
    meta.thing_classes = ("a", "b")  # same value (tuple vs list) is accepted
    with pytest.raises(ValueError, match="refusing"):
        meta.thing_classes = ["a", "c"]
    assert meta.get("no_such_key", 42) == 42
    with pytest.raises(AttributeError, match="no attribute"):
        meta.no_such_key


def test_default_data_root(monkeypatch):
    monkeypatch.delenv("LITEDET_DATASETS", raising=False)
    assert get_data_root() == "datasets"


def test_register_pascal_voc_metadata(unique_name, tmp_path):
    name = unique_name()
    register_pascal_voc(name, tmp_path, "train", ["cat", "dog"], year=2012)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["cat", "dog"] and meta.year == 2012 and meta.evaluator_type == "voc"
    with pytest.raises(ValueError, match="duplicate"):
        register_pascal_voc(unique_name(), tmp_path, "train", ["cat", "cat"])


def test_register_from_cfg(unique_name, tmp_path):
    coco_name, voc_name, voc_default = unique_name("coco"), unique_name("voc"), unique_name("voc")
    json_file = _write_coco(tmp_path / "ann.json")
    cfg = get_cfg()
    cfg.DATASETS.REGISTER_COCO = [[coco_name, json_file, str(tmp_path)]]
    cfg.DATASETS.REGISTER_VOC = [[voc_name, str(tmp_path), "train", "cat, dog"], [voc_default, str(tmp_path), "val"]]
    assert register_from_cfg(cfg) == [coco_name, voc_name, voc_default]
    register_from_cfg(cfg)  # idempotent: train and test builders both call it
    assert MetadataCatalog.get(voc_name).thing_classes == ["cat", "dog"]
    assert list(MetadataCatalog.get(voc_default).thing_classes) == list(VOC_CLASSES)
    records = DatasetCatalog.get(coco_name)
    assert len(records) == 1 and MetadataCatalog.get(coco_name).thing_classes == ["a", "b"]

    bad = get_cfg()
    bad.DATASETS.REGISTER_COCO = [[coco_name, json_file]]
    with pytest.raises(ValueError, match=r"REGISTER_COCO\[0\]"):
        register_from_cfg(bad)


def test_concatenation_requires_same_classes(unique_name, tmp_path):
    a, b, c = unique_name(), unique_name(), unique_name()
    register_coco_instances(a, _write_coco(tmp_path / "a.json", ("x", "y")), str(tmp_path))
    register_coco_instances(b, _write_coco(tmp_path / "b.json", ("x", "y")), str(tmp_path))
    register_coco_instances(c, _write_coco(tmp_path / "c.json", ("y", "x")), str(tmp_path))
    assert len(get_detection_dataset_dicts([a, b])) == 2
    with pytest.raises(ValueError, match="different thing_classes"):
        get_detection_dataset_dicts([a, c])
    with pytest.raises(ValueError, match="no dataset names"):
        get_detection_dataset_dicts([])
