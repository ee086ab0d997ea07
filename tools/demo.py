#!/usr/bin/env python
"""Run a trained detector on images and write annotated copies (detectron2's demo UX).

    python tools/demo.py --config-file configs/quickstart/lighthead_shufflenet_v2_shapes.yaml \
        --input photo.jpg 'more/*.png' some_folder/ --output annotated/ \
        --confidence-threshold 0.5 MODEL.WEIGHTS output/quickstart/lighthead_shufflenet_v2_shapes/model_final.pth

``--input`` takes files, folders (their images, sorted) and glob patterns. ``--output`` is a
folder (created; one annotated image per input, same file name), or a file name when
there is exactly one input image. Class names come from the first DATASETS.TEST
dataset's metadata. Prints the achieved frames per second at the end.

Input sources are produced by `iter_frames`; video files and webcams (another issue)
plug in there as further sources of (name, BGR frame) pairs.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from typing import Iterator, List, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from detection.checkpoint import CheckpointError  # noqa: E402
from detection.config import ConfigError, load_config  # noqa: E402
from detection.engine import check_config, setup_logger  # noqa: E402

logger = logging.getLogger("detection.tools.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Detect objects in images and write annotated copies.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[1],
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the config YAML")
    parser.add_argument("--input", nargs="+", required=True, help="image files, folders or glob patterns")
    parser.add_argument("--output", required=True, help="output folder (or file, for a single input image)")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="minimum score to draw (default 0.5)")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
        help="config overrides, e.g. MODEL.WEIGHTS model_final.pth MODEL.DEVICE cuda",
    )
    return parser


def setup_cfg(args):
    cfg = load_config(args.config_file, args.opts or [])
    cfg.defrost()
    # Boxes under the drawing threshold would be discarded anyway: skip them in the model.
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST, args.confidence_threshold)
    cfg.freeze()
    check_config(cfg, train=False, test=True)
    return cfg


def collect_images(inputs: Sequence[str]) -> List[str]:
    """Files, folders (images inside, sorted) and glob patterns -> image paths, in order."""
    paths: List[str] = []
    for spec in inputs:
        if os.path.isdir(spec):
            found = [
                os.path.join(spec, f) for f in sorted(os.listdir(spec)) if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
        elif os.path.isfile(spec):
            found = [spec]
        else:
            found = sorted(p for p in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(p))
            found = [p for p in found if p.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            logger.warning("--input %s: no images found", spec)
        paths.extend(p for p in found if p not in paths)
    return paths


def iter_frames(paths: Sequence[str]) -> Iterator[Tuple[str, np.ndarray]]:
    """(path, BGR image) for every readable image; unreadable files are reported and skipped."""
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            logger.warning("cannot read %s as an image; skipped", path)
            continue
        yield path, img


class VisualizationDemo:
    """Predictor + drawing, one BGR frame at a time (images now, video frames later)."""

    def __init__(self, cfg, confidence_threshold: float = 0.5) -> None:
        from detection.engine.predictor import DefaultPredictor
        from detection.utils.visualizer import Visualizer

        self.predictor = DefaultPredictor(cfg)
        self.visualizer = Visualizer(self.predictor.class_names, confidence_threshold, image_format="BGR")

    def run_on_image(self, image_bgr: np.ndarray):
        """Returns (predictions, annotated BGR image, seconds spent in the model)."""
        start = time.perf_counter()
        predictions = self.predictor(image_bgr, format="BGR")
        seconds = time.perf_counter() - start
        return predictions, self.visualizer.draw(image_bgr, predictions), seconds


def _output_paths(paths: Sequence[str], output: str) -> List[str]:
    if len(paths) == 1 and os.path.splitext(output)[1].lower() in IMAGE_EXTENSIONS and not os.path.isdir(output):
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        return [output]
    os.makedirs(output, exist_ok=True)
    out, used = [], set()
    for p in paths:
        name = os.path.basename(p)
        stem, ext = os.path.splitext(name)
        k = 1
        while name in used:  # same file name from two folders
            name = f"{stem}_{k}{ext}"
            k += 1
        used.add(name)
        out.append(os.path.join(output, name))
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    prog = os.path.basename(sys.argv[0]) or "demo.py"
    setup_logger()
    try:
        cfg = setup_cfg(args)
    except ConfigError as err:
        print(f"{prog}: config error: {err}", file=sys.stderr)
        return 2
    paths = collect_images(args.input)
    if not paths:
        print(f"{prog}: error: no images found in --input {' '.join(args.input)}", file=sys.stderr)
        return 2
    try:
        demo = VisualizationDemo(cfg, args.confidence_threshold)
    except CheckpointError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    outputs = dict(zip(paths, _output_paths(paths, args.output)))
    times: List[float] = []
    start = time.perf_counter()
    for path, img in tqdm(iter_frames(paths), total=len(paths), desc="demo", unit="img", disable=not sys.stderr.isatty()):
        predictions, vis, seconds = demo.run_on_image(img)
        times.append(seconds)
        n = demo.visualizer.count(predictions)
        logger.info("%s: %d detection(s) >= %.2f in %.3f s", path, n, args.confidence_threshold, seconds)
        if not cv2.imwrite(outputs[path], vis):
            print(f"{prog}: error: cannot write {outputs[path]}", file=sys.stderr)
            return 1
    total = time.perf_counter() - start
    done = len(times)
    if done == 0:
        print(f"{prog}: error: none of the inputs could be read as an image", file=sys.stderr)
        return 2
    steady = times[1:] if done >= 3 else times  # the first call includes one-off warm-up
    print(
        f"Processed {done} image(s) in {total:.2f} s ({done / total:.2f} fps end to end); model "
        f"(preprocess + forward) {len(steady) / max(sum(steady), 1e-9):.2f} fps"
        f"{' after the first (warm-up) image' if steady is not times else ''} on {cfg.MODEL.DEVICE}"
    )
    where = os.path.abspath(args.output)
    print(f"Annotated images written to {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
