r"""Run a trained detector on images, videos or a webcam and write annotated copies
(detectron2's demo UX).

    python tools/demo.py --config-file configs/quickstart/lighthead_shufflenet_v2_shapes.yaml \
        --input photo.jpg 'more/*.png' some_folder/ street.avi --output annotated/ \
        --confidence-threshold 0.5 MODEL.WEIGHTS output/quickstart/lighthead_shufflenet_v2_shapes/model_final.pth
    python tools/demo.py --config-file CFG --webcam 0 --output out/ --max-frames 300 MODEL.WEIGHTS W

``--input`` takes image files, folders (their images, sorted), glob patterns and video
files (any format OpenCV reads: .avi, .mp4, .mov, .mkv, ...). ``--output`` is a folder
(created): one annotated image per input image (same file name); per video an annotated
video with the input's fps and frame size (OUT/<name>.avi for .avi input, else .mp4) and
OUT/<name>.json with one entry per frame (index, time in seconds, boxes in pixels, scores,
labels, class names; detections at or above the threshold). With exactly one input image
``--output`` may be a file name. ``--webcam N`` reads camera N until Ctrl-C or
``--max-frames`` (OUT/webcam<N>.mp4 + .json). Prints the achieved frames per second at
the end.

Class names come from MODEL.WEIGHTS (training records them in every checkpoint), else
from the first DATASETS.TEST dataset (any registered one: built-in, REGISTER_COCO,
REGISTER_VOC). A DATASETS.TEST dataset with other classes than the checkpoint's is
refused; with ``DATASETS.TEST "()"`` no dataset is needed (e.g. a folder of photos on a
machine without the training data).

A video whose header announces more frames than can be decoded (truncated or corrupt) is
processed up to the last readable frame, with a warning giving both counts (exit 0: the
frames written are valid); a header without a frame rate gets 30 fps, said in a warning.
The JSON records ``header_frame_count``, ``complete`` and ``fps_assumed``.

Errors (one line, exit 2): bad flag values (``--confidence-threshold`` outside [0, 1],
negative ``--max-frames``), unreadable video, folder or glob without images, no camera,
output folder not writable (or a file), an output that would overwrite an input,
MODEL.WEIGHTS of another architecture or other classes than DATASETS.TEST.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import time
from typing import Dict, Iterator, List, Sequence, Tuple

import cv2
import numpy as np

from backbones.checkpoint_io import atomic_write
from detection.checkpoint import CheckpointError
from detection.config import ConfigError, load_config
from detection.data.errors import DATA_ERRORS
from detection.engine import check_config, setup_logger

from .common import OutputPathError, check_output_file, check_output_folder, non_negative_int, probability

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
#: Frame rate assumed for a video (or camera) whose header gives none.
DEFAULT_FPS = 30.0


class DemoError(Exception):
    """Bad input or output: reported as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Detect objects in images, videos or a webcam stream and write annotated copies.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the config YAML")
    parser.add_argument("--input", nargs="+", default=[], help="image files, folders, glob patterns or video files")
    parser.add_argument("--webcam", type=non_negative_int, default=None, metavar="N", help="read camera N (0 = the first)")
    parser.add_argument("--output", required=True, help="output folder (or file, for a single input image)")
    parser.add_argument("--confidence-threshold", type=probability, default=0.5,
                        help="minimum score to draw, in [0, 1] (default 0.5)")
    parser.add_argument("--max-frames", type=non_negative_int, default=0, metavar="N",
                        help="stop each video / the webcam after N frames (default 0: all)")
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


def is_video(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


def collect_inputs(inputs: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Files, folders (images inside, sorted) and glob patterns -> (image paths, video paths).

    A folder or pattern without any image or video is an error (DemoError)."""
    images: List[str] = []
    videos: List[str] = []
    for spec in inputs:
        if os.path.isdir(spec):
            found = [os.path.join(spec, f) for f in sorted(os.listdir(spec))
                     if f.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)]
            if not found:
                raise DemoError(f"--input {spec}: folder has no images or videos")
        elif os.path.isfile(spec):
            found = [spec]
        else:
            found = sorted(p for p in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(p))
            found = [p for p in found if p.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)]
            if not found:
                what = "no such file" if not glob.has_magic(spec) else "pattern matches no images or videos"
                raise DemoError(f"--input {spec}: {what}")
        for p in found:
            target = videos if is_video(p) else images
            if p not in target:
                target.append(p)
    return images, videos


def collect_images(inputs: Sequence[str]) -> List[str]:
    """Image paths only (kept for callers that never pass videos)."""
    return collect_inputs(inputs)[0]


def iter_frames(paths: Sequence[str]) -> Iterator[Tuple[str, np.ndarray]]:
    """(path, BGR image) for every readable image, decoded as training and evaluation decode
    it (`detection.data.images.read_image`); unreadable files are reported and skipped."""
    from detection.data.errors import BadSampleError
    from detection.data.images import read_image

    for path in paths:
        try:
            img = read_image(path, format="BGR")
        except BadSampleError as err:
            logger.warning("%s; skipped", err)
            continue
        yield path, img


def open_video(source, name: str) -> Tuple[cv2.VideoCapture, np.ndarray]:
    """Open a video file or camera index and read its first frame (DemoError if either fails)."""
    cap = cv2.VideoCapture(source)
    first = None
    if cap.isOpened():
        ok, first = cap.read()
        if not ok or first is None:
            first = None
    if first is None:
        cap.release()
        if isinstance(source, int):
            raise DemoError(f"--webcam {source}: no camera could be opened at index {source}")
        raise DemoError(f"cannot read video {name}: OpenCV opened no frames (missing codec or not a video)")
    return cap, first


class VisualizationDemo:
    """Predictor + drawing, one BGR frame at a time (images, video frames, webcam)."""

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

    def frame_record(self, index: int, time_s: float, predictions) -> Dict[str, object]:
        """JSON-ready detections of one frame, those at or above the drawing threshold."""
        from detection.utils.visualizer import filter_predictions

        kept = filter_predictions(predictions, self.visualizer.score_threshold)
        names = self.visualizer.class_names
        labels = [int(v) for v in kept["labels"]]
        return {
            "index": index,
            "time": round(time_s, 4),
            "boxes": [[round(float(v), 2) for v in b] for b in kept["boxes"]],
            "scores": [round(float(v), 4) for v in kept["scores"]],
            "labels": labels,
            "class_names": [names[i] if names and 0 <= i < len(names) else f"class {i}" for i in labels],
        }


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


def video_output_path(output_dir: str, source_name: str, used: set) -> Tuple[str, int]:
    """OUT/<stem>.avi (MJPG) for .avi sources, else OUT/<stem>.mp4 (mp4v): codecs every
    OpenCV build writes. Returns (path, fourcc)."""
    stem, ext = os.path.splitext(os.path.basename(source_name))
    ext, codec = (".avi", "MJPG") if ext.lower() == ".avi" else (".mp4", "mp4v")
    name, k = stem, 1
    while name in used:
        name = f"{stem}_{k}"
        k += 1
    used.add(name)
    return os.path.join(output_dir, name + ext), cv2.VideoWriter_fourcc(*codec)


def check_not_overwriting(inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """DemoError if an output path is one of the inputs (an --output folder that holds
    them): the video writer would truncate a file still being read."""
    sources = {os.path.realpath(p): p for p in inputs}
    for out in outputs:
        if os.path.realpath(out) in sources:
            raise DemoError(f"output {out} would overwrite the input {sources[os.path.realpath(out)]}: "
                            "choose another --output folder")


def check_output(output: str, single_file: bool) -> None:
    """DemoError unless ``--output`` can be written: a folder (created), or with
    ``single_file`` an image file name."""
    try:
        if single_file:
            check_output_file(output, "--output", IMAGE_EXTENSIONS)
        else:
            check_output_folder(output, "--output")
    except OutputPathError as err:
        raise DemoError(str(err)) from None


def video_fps(cap: cv2.VideoCapture, name: str) -> Tuple[float, bool]:
    """The frame rate of an opened video (or camera) and whether it was assumed: a header
    without one (0 or NaN, e.g. cameras and some containers) gets `DEFAULT_FPS`, said in a
    warning since the output video's speed and the frame times depend on it."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    if fps and fps == fps and 0 < fps < float("inf"):
        return float(fps), False
    logger.warning("%s: the header gives no frame rate (%s); assuming %g fps for the output video and frame times",
                   name, fps, DEFAULT_FPS)
    return DEFAULT_FPS, True


def run_video(demo: VisualizationDemo, source, name: str, out_path: str, fourcc: int, max_frames: int) -> Tuple[int, float, List[float]]:
    """Annotate every frame of ``source`` (file path or camera index) into ``out_path`` and
    its detections into ``<out_path stem>.json``. Returns (frames, wall seconds, model seconds)."""
    from tqdm import tqdm

    cap, frame = open_video(source, name)
    fps, fps_assumed = video_fps(cap, str(name))
    height, width = frame.shape[:2]
    header_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not isinstance(source, int) else 0
    header_count = max(header_count, 0)
    total = header_count
    if max_frames > 0:
        total = min(total, max_frames) if total > 0 else max_frames
    writer = cv2.VideoWriter(out_path, fourcc, fps, (width, height))
    if not writer.isOpened():
        cap.release()
        raise DemoError(f"cannot create video {out_path} (OpenCV has no writer for this format)")
    frames: List[Dict[str, object]] = []
    model_times: List[float] = []
    bar = tqdm(total=total or None, desc=os.path.basename(str(name)), unit="frame", disable=not sys.stderr.isatty())
    start = time.perf_counter()
    index = 0
    stopped_early = False
    try:
        while frame is not None:
            predictions, vis, seconds = demo.run_on_image(frame)
            model_times.append(seconds)
            writer.write(vis)
            frames.append(demo.frame_record(index, index / fps, predictions))
            index += 1
            bar.update(1)
            if max_frames > 0 and index >= max_frames:
                stopped_early = True
                break
            ok, frame = cap.read()
            frame = frame if ok else None
    except KeyboardInterrupt:  # webcam: Ctrl-C ends the stream, files are still finalised
        stopped_early = True
        logger.info("interrupted after %d frames", index)
    finally:
        wall = time.perf_counter() - start
        bar.close()
        writer.release()
        cap.release()
    complete = stopped_early or header_count <= 0 or index >= header_count
    if not complete:
        logger.warning(
            "%s: read %d of the %d frames its header announces (truncated or corrupt video?); "
            "the output holds the %d frames read", name, index, header_count, index,
        )
    record = {
        "source": str(name), "output": os.path.abspath(out_path), "fps": fps, "fps_assumed": fps_assumed,
        "width": width, "height": height, "num_frames": index, "header_frame_count": header_count or None,
        "complete": complete, "score_threshold": demo.visualizer.score_threshold,
        "class_names": demo.visualizer.class_names, "frames": frames,
    }
    atomic_write(os.path.splitext(out_path)[0] + ".json", json.dumps(record))
    return index, wall, model_times


def _fps_line(what: str, done: int, total: float, times: List[float], device: str) -> str:
    steady = times[1:] if done >= 3 else times  # the first call includes one-off warm-up
    return (
        f"Processed {done} {what} in {total:.2f} s ({done / max(total, 1e-9):.2f} fps end to end); model "
        f"(preprocess + forward) {len(steady) / max(sum(steady), 1e-9):.2f} fps"
        f"{' after the first (warm-up) frame' if steady is not times else ''} on {device}"
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = os.path.basename(sys.argv[0]) or "demo.py"
    setup_logger()
    try:
        cfg = setup_cfg(args)
    except ConfigError as err:
        print(f"{prog}: config error: {err}", file=sys.stderr)
        return 2
    except DATA_ERRORS as err:  # a DATASETS.TEST annotation file read for its class names
        print(f"{prog}: data error: {err}", file=sys.stderr)
        return 2
    try:
        if not args.input and args.webcam is None:
            raise DemoError("give --input (images, folders, globs, videos) or --webcam N")
        images, videos = collect_inputs(args.input)
        single_file = len(images) == 1 and not videos and args.webcam is None and \
            os.path.splitext(args.output)[1].lower() in IMAGE_EXTENSIONS and not os.path.isdir(args.output)
        check_output(args.output, single_file)
        image_outputs = _output_paths(images, args.output) if images else []
        sources: List[Tuple[object, str]] = [(v, v) for v in videos]
        if args.webcam is not None:
            sources.append((args.webcam, f"webcam{args.webcam}.mp4"))
        used: set = set()
        video_outputs = [video_output_path(args.output, name, used) for _, name in sources]
        check_not_overwriting(images + videos, image_outputs + [path for path, _ in video_outputs])
        # Fail on an unreadable video before spending time on the model.
        for source in videos + ([args.webcam] if args.webcam is not None else []):
            cap, _ = open_video(source, str(source))
            cap.release()
    except DemoError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    try:
        demo = VisualizationDemo(cfg, args.confidence_threshold)
    except (CheckpointError, ConfigError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    device = cfg.MODEL.DEVICE
    if images:
        outputs = dict(zip(images, image_outputs))
        times: List[float] = []
        start = time.perf_counter()
        for path, img in tqdm(iter_frames(images), total=len(images), desc="demo", unit="img",
                              disable=not sys.stderr.isatty()):
            predictions, vis, seconds = demo.run_on_image(img)
            times.append(seconds)
            n = demo.visualizer.count(predictions)
            logger.info("%s: %d detection(s) >= %.2f in %.3f s", path, n, args.confidence_threshold, seconds)
            ok, encoded = cv2.imencode(os.path.splitext(outputs[path])[1], vis)
            if not ok:
                print(f"{prog}: error: cannot encode {outputs[path]}", file=sys.stderr)
                return 1
            try:
                atomic_write(outputs[path], encoded.tobytes())
            except OSError as err:
                print(f"{prog}: error: cannot write {outputs[path]}: {err.strerror or err}", file=sys.stderr)
                return 1
        total = time.perf_counter() - start
        if not times:
            print(f"{prog}: error: none of the inputs could be read as an image", file=sys.stderr)
            return 2
        print(_fps_line("image(s)", len(times), total, times, device))
        where = os.path.abspath(args.output)
        print(f"Annotated images written to {where}")

    for (source, name), (out_path, fourcc) in zip(sources, video_outputs):
        try:
            done, wall, model_times = run_video(demo, source, name, out_path, fourcc, args.max_frames)
        except DemoError as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2
        print(_fps_line(f"frame(s) of {name}", done, wall, model_times, device))
        print(f"Annotated video written to {out_path}; detections per frame in {os.path.splitext(out_path)[0]}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
