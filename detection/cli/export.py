r"""Export a detector (or its backbone / dense part) to ONNX, TorchScript or ncnn, and
check the export against PyTorch on the same input.

    python tools/export.py --config-file configs/quickstart/lighthead_shufflenet_v2_shapes.yaml \
        --format onnx --output export/ --input 256x320 MODEL.WEIGHTS model_final.pth

Parts: the full detector (default; ONNX / TorchScript: image in, boxes/scores/labels
out), ``--backbone-only`` (feature maps), ``--dense`` (backbone + neck + RPN head
convolutions). ncnn (via pnnx, for ARM boards) takes the backbone or the dense part.
The exported graph has a fixed input size (``--input HxW``, default from
INPUT.MIN_SIZE_TEST): resize images to it, channels in INPUT.FORMAT order, values 0-255.
Writes DIR/<part>.<ext> and DIR/<part>.json (input size and format, outputs, class
names, check result). The class names are those MODEL.WEIGHTS records (training writes
them into every checkpoint), else the first DATASETS.TEST dataset's (any registered one:
the config's DATASETS.REGISTER_* are registered); a DATASETS.TEST dataset with other
classes than the checkpoint's is refused. MODEL.WEIGHTS must fill every tensor of the model
(an export of partly random weights is refused). Exit status: 0 exported and checked, 1
export or check failed, 2 bad input (config, weights, output folder, sample image).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from backbones.checkpoint_io import atomic_write
from detection.checkpoint import CheckpointError
from detection.config import ConfigError, load_config
from detection.data.errors import DATA_ERRORS

from .common import OutputPathError, check_output_folder

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a detector to ONNX / TorchScript / ncnn and check it against PyTorch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the config YAML")
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript", "ncnn"], help="export format")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--input", default="", metavar="HxW", help="fixed input size (default: from INPUT.MIN_SIZE_TEST)")
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--backbone-only", action="store_true", help="export the backbone's feature maps only")
    part.add_argument("--dense", action="store_true", help="export backbone + neck + RPN head (no NMS / RoIAlign)")
    parser.add_argument("--sample-image", default="", metavar="IMG", help="image for the parity check (default: synthetic)")
    parser.add_argument("--fuse", action="store_true", help="export the fused model (model.fuse(): BN folded), when available")
    parser.add_argument("--fp16", action="store_true", help="ncnn: store weights in fp16 (half the size; check at 1e-2)")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
        help="config overrides, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = os.path.basename(sys.argv[0]) or "export.py"

    def fail(message: str, code: int = 2) -> int:
        print(f"{prog}: error: {message}", file=sys.stderr)
        return code

    from detection.engine import check_config, setup_logger

    setup_logger()  # project console format on stdout; errors stay one line on stderr
    if not os.path.isfile(args.config_file):
        return fail(f"--config-file {args.config_file} does not exist")
    try:
        cfg = load_config(args.config_file, args.opts or [])
        # registers DATASETS.REGISTER_*, and checks the classes MODEL.WEIGHTS records against DATASETS.TEST
        check_config(cfg, train=False, test=True)
    except ConfigError as err:
        return fail(f"config error: {err}")
    except DATA_ERRORS as err:  # a DATASETS.TEST annotation file read for its class names
        return fail(f"data error: {err}")
    part = "backbone" if args.backbone_only else "dense" if args.dense else "detector"
    if args.format == "ncnn" and part == "detector":
        return fail("ncnn takes convolutional graphs: add --backbone-only or --dense (NMS and RoIAlign stay on the host)")
    if args.fp16 and args.format != "ncnn":
        return fail(f"--fp16 (fp16 weights) applies to --format ncnn; {args.format} exports are written in fp32")
    if cfg.MODEL.WEIGHTS and not os.path.isfile(cfg.MODEL.WEIGHTS):
        return fail(f"MODEL.WEIGHTS: checkpoint file not found: {cfg.MODEL.WEIGHTS}")
    try:
        check_output_folder(args.output, "--output")
    except OutputPathError as err:
        return fail(str(err))

    import torch

    from detection.deploy import (
        ExportError, check_export, deployable, example_tensor, export_module, fuse_for_deploy, input_size,
        load_runtime, load_trained_detector, sample_image,
    )
    from detection.engine.predictor import class_names_for

    try:
        model, info = load_trained_detector(cfg)
        class_names = class_names_for(cfg, info.thing_classes if info else None)
    except (CheckpointError, ConfigError, ValueError) as err:
        return fail(str(err))
    if any(p.device.type != "cpu" for p in model.parameters()):
        # the example input, the tracer and the runtimes of the check are on the CPU; the
        # exported file does not depend on the device it was traced on
        logger.info("MODEL.DEVICE %s: exporting from the CPU", cfg.MODEL.DEVICE)
        model = model.cpu()
    if args.fuse:
        model = fuse_for_deploy(model)  # NCHW graphs for the exporters
    try:
        height, width = input_size(cfg, part, model.transform.size_divisibility, args.input)
    except ValueError as err:
        return fail(f"--input: {err}")
    if args.sample_image:
        from detection.data.errors import BadSampleError
        from detection.data.images import read_image

        try:
            image = read_image(args.sample_image, format="BGR")  # as training and evaluation decode it
        except BadSampleError as err:
            return fail(f"--sample-image {err}")
    else:
        image = sample_image(height, width)
    example = example_tensor(image, height, width, cfg.INPUT.FORMAT)
    module, output_names = deployable(model, part)

    with torch.no_grad():  # the in-process caller keeps its own autograd state
        start = time.perf_counter()
        try:
            paths = export_module(module, example, args.format, args.output, part, output_names, fp16=args.fp16)
        except ExportError as err:
            # stderr keeps the one-line error; the cause's full traceback goes to the log for a bug report
            logger.error("%s export of the %s failed", args.format, part, exc_info=err)
            return fail(str(err), 1)
        print(f"Exported {part} ({cfg.MODEL.META_ARCHITECTURE}, {cfg.MODEL.BACKBONE.NAME}, input 1x3x{height}x{width}) "
              f"to {args.format} in {time.perf_counter() - start:.1f} s: {', '.join(paths)}")
        check = None
        if not args.no_check:
            runner = load_runtime(args.format, paths, threads=1)
            tol = 1e-2 if args.fp16 else 1e-3
            check = check_export(part, module, example, runner, rtol=tol, atol=tol)
            print(f"Check {args.format} vs PyTorch on the same 1x3x{height}x{width} input: {check.message}")

    meta = {
        "part": part, "format": args.format, "fused": bool(args.fuse), "files": [os.path.basename(p) for p in paths],
        "config_file": os.path.abspath(args.config_file), "weights": cfg.MODEL.WEIGHTS,
        "input": {"shape": [1, 3, height, width], "channel_order": cfg.INPUT.FORMAT, "range": "0-255, not normalised"},
        "outputs": output_names, "class_names": class_names,
        "check": None if check is None else {"ok": check.ok, "message": check.message},
    }
    atomic_write(os.path.join(args.output, f"{part}.json"), json.dumps(meta, indent=2))
    if check is not None and not check.ok:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
