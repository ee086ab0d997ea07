"""The built-in datasets: COCO 2017/2014, Pascal VOC 2007/2012, BCCD and litedet_shapes.

Registered when `detection.data` is imported (as detectron2's ``data/datasets/builtin.py``),
without reading anything: paths are resolved under the data root (``$LITEDET_DATASETS``,
see `detection.data.catalog.get_data_root`) when a dataset is loaded. litedet_shapes is
generated on first use. Class names are known before any file is read.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Dict, List, Tuple

from .catalog import DATA_ROOT_ENV, DatasetCatalog, MetadataCatalog, get_data_root
from .coco import COCO_CATEGORIES, load_coco_json
from .shapes import SHAPES_CLASSES, SHAPES_DIRNAME, ensure_shapes_dataset, shapes_paths
from .voc import VOC_CLASSES, load_voc_instances

__all__ = ["BCCD_CLASSES", "BCCD_DIRNAME", "BCCD_SPLITS", "register_all_builtin"]

_BUILTIN_COCO: Dict[str, Tuple[str, str]] = {
    # name: (image dir, annotation file), relative to the data root
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    "coco_2014_minival": ("coco/val2014", "coco/annotations/instances_minival2014.json"),
}

_BUILTIN_VOC: Dict[str, Tuple[str, str, int]] = {
    # name: (directory, split, year)
    "voc_2007_trainval": ("VOC2007", "trainval", 2007),
    "voc_2007_test": ("VOC2007", "test", 2007),
    "voc_2012_trainval": ("VOC2012", "trainval", 2012),
}

#: BCCD blood-cell classes (github.com/Shenggan/BCCD_Dataset); contiguous id = index.
BCCD_CLASSES: Tuple[str, ...] = ("RBC", "WBC", "Platelets")
BCCD_DIRNAME = "BCCD"  # placed under the data root by ``datasets/prepare.py bccd``
BCCD_SPLITS: Tuple[str, ...] = ("train", "val", "trainval", "test")


def _under_root(*parts: str) -> str:
    return os.path.join(get_data_root(), *parts)


def _load_builtin_coco(name: str) -> List[Dict[str, Any]]:
    image_dir, json_rel = _BUILTIN_COCO[name]
    json_file = _under_root(json_rel)
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"dataset {name!r}: annotation file {json_file} not found (data root "
            f"{get_data_root()!r} from ${DATA_ROOT_ENV}); see datasets/README.md for the layout"
        )
    return load_coco_json(json_file, _under_root(image_dir), dataset_name=name)


def _load_builtin_voc(name: str) -> List[Dict[str, Any]]:
    dirname, split, _ = _BUILTIN_VOC[name]
    path = _under_root(dirname)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"dataset {name!r}: directory {path} not found (data root {get_data_root()!r} from "
            f"${DATA_ROOT_ENV}); see datasets/README.md for the layout"
        )
    return load_voc_instances(path, split, tuple(VOC_CLASSES))


def _load_bccd(split: str) -> List[Dict[str, Any]]:
    path = _under_root(BCCD_DIRNAME)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"dataset 'bccd_{split}': directory {path} not found (data root {get_data_root()!r} from "
            f"${DATA_ROOT_ENV}); clone github.com/Shenggan/BCCD_Dataset and run "
            "python datasets/prepare.py bccd --from <clone> (see datasets/README.md)"
        )
    return load_voc_instances(path, split, BCCD_CLASSES)


def _load_voc_0712() -> List[Dict[str, Any]]:
    return DatasetCatalog.get("voc_2007_trainval") + DatasetCatalog.get("voc_2012_trainval")


def _load_shapes(split: str, form: str) -> List[Dict[str, Any]]:
    """Load the embedded shapes dataset, generating it (default settings) if absent."""
    ensure_shapes_dataset(get_data_root())
    paths = shapes_paths(get_data_root())
    if form == "coco":
        return load_coco_json(paths.json_file(split), paths.image_dir(split), dataset_name=f"litedet_shapes_{split}")
    return load_voc_instances(paths.voc_dir, split, tuple(SHAPES_CLASSES))


def register_all_builtin() -> None:
    """Register every built-in dataset and its metadata (safe to call again)."""
    coco_classes = [c["name"] for c in COCO_CATEGORIES]
    coco_id_map = {c["id"]: i for i, c in enumerate(COCO_CATEGORIES)}
    for name, (image_dir, json_rel) in _BUILTIN_COCO.items():
        DatasetCatalog.register(name, functools.partial(_load_builtin_coco, name))
        meta = MetadataCatalog.get(name)
        meta.set(thing_classes=coco_classes, thing_dataset_id_to_contiguous_id=coco_id_map, evaluator_type="coco")
        meta.set_lazy(
            json_file=functools.partial(_under_root, json_rel),
            image_root=functools.partial(_under_root, image_dir),
        )
    for name, (dirname, split, year) in _BUILTIN_VOC.items():
        DatasetCatalog.register(name, functools.partial(_load_builtin_voc, name))
        meta = MetadataCatalog.get(name)
        meta.set(thing_classes=list(VOC_CLASSES), split=split, year=year, evaluator_type="voc")
        meta.set_lazy(dirname=functools.partial(_under_root, dirname))
    DatasetCatalog.register("voc_0712_trainval", _load_voc_0712)
    MetadataCatalog.get("voc_0712_trainval").set(
        thing_classes=list(VOC_CLASSES),
        split="trainval",
        year=2012,
        evaluator_type="voc",
        components=["voc_2007_trainval", "voc_2012_trainval"],
    )

    for split in BCCD_SPLITS:
        name = f"bccd_{split}"
        DatasetCatalog.register(name, functools.partial(_load_bccd, split))
        meta = MetadataCatalog.get(name)
        # year != 2007: the exact (area under the curve) AP is the headline metric.
        meta.set(thing_classes=list(BCCD_CLASSES), split=split, year=2012, evaluator_type="voc")
        meta.set_lazy(dirname=functools.partial(_under_root, BCCD_DIRNAME))

    shapes_ids = {i + 1: i for i in range(len(SHAPES_CLASSES))}
    for split in ("train", "val"):
        name = f"litedet_shapes_{split}"
        DatasetCatalog.register(name, functools.partial(_load_shapes, split, "coco"))
        meta = MetadataCatalog.get(name)
        meta.set(thing_classes=list(SHAPES_CLASSES), thing_dataset_id_to_contiguous_id=shapes_ids, evaluator_type="coco")
        meta.set_lazy(
            json_file=functools.partial(_under_root, SHAPES_DIRNAME, "annotations", f"instances_{split}.json"),
            image_root=functools.partial(_under_root, SHAPES_DIRNAME, split, "images"),
        )
        name = f"litedet_shapes_voc_{split}"
        DatasetCatalog.register(name, functools.partial(_load_shapes, split, "voc"))
        meta = MetadataCatalog.get(name)
        # year != 2007: the exact (area under the curve) AP, not the 11-point one.
        meta.set(thing_classes=list(SHAPES_CLASSES), split=split, year=2012, evaluator_type="voc")
        meta.set_lazy(dirname=functools.partial(_under_root, SHAPES_DIRNAME, "VOC"))


register_all_builtin()
