"""The built-in datasets: registered on import with their class names, paths resolved
under $LITEDET_DATASETS only when loaded."""
import os

import pytest

from detection.data import VOC_CLASSES, DatasetCatalog, MetadataCatalog, get_data_root


def test_builtins_registered_and_lazy(monkeypatch, tmp_path):
    for name in (
        "coco_2017_train", "coco_2017_val", "coco_2014_minival", "voc_2007_trainval", "voc_2007_test",
        "voc_2012_trainval", "voc_0712_trainval", "litedet_shapes_train", "litedet_shapes_val",
        "litedet_shapes_voc_train", "litedet_shapes_voc_val",
    ):
        assert name in DatasetCatalog
    monkeypatch.setenv("LITEDET_DATASETS", str(tmp_path))
    assert get_data_root() == str(tmp_path)
    meta = MetadataCatalog.get("coco_2017_val")
    assert meta.json_file == os.path.join(str(tmp_path), "coco/annotations/instances_val2017.json")
    assert meta.evaluator_type == "coco" and len(meta.thing_classes) == 80
    assert meta.thing_dataset_id_to_contiguous_id[90] == 79
    voc = MetadataCatalog.get("voc_2007_test")
    assert voc.dirname == os.path.join(str(tmp_path), "VOC2007")
    assert (voc.split, voc.year, voc.evaluator_type) == ("test", 2007, "voc")
    assert list(voc.thing_classes) == list(VOC_CLASSES)
    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        DatasetCatalog.get("coco_2017_val")
    with pytest.raises(FileNotFoundError, match="VOC2012"):
        DatasetCatalog.get("voc_2012_trainval")


def test_bccd_builtins_say_how_to_get_the_data(monkeypatch, tmp_path):
    monkeypatch.setenv("LITEDET_DATASETS", str(tmp_path))
    for split in ("train", "val", "trainval", "test"):
        meta = MetadataCatalog.get(f"bccd_{split}")
        assert meta.thing_classes == ["RBC", "WBC", "Platelets"]
        assert (meta.split, meta.year, meta.evaluator_type) == (split, 2012, "voc")
        assert meta.dirname == os.path.join(str(tmp_path), "BCCD")
    with pytest.raises(FileNotFoundError, match="prepare.py bccd --from"):
        DatasetCatalog.get("bccd_trainval")
