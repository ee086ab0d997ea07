"""litedet data: dataset catalogs, COCO/VOC loaders, the mapper, loaders, litedet_shapes.

Every loader returns records of one format, which the rest of litedet codes against::

    {"file_name": str, "image_id": int | str, "height": int, "width": int,
     "annotations": [{"bbox": [x1, y1, x2, y2],   # float, absolute pixels (XYXY)
                      "category_id": int,         # contiguous 0..K-1
                      "iscrowd": 0 | 1, "difficult": 0 | 1,
                      # COCO only, where set: "ignore": 1, "area": float (the json's)
                      }]}

A box with ``iscrowd``, ``difficult`` or ``ignore`` set is an ignore region for training and
evaluation alike (`detection.data.conventions`).

`DatasetMapper` turns a record into a model input; `build_detection_train_loader` /
`build_detection_test_loader` put the pieces together from a config. Importing this
package registers the built-in datasets without reading anything.
"""
from . import builtin  # noqa: F401  registers the built-in datasets
from .build import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from .catalog import (
    DatasetCatalog,
    Metadata,
    MetadataCatalog,
    get_data_root,
    register_coco_instances,
    register_from_cfg,
    register_pascal_voc,
)
from .coco import COCO_CATEGORIES, load_coco_json
from .common import MapDataset
from .errors import DatasetError, ProblemLog
from .loaders import TrainLoader, trivial_batch_collator
from .mapper import DatasetMapper
from .samplers import AspectRatioGroupedBatchSampler, InferenceSampler, TrainingSampler
from .shapes import SHAPES_CLASSES, ensure_shapes_dataset, generate_shapes_dataset
from .transforms import BadSampleError, ResizeShortestEdge, build_augmentations, read_image
from .voc import VOC_CLASSES, load_voc_instances

__all__ = [
    "AspectRatioGroupedBatchSampler",
    "BadSampleError",
    "COCO_CATEGORIES",
    "DatasetCatalog",
    "DatasetError",
    "DatasetMapper",
    "InferenceSampler",
    "MapDataset",
    "Metadata",
    "MetadataCatalog",
    "ProblemLog",
    "ResizeShortestEdge",
    "SHAPES_CLASSES",
    "TrainLoader",
    "TrainingSampler",
    "VOC_CLASSES",
    "build_augmentations",
    "build_detection_test_loader",
    "build_detection_train_loader",
    "ensure_shapes_dataset",
    "generate_shapes_dataset",
    "get_data_root",
    "get_detection_dataset_dicts",
    "load_coco_json",
    "load_voc_instances",
    "read_image",
    "register_coco_instances",
    "register_from_cfg",
    "register_pascal_voc",
    "trivial_batch_collator",
]
