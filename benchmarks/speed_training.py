"""Training throughput of litedet against torchvision, and data-loader throughput.

1. Model: images/s of full SGD training steps (forward with losses, backward, optimizer
   step; train mode) of our Light-Head R-CNN (config below, ShuffleNet v2 0.5x, 512 px
   short side) against torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` (weights=None,
   weights_backbone=None, 81 classes). Both models get the very same batches (8 images
   decoded and augmented once by our DatasetMapper; ground-truth boxes included), the same
   optimizer (SGD, momentum 0.9, constant LR) and the same number of torch threads. Timing
   is interleaved: blocks of steps alternate between the two models (order swapped every
   block) so that load changes on a shared machine hit both alike; the median step time of
   each model gives its images/s.

   torchvision's model resizes inside (``GeneralizedRCNNTransform``: short side to
   ``min_size``, long side capped at ``max_size``; the "320" model defaults to 320/640).
   The fair setting is the same input size as ours, so it is built with
   ``min_size=512, max_size=1024``: the 512 x 683 batch images pass through at scale 1.0
   (its interpolate call still runs, as it would in its training). Our model does no
   resizing inside (the mapper resized already); it pads to a multiple of 32.

2. Data: images/s delivered by our real training loader (``build_detection_train_loader``:
   JPEG decode, DatasetMapper with the albumentations pipeline resize + flip, batching) with
   2 worker processes on a generated litedet_shapes dataset of 600 x 800 JPEGs, against the
   images/s the model consumes (measured in part 1). Target: >= 3x. The two are measured
   one after the other, not concurrently (on a 2-core machine they would share the cores).

3. ``--roi-selection``: the cost of Light-Head R-CNN's training RoIs as its authors choose
   them, every post-NMS proposal (up to 2000 per image) plus the ground truth
   (``MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE -1``, the shipped config), against 512 sampled
   RoIs per image at 25% foreground (``512``). Same model weights, batches and OHEM, timed
   interleaved as in 1 (instead of the torchvision comparison); reports images/s of both
   and the RoIs per image the head trained on.

Run: ``.venv/bin/python benchmarks/speed_training.py`` (about 2-3 minutes on 2 cores;
``--long`` for more blocks; ``--roi-selection --skip-loader`` for 3). Results are recorded
in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List

import torch

from detection.deploy.benchmark import ratio_line, report_header

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_CONFIG = "configs/COCO-LightHead/lighthead_shufflenet_v2_0.5x.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=DEFAULT_CONFIG, help=f"our model's config (default {DEFAULT_CONFIG})")
    p.add_argument("--size", type=int, default=512, help="short side of the training images (default 512)")
    p.add_argument("--batch", type=int, default=8, help="images per step (default 8)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the model steps (default 2)")
    p.add_argument("--blocks", type=int, default=2, help="interleaved blocks per model (default 2)")
    p.add_argument("--steps-per-block", type=int, default=2, help="timed steps per block (default 2)")
    p.add_argument("--long", action="store_true", help="6 blocks of 3 steps and 40 loader batches (several times longer)")
    p.add_argument("--loader-batches", type=int, default=15, help="timed loader batches (default 15)")
    p.add_argument("--workers", type=int, default=2, help="data-loader workers (default 2)")
    p.add_argument("--skip-loader", action="store_true", help="only the model comparison")
    p.add_argument(
        "--roi-selection", action="store_true",
        help="time our model with every proposal as a training RoI (-1) against 512 sampled RoIs per image",
    )
    p.add_argument("--data-root", default=None, help="where to generate the dataset (default: a temporary folder)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for our model, KEY VALUE ...")
    return p


def our_config(args: argparse.Namespace, data_name: str, json_file: str, image_root: str):
    from detection.config import load_config

    # From scratch with trainable BatchNorm and no frozen stage, as torchvision's model is
    # built with weights_backbone=None (its BatchNorm trains, all its layers train).
    overrides = [
        "MODEL.DEVICE", "cpu",
        "MODEL.BACKBONE.NORM", "BN",
        "MODEL.BACKBONE.FREEZE_AT", "0",
        "INPUT.MIN_SIZE_TRAIN", f"({args.size},)",
        "INPUT.MAX_SIZE_TRAIN", str(args.size * 2),
        "SOLVER.IMS_PER_BATCH", str(args.batch),
        "DATALOADER.NUM_WORKERS", str(args.workers),
        "DATASETS.REGISTER_COCO", f"[['{data_name}', '{json_file}', '{image_root}']]",
        "DATASETS.TRAIN", f"('{data_name}',)",
        "DATASETS.TEST", "()",
        "SEED", "0",
        *args.opts,
    ]
    return load_config(os.path.join(REPO_ROOT, args.config_file), overrides), overrides


def make_dataset(root: str, num_images: int) -> tuple:
    """Generate the JPEGs in a subprocess: OpenCV work in this process before the loader
    forks its workers can leave the workers deadlocked in ``cv2.setNumThreads`` (seen here
    with torch threads set to 2: the worker blocks in a pthread_join inside cv2)."""
    import subprocess

    from detection.data.shapes import shapes_paths

    cmd = [sys.executable, "-m", "detection.data.shapes", "--root", root, "--num-train", str(num_images),
           "--num-val", "1", "--image-size", "600", "800", "--seed", "0"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"generating the benchmark dataset failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    paths = shapes_paths(root)
    return paths.json_file("train"), paths.image_dir("train")


def reference_model(size: int, num_classes: int) -> torch.nn.Module:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    return fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes + 1, min_size=size, max_size=size * 2
    )


def train_step_fn(model: torch.nn.Module, forward: Callable[[], Dict[str, torch.Tensor]]) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.002, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        losses = forward()
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss {losses}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return step


def interleaved(steps: Dict[str, Callable[[], None]], blocks: int, steps_per_block: int) -> Dict[str, List[float]]:
    """Step times of each contestant: one warm-up step each, then ``blocks`` blocks of
    ``steps_per_block`` steps per contestant, the order reversed every other block."""
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up: allocator, first-call overheads
        step()
    order = list(steps)
    for block in range(blocks):
        for name in order if block % 2 == 0 else order[::-1]:
            for _ in range(steps_per_block):
                t = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - t)
        medians = ", ".join(f"{k} median {statistics.median(v):.3f} s/step" for k, v in times.items())
        print(f"  block {block + 1}/{blocks}: {medians}", flush=True)
    return times


def roi_selection_contestants(cfg, model: torch.nn.Module, batches: list):
    """Two copies of ``model`` (same weights) whose RoI heads train on every proposal
    (``batch_size_per_image`` -1) and on 512 sampled RoIs per image; their train steps and
    the per-image RoI counts each one's head trained on."""
    import copy

    from detection.modeling.roi_heads import KeepAllSampler
    from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

    sampled = copy.deepcopy(model)
    sampled.roi_heads.fg_bg_sampler = BalancedPositiveNegativeSampler(512, cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION)
    model.roi_heads.fg_bg_sampler = KeepAllSampler()
    contestants = {"all proposals (-1)": model, "sampled 512": sampled}
    rois: Dict[str, List[int]] = {name: [] for name in contestants}
    steps = {}
    for name, m in contestants.items():
        select = m.roi_heads.select_training_samples

        def recording(proposals, targets, select=select, counts=rois[name]):
            out = select(proposals, targets)
            counts.extend(len(r) for r in out[0])
            return out

        m.roi_heads.select_training_samples = recording
        position = {"i": 0}

        def forward(m=m, position=position):
            position["i"] += 1
            return m(batches[position["i"] % len(batches)])

        steps[name] = train_step_fn(m, forward)
    return steps, rois


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.long:
        args.blocks, args.steps_per_block, args.loader_batches = 6, 3, 40
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen
    torch.manual_seed(0)
    from detection.data import build_detection_train_loader
    from detection.modeling import build_model

    torch.set_num_threads(args.threads)  # for the header; set again after the loader test
    # The benchmark data has 5 classes while the COCO config has 80: expected, not worth a warning.
    logging.getLogger("detection.data").setLevel(logging.ERROR)
    print(report_header(
        "Training throughput: Light-Head R-CNN, every proposal vs 512 sampled RoIs per image" if args.roi_selection
        else "Training throughput: litedet Light-Head R-CNN vs torchvision Faster R-CNN MobileNetV3-320-FPN"
    ))
    tmp = None
    if args.data_root is None:
        tmp = tempfile.TemporaryDirectory(prefix="litedet_bench_")
        args.data_root = tmp.name
    n_images = max(48, args.batch * 6)
    t0 = time.perf_counter()
    json_file, image_root = make_dataset(args.data_root, n_images)
    print(f"dataset: litedet_shapes, {n_images} JPEGs of 800x600 under {args.data_root} "
          f"(generated in {time.perf_counter() - t0:.1f} s)")
    cfg, overrides = our_config(args, "bench_shapes_train", json_file, image_root)
    shown = [f"{k} {v}" for k, v in zip(overrides[::2], overrides[1::2]) if not k.startswith("DATASETS.")]
    print(f"ours: {args.config_file} + {' '.join(shown)}")
    print(f"      ({cfg.MODEL.META_ARCHITECTURE}, {cfg.MODEL.BACKBONE.NAME}, norm {cfg.MODEL.BACKBONE.NORM}, "
          f"RPN pre/post NMS train {cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN}/{cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN}, "
          f"RoIs/image {cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE}, OHEM {cfg.MODEL.LIGHT_HEAD.OHEM_TOPK if cfg.MODEL.LIGHT_HEAD.OHEM else 0}, "
          f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES} classes)")
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if not args.roi_selection:
        print(f"reference: torchvision fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, "
              f"num_classes={num_classes + 1}, min_size={args.size}, max_size={args.size * 2}) "
              "(all layers train, BatchNorm trains; RPN pre/post NMS train 2000/2000 per level, 512 RoIs/image)")
    print(f"both: train mode, batch {args.batch}, SGD lr 0.002 momentum 0.9 wd 1e-4, {args.threads} torch threads, "
          f"the same {args.batch}-image batches (cycled), {args.blocks} interleaved blocks x {args.steps_per_block} steps")

    # Loader first, in a process that has not run multi-threaded torch work yet: forking
    # workers after the model steps is what a training loop never does, and the forked
    # copies of a multi-GiB process would only add noise.
    loader_ips = None
    if not args.skip_loader:
        loader = build_detection_train_loader(cfg)
        it = iter(loader)
        for _ in range(2):  # worker start-up and first batches are not throughput
            next(it)
        t = time.perf_counter()
        for _ in range(args.loader_batches):
            next(it)
        elapsed = time.perf_counter() - t
        loader.close()
        del it, loader
        loader_ips = args.loader_batches * args.batch / elapsed
        print(f"data loader: {args.workers} workers, decode 800x600 JPEG + DatasetMapper (resize to short side "
              f"{args.size}, flip) + batching of {args.batch}: {args.loader_batches} batches in {elapsed:.2f} s "
              f"= {loader_ips:.1f} images/s")

    torch.set_num_threads(args.threads)
    # The same mapped batches for both models (decoded/augmented once, outside the timing).
    loader = build_detection_train_loader(cfg.clone() if hasattr(cfg, "clone") else cfg)
    loader.num_workers = 0
    it = iter(loader)
    batches = [next(it) for _ in range(2)]
    loader.close()
    shapes = sorted({tuple(d["image"].shape[1:]) for b in batches for d in b})
    print(f"batch image sizes (HxW): {shapes}")

    ours = build_model(cfg).train()
    if args.roi_selection:
        steps, rois = roi_selection_contestants(cfg, ours, batches)
    else:
        counter = {"ours": 0, "reference": 0}

        def ours_forward():
            counter["ours"] += 1
            return ours(batches[counter["ours"] % len(batches)])

        ref = reference_model(args.size, num_classes).train()
        ref_batches = [
            (
                [d["image"] for d in b],
                [{"boxes": d["instances"]["boxes"], "labels": d["instances"]["labels"] + 1} for d in b],
            )
            for b in batches
        ]

        def ref_forward():
            counter["reference"] += 1
            images, targets = ref_batches[counter["reference"] % len(ref_batches)]
            return ref([im.float() / 255.0 for im in images], targets)

        steps = {"ours": train_step_fn(ours, ours_forward), "reference": train_step_fn(ref, ref_forward)}
    times = interleaved(steps, args.blocks, args.steps_per_block)
    ips = {k: args.batch / statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k} step times (s): min {min(v):.3f} median {statistics.median(v):.3f} max {max(v):.3f} (n={len(v)})")
    first, second = steps
    what = f"batch {args.batch}, {args.size} px, {args.threads} threads"
    if args.roi_selection:
        for k, counts in rois.items():
            print(f"{k}: training RoIs per image, mean {statistics.mean(counts):.0f} (min {min(counts)}, max {max(counts)})")
        fastest = {k: args.batch / min(v) for k, v in times.items()}
        for label, value in (("median step", ips), ("fastest step", fastest)):
            print(f"Light-Head training ({what}), {label}: {first} {value[first]:.4g} images/s, {second} "
                  f"{value[second]:.4g} images/s, ratio {value[first] / value[second]:.3g}")
    else:
        print(ratio_line(f"training throughput ({what})", ips["ours"], ips["reference"], "images/s", True, 1.5))
        # The fastest step of each is the least disturbed by other processes on a shared machine.
        print(ratio_line("training throughput from the fastest step of each", args.batch / min(times["ours"]),
                         args.batch / min(times["reference"]), "images/s", True, 1.5))

    if loader_ips is not None:
        print(ratio_line("data loading vs our model's consumption", loader_ips, ips["ours"], "images/s", True, 3.0,
                         labels=("loader delivers", "model consumes")))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
