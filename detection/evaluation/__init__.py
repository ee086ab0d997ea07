"""Evaluation: the inference loop, COCO and PASCAL VOC box evaluators, and ``build_evaluator``.

Typical use (detectron2 UX)::

    evaluator = build_evaluator(cfg, "voc_2007_test")
    results = inference_on_dataset(model, test_loader, evaluator)
    print_csv_format(results)

Results are ``{task: {metric: value}}`` with every AP in percent (0-100).
"""
from __future__ import annotations

import os
from typing import Any, Optional

from .coco_evaluation import COCOEvaluator, convert_to_coco_dict
from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    gather_to_main,
    get_rank,
    get_world_size,
    inference_context,
    inference_on_dataset,
    is_main_process,
)
from .metrics import create_small_table, print_csv_format, voc_ap, voc_eval_class
from .pascal_voc_evaluation import PascalVOCDetectionEvaluator

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "COCOEvaluator",
    "PascalVOCDetectionEvaluator",
    "build_evaluator",
    "convert_to_coco_dict",
    "create_small_table",
    "gather_to_main",
    "get_rank",
    "get_world_size",
    "inference_context",
    "inference_on_dataset",
    "is_main_process",
    "print_csv_format",
    "voc_ap",
    "voc_eval_class",
]

_EVALUATORS = {
    "coco": COCOEvaluator,
    "voc": PascalVOCDetectionEvaluator,
}


def build_evaluator(cfg: Any, dataset_name: str, output_dir: Optional[str] = None) -> DatasetEvaluator:
    """The evaluator named by the dataset's ``MetadataCatalog`` ``evaluator_type``.

    The choice lives in the dataset metadata rather than the config because it is a property
    of the annotations (COCO json vs VOC difficult flags), not of the experiment.
    ``output_dir`` defaults to ``<cfg.OUTPUT_DIR>/inference/<dataset_name>``, where the
    evaluators write their result files (nothing is written when cfg.OUTPUT_DIR is empty).
    """
    from detection.data import MetadataCatalog  # lazy: keeps `import detection.evaluation` light

    meta = MetadataCatalog.get(dataset_name)
    evaluator_type = getattr(meta, "evaluator_type", None)
    if output_dir is None and getattr(cfg, "OUTPUT_DIR", ""):
        output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if evaluator_type not in _EVALUATORS:
        known = ", ".join(repr(k) for k in _EVALUATORS)
        if evaluator_type is None:
            raise ValueError(
                f"dataset {dataset_name!r} has no evaluator_type in its metadata; set it to one of {known}"
            )
        raise ValueError(
            f"dataset {dataset_name!r} has evaluator_type {evaluator_type!r}, which litedet cannot evaluate; "
            f"known types: {known}"
        )
    return _EVALUATORS[evaluator_type](dataset_name, output_dir=output_dir)
