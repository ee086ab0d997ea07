"""detectron2's training / evaluation loop with litedet's parts registered and its config
keys added: detectron2's ``tools/train_net.py`` without the two-line edit.

    python -m detection.d2.train_net --num-gpus 8 \\
        --config-file configs/detectron2/lighthead_shufflenet_v2_1.0x.yaml
    python -m detection.d2.train_net --eval-only \\
        --config-file configs/detectron2/lighthead_shufflenet_v2_1.0x.yaml MODEL.WEIGHTS model_final.pth

Same flags as detectron2's (``--config-file``, ``--resume``, ``--eval-only``,
``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``, trailing ``KEY
VALUE`` overrides), plus ``--register-coco NAME JSON IMAGE_ROOT`` (repeatable) for a
dataset in COCO-json form that is not one of detectron2's built-in names. Evaluation uses
the dataset's ``evaluator_type``: COCO (``coco``) or Pascal VOC (``pascal_voc``). Before
training, every DATASETS.TEST dataset must list the classes of DATASETS.TRAIN in the same
order (`detection.model_info.match_classes`; detectron2's evaluators cannot remap labels;
detectron2's checkpoints record no class names, so ``--eval-only`` cannot check them).
"""
from __future__ import annotations

import argparse
import os
from typing import List, Optional, Sequence

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, PascalVOCDetectionEvaluator, verify_results

from detection.model_info import ClassMismatchError, describe_classes, match_classes

from .config import add_litedet_config

__all__ = ["D2Trainer", "setup", "main", "build_parser"]


class D2Trainer(DefaultTrainer):
    """detectron2's `DefaultTrainer` with an evaluator chosen from the dataset's ``evaluator_type``
    (litedet's own training loop is `detection.engine.Trainer`)."""

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None) -> DatasetEvaluator:
        kind = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if kind == "coco":
            return COCOEvaluator(dataset_name, output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))
        if kind == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        raise ValueError(
            f"dataset {dataset_name!r} has evaluator_type {kind!r}; detection.d2.train_net evaluates 'coco' "
            "(COCO json, e.g. --register-coco) and 'pascal_voc' datasets"
        )


def register_datasets(registrations: Sequence[Sequence[str]]) -> None:
    """``--register-coco NAME JSON IMAGE_ROOT`` entries, checked before any work starts."""
    for name, json_file, image_root in registrations:
        for what, path in (("annotation file", json_file), ("image folder", image_root)):
            if not os.path.exists(path):
                raise FileNotFoundError(f"--register-coco {name}: {what} {path} does not exist")
        if name in DatasetCatalog.list():
            raise ValueError(f"--register-coco {name}: a dataset of that name is already registered (detectron2 built-in?)")
        register_coco_instances(name, {}, json_file, image_root)


def _classes(name: str) -> Optional[List[str]]:
    classes = MetadataCatalog.get(name).get("thing_classes", None)
    if classes is None:
        DatasetCatalog.get(name)  # detectron2's COCO loader records them while reading the json
        classes = MetadataCatalog.get(name).get("thing_classes", None)
    return None if classes is None else list(classes)


def check_test_classes(cfg: CfgNode) -> None:
    """Every DATASETS.TEST dataset lists the classes of DATASETS.TRAIN[0] in the same order
    (`ClassMismatchError` otherwise): its labels are the model's."""
    if not len(cfg.DATASETS.TRAIN):
        return
    trained = _classes(cfg.DATASETS.TRAIN[0])
    for name in cfg.DATASETS.TEST if trained is not None else ():
        classes = _classes(name)
        if classes is None:
            continue
        model = f"the model's training set, DATASETS.TRAIN dataset {cfg.DATASETS.TRAIN[0]!r},"
        if match_classes(trained, classes, model=model, dataset=f"DATASETS.TEST dataset {name!r}") is not None:
            raise ClassMismatchError(
                f"DATASETS.TEST dataset {name!r} lists the classes of DATASETS.TRAIN dataset "
                f"{cfg.DATASETS.TRAIN[0]!r} in another order "
                f"({describe_classes(classes)} vs {describe_classes(trained)}); detectron2's evaluators score labels "
                "by the test set's order: register it with the training order"
            )


def setup(args: argparse.Namespace) -> CfgNode:
    cfg = get_cfg()
    add_litedet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args: argparse.Namespace):
    register_datasets(args.register_coco or [])
    cfg = setup(args)
    if args.eval_only:
        model = D2Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = D2Trainer.test(cfg, model)
        if cfg.TEST.EXPECTED_RESULTS:
            verify_results(cfg, results)
        return results
    check_test_classes(cfg)
    trainer = D2Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser()
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-json dataset under NAME (use it in DATASETS.TRAIN / DATASETS.TEST); repeatable",
    )
    return parser


def cli(argv: Optional[List[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.config_file:
        parser.error("--config-file is required")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    cli()
