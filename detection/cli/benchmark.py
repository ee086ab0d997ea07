r"""Measure inference latency on this machine: warm-up, then fixed iterations; median,
p10/p90 and images/s, with the CPU/GPU and library versions recorded beside them.

    # detector, PyTorch on CPU, 2 threads
    python tools/benchmark.py --config-file configs/quickstart/lighthead_shufflenet_v2_shapes.yaml --threads 2
    # the backbone through ONNX Runtime / ncnn at 480x640, one thread, results appended to files
    python tools/benchmark.py --config-file CFG --backbone-only --backend ncnn --threads 1 --input 480x640 \
        --json bench.json --csv bench.csv
    # the papers' protocols
    python tools/benchmark.py --config-file CFG --preset gpu-detector           # GPU, batch 4, 800x1200
    python tools/benchmark.py --backbone shufflenet_v2_1.0x --preset arm-224     # 1 thread, batch 1, ncnn
    # several models, one speed-vs-accuracy chart (AP from each OUTPUT_DIR/metrics_final.json)
    python tools/benchmark.py --sweep configs/a.yaml configs/b.yaml --chart sweep.png --json sweep.json

Parts: the whole detector (default), ``--backbone-only``, ``--dense`` (backbone + neck +
RPN head convs) or ``--classifier`` (classification form of ``--backbone NAME`` or of the
config's backbone). Backends: torch (eager), torchscript (traced), compile
(torch.compile), onnxruntime and ncnn (exported to a temporary folder first; ncnn runs
convolutional parts only, batch 1). Presets: {presets}.
A sweep file is YAML: a list of {{config, name, opts, metrics, accuracy}} entries
(``metrics``: a train_net output folder or metrics_final.json; default the config's
OUTPUT_DIR; ``accuracy``: a number that overrides it).

Output files are checked before anything is timed (exit 2, one line): ``--json`` /
``--csv`` must be new, empty, or a benchmark log this tool wrote (a JSON list of rows, a
CSV with its columns): any other file is left untouched; ``--chart`` must name a
.png/.svg/.pdf/.jpg file in a writable folder.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

from detection.deploy.benchmark import PRESETS

from .common import CHART_EXTENSIONS, OutputPathError, check_output_file, non_negative_int, positive_int

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "torchscript", "compile", "onnxruntime", "ncnn")
DEFAULTS = {"device": "cpu", "threads": 0, "batch": 1, "input": "", "backend": "torch", "iters": 20, "warmup": 5,
            "part": "detector"}


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__.format(presets=", ".join(PRESETS))
    parser = argparse.ArgumentParser(
        description="Time a detector, backbone or classifier on this machine.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc.split("\n\n", 1)[1],
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="detector config YAML")
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--backbone-only", dest="part", action="store_const", const="backbone", help="time the backbone only")
    part.add_argument("--dense", dest="part", action="store_const", const="dense", help="backbone + neck + RPN head")
    part.add_argument("--classifier", dest="part", action="store_const", const="classifier",
                      help="classification form (global pool + FC) of --backbone or the config's backbone")
    parser.add_argument("--backbone", default="", metavar="NAME", help="registered backbone variant (classifier form)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default cpu")
    parser.add_argument("--threads", type=non_negative_int, default=None, help="CPU threads (default 0: torch's default)")
    parser.add_argument("--batch", type=positive_int, default=None, help="images per call (default 1)")
    parser.add_argument("--input", default=None, metavar="HxW", help="input size (default: from the config, 224 for classifiers)")
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="default torch")
    parser.add_argument("--fp16", action="store_true", help="half precision (torch on CUDA, ncnn fp16 storage/arithmetic)")
    parser.add_argument("--fuse", action="store_true", help="call model.fuse() first when the model has one (BN folding)")
    parser.add_argument("--iters", type=positive_int, default=None, help="timed iterations (default 20)")
    parser.add_argument("--warmup", type=non_negative_int, default=None, help="untimed warm-up iterations (default 5)")
    parser.add_argument("--json", default="", metavar="PATH", help="append result rows to this JSON list")
    parser.add_argument("--csv", default="", metavar="PATH", help="append result rows to this CSV")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="a paper's protocol (options override it)")
    parser.add_argument("--sweep", nargs="+", default=None, metavar="LIST.yaml|CFG",
                        help="benchmark several configs (a YAML list or config files) and draw speed vs accuracy")
    parser.add_argument("--accuracy-key", default="bbox/AP", help="metric read from metrics_final.json (default bbox/AP)")
    parser.add_argument("--chart", default="", metavar="PNG", help="sweep chart path (default: sweep.png beside --json, or ./)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE", help="config overrides")
    return parser


def resolve_settings(args: argparse.Namespace) -> Dict[str, Any]:
    """Explicit options > preset > defaults."""
    preset = PRESETS.get(args.preset or "", {})
    settings = {}
    for key, default in DEFAULTS.items():
        value = getattr(args, key, None)
        settings[key] = value if value is not None else preset.get(key, default)
    if settings["part"] == "classifier" and not args.backbone and not args.config_file:
        raise UsageError("--classifier needs --backbone NAME or --config-file")
    if args.backbone and (args.config_file or args.sweep) and settings["part"] != "classifier":
        raise UsageError(f"--backbone {args.backbone} times a classifier (--classifier); for the detector's "
                         f"{settings['part']} give the override MODEL.BACKBONE.NAME {args.backbone} instead")
    if settings["part"] != "classifier" and not args.config_file and not args.sweep:
        if args.backbone:
            settings["part"] = "classifier" if settings["part"] == "detector" else settings["part"]
        else:
            raise UsageError("give --config-file (or --backbone NAME for a classifier benchmark)")
    if settings["part"] == "backbone" and not args.config_file and args.backbone:
        settings["part"] = "classifier_backbone"
    for key in ("batch", "iters"):
        if settings[key] < 1:
            raise UsageError(f"--{key} must be >= 1, got {settings[key]}")
    if settings["warmup"] < 0 or settings["threads"] < 0:
        raise UsageError("--warmup and --threads must be >= 0")
    return settings


# ----------------------------------------------------------------------------- targets
#: the deploy pipeline's format for each backend that runs an exported file
EXPORTED_FORMATS = {"torchscript": "torchscript", "onnxruntime": "onnx", "ncnn": "ncnn"}


def build_target(args, settings, config_file: str, opts: List[str]) -> Tuple[Any, Any, Any, str, Dict[str, Any]]:
    """(cfg or None, full model or None, deployable module, input size "HxW", description)."""
    import backbones
    import torch

    from detection.deploy import BackboneFeatures, deployable, fuse_for_deploy, input_size, load_detector, parse_size

    cfg = None
    if config_file:
        from detection.config import ConfigError, load_config

        if not os.path.isfile(config_file):
            raise UsageError(f"--config-file {config_file} does not exist")
        from detection.config_checks import check_trained_classes

        try:
            cfg = load_config(config_file, ["MODEL.DEVICE", "cpu", *opts])
            # MODEL.ROI_HEADS.NUM_CLASSES left unset takes the count MODEL.WEIGHTS records, as in the demo and export
            check_trained_classes(cfg, train=False, test=False)
        except ConfigError as err:
            raise UsageError(f"config error: {err}") from err
    part = settings["part"]
    # BN folded for every backend; NCHW for the exporters, channels-last for eager / compiled PyTorch
    channels_last = settings["backend"] in ("torch", "compile")
    if part in ("classifier", "classifier_backbone"):
        name = args.backbone or cfg.MODEL.BACKBONE.NAME
        try:
            model = backbones.build_classifier(name).eval()
        except (KeyError, ValueError) as err:
            raise UsageError(f"--backbone {name!r}: {err}") from err
        model = fuse_for_deploy(model, channels_last) if args.fuse else model
        module = model.eval() if part == "classifier" else BackboneFeatures(model.backbone, model.backbone.out_features).eval()
        size = settings["input"] or "224x224"
        desc = {"name": name, "model": f"{name} classifier" if part == "classifier" else name}
    else:
        from detection.checkpoint import CheckpointError

        try:
            model = load_detector(cfg)
        except (CheckpointError, ValueError) as err:
            raise UsageError(str(err)) from err
        model = fuse_for_deploy(model, channels_last) if args.fuse else model
        module, _ = deployable(model, part)
        try:
            height, width = input_size(cfg, part, model.transform.size_divisibility, settings["input"])
        except ValueError as err:
            raise UsageError(f"--input: {err}") from err
        size = f"{height}x{width}"
        desc = {"name": os.path.splitext(os.path.basename(config_file))[0],
                "model": f"{cfg.MODEL.META_ARCHITECTURE} {cfg.MODEL.BACKBONE.NAME}"}
    try:
        parse_size(size)
    except ValueError as err:
        raise UsageError(f"--input: {err}") from err
    return cfg, model, module, size, desc


def make_runner(settings, part: str, model, module, size: str, work_dir: str) -> Tuple[Callable[[], Any], Optional[Callable]]:
    """A zero-argument call that runs one batch on the chosen backend, and the sync function.
    The exported backends go through the deploy pipeline (`export_module`, `load_runtime`),
    so what is timed is what tools/export.py writes and checks."""
    import numpy as np
    import torch

    from detection.deploy import export_module, load_runtime, parse_size

    backend, device, batch, fp16 = settings["backend"], settings["device"], settings["batch"], settings["fp16"]
    h, w = parse_size(size)
    gen = torch.Generator().manual_seed(0)
    if part == "detector":
        x = torch.randint(0, 256, (batch, 3, h, w), generator=gen).float()  # 0-255 image, as the model expects
    else:
        x = torch.randn(batch, 3, h, w, generator=gen)
    if part == "detector" and backend in EXPORTED_FORMATS and batch != 1:
        raise UsageError(f"--backend {backend} exports the detector for batch 1; use --batch 1 or --backend torch")
    if backend == "ncnn":
        if part == "detector":
            raise UsageError("ncnn runs convolutional graphs: use --backbone-only, --dense or --classifier")
        if batch != 1:
            raise UsageError("ncnn runs one image at a time: use --batch 1")
        if device != "cpu":
            raise UsageError("the ncnn backend is timed on the CPU here (--device cpu)")
    if fp16 and backend == "onnxruntime":
        raise UsageError("--fp16 is not supported with --backend onnxruntime (export an fp16 model separately)")
    if fp16 and backend in ("torch", "compile", "torchscript") and device != "cuda":
        raise UsageError("--fp16 with PyTorch needs --device cuda (CPU half precision is not a deployment path)")
    if backend == "torchscript" and fp16 and part == "detector":
        raise UsageError("--fp16 with --backend torchscript covers --backbone-only / --dense / --classifier")

    sync = torch.cuda.synchronize if device == "cuda" else None
    if backend in ("torch", "compile"):
        dev = torch.device(device)
        target = (model if part == "detector" else module).to(dev)
        xd = x.to(dev)
        if backend == "compile":
            if part == "detector":
                target.backbone = torch.compile(target.backbone)  # RPN / RoI heads are too dynamic
            else:
                target = torch.compile(target)
        if part == "detector":
            images = [xd[i] for i in range(batch)]
            call = lambda: target([{"image": im} for im in images])  # noqa: E731
        else:
            call = lambda: target(xd)  # noqa: E731
        if fp16:  # autocast: half-precision convs/matmuls, the box arithmetic stays fp32
            plain = call
            call = lambda: _autocast_call(plain, device)  # noqa: E731
        return call, sync
    fmt = EXPORTED_FORMATS[backend]
    paths = export_module(module, x, fmt, work_dir, "model", fp16=fp16 and fmt == "ncnn")
    runner = load_runtime(fmt, paths, threads=settings["threads"], device=device, fp16=fp16)
    if fmt == "torchscript":  # the module on device tensors: no numpy round trip in the timing
        ts_module = runner.module.half() if fp16 else runner.module
        xd = x.to(device).half() if fp16 else x.to(device)
        return (lambda: ts_module(xd)), sync
    xn = np.ascontiguousarray(x.numpy())
    return (lambda: runner(xn)), None


def _autocast_call(fn: Callable[[], Any], device: str) -> Any:
    import torch

    with torch.autocast(device_type=device, dtype=torch.float16):
        return fn()


def benchmark_one(args, settings, config_file: str, opts: List[str], name: str = "") -> Dict[str, Any]:
    import torch
    from tqdm import tqdm

    from detection.deploy import runtime_threads
    from detection.deploy.benchmark import machine_info, summarize, time_callable

    if settings["device"] == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available on this machine (torch.cuda.is_available() is False)")
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    cfg, model, module, size, desc = build_target(args, settings, config_file, opts)
    part = "backbone" if settings["part"] == "classifier_backbone" else settings["part"]
    from detection.deploy import ExportError

    with tempfile.TemporaryDirectory(prefix="litedet_bench_") as work:
        try:
            with torch.no_grad():
                run, sync = make_runner(settings, part, model, module, size, work)
        except ExportError as err:
            raise UsageError(str(err)) from err
        bar = tqdm(total=settings["iters"], desc=f"{desc['name']} {settings['backend']}", unit="it",
                   disable=not sys.stderr.isatty(), leave=False)
        with torch.inference_mode() if settings["backend"] in ("torch", "compile") else torch.no_grad():
            times = time_callable(run, settings["warmup"], settings["iters"], sync, progress=lambda i: bar.update(1))
        bar.close()
    row: Dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "name": name or desc["name"], "model": desc["model"], "config_file": config_file or None,
        "part": part, "backend": settings["backend"], "device": settings["device"], "batch": settings["batch"],
        "input": size, "fp16": settings["fp16"], "fused": bool(args.fuse), "warmup": settings["warmup"],
        "preset": args.preset,
    }
    row.update(summarize(times, settings["batch"]))
    threads = settings["threads"]
    if settings["backend"] in EXPORTED_FORMATS:
        threads = runtime_threads(EXPORTED_FORMATS[settings["backend"]], threads)
    row.update(machine_info(settings["device"], threads))
    return row


def print_row(row: Dict[str, Any]) -> None:
    where = row["gpu"] if row.get("gpu") else f"{row['cpu_model']} ({row['cpu_cores']} cores), {row['threads']} thread(s)"
    print(f"{row['name']} [{row['part']}, {row['backend']}{', fp16' if row['fp16'] else ''}] batch {row['batch']} "
          f"at {row['input']} on {row['device']}: median {row['median_ms']:.2f} ms "
          f"(p10 {row['p10_ms']:.2f}, p90 {row['p90_ms']:.2f}; {row['iters']} iters after {row['warmup']} warm-up), "
          f"{row['images_per_s']:.1f} images/s — {where}; torch {row['torch_version']}, "
          f"onnxruntime {row['onnxruntime_version']}, ncnn {row['ncnn_version']}")


def chart_path(args) -> str:
    """Where a sweep draws its chart: ``--chart``, else sweep.png beside ``--json`` (or in ./)."""
    return args.chart or os.path.join(os.path.dirname(os.path.abspath(args.json)) if args.json else ".", "sweep.png")


def check_outputs(args) -> None:
    """Every file the run will write, checked before anything is timed (UsageError)."""
    from detection.deploy.benchmark import ResultsFileError, check_results_file

    if args.chart and not args.sweep:
        raise UsageError("--chart draws the speed-vs-accuracy chart of a --sweep; add --sweep or drop --chart")
    try:
        for flag, path in (("--json", args.json), ("--csv", args.csv)):
            if path:
                check_output_file(path, flag)
                check_results_file(path, flag[2:])
        if args.sweep:
            check_output_file(chart_path(args), "--chart", CHART_EXTENSIONS)
    except (OutputPathError, ResultsFileError) as err:
        raise UsageError(str(err)) from None


def sweep_entries(specs: List[str]) -> List[Dict[str, Any]]:
    """Config files, or one YAML file holding a list of entries (or {models: [...]})."""
    from detection.config import ConfigError, load_yaml_file

    if len(specs) == 1 and os.path.isfile(specs[0]):
        try:
            data = load_yaml_file(specs[0])
        except ConfigError as err:
            raise UsageError(str(err)) from None
        if isinstance(data, dict) and "models" in data:
            data = data["models"]
        if isinstance(data, list):
            entries = []
            for i, e in enumerate(data):
                e = {"config": e} if isinstance(e, str) else dict(e or {})
                if "config" not in e:
                    raise UsageError(f"{specs[0]}: entry {i} has no 'config'")
                base = os.path.dirname(os.path.abspath(specs[0]))
                if not os.path.isfile(e["config"]) and os.path.isfile(os.path.join(base, e["config"])):
                    e["config"] = os.path.join(base, e["config"])
                entries.append(e)
            if not entries:
                raise UsageError(f"{specs[0]}: the sweep list is empty")
            return entries
    for s in specs:
        if not os.path.isfile(s):
            raise UsageError(f"--sweep {s} does not exist")
    return [{"config": s} for s in specs]


def run_sweep(args, settings) -> int:
    from detection.config import load_config
    from detection.deploy.benchmark import append_results, plot_speed_accuracy, read_accuracy

    entries = sweep_entries(args.sweep)
    points = []
    for e in entries:
        opts = [str(o) for o in (e.get("opts") or [])] + list(args.opts or [])
        row = benchmark_one(args, settings, e["config"], opts, e.get("name", ""))
        accuracy = e.get("accuracy")
        if accuracy is None:
            source = e.get("metrics") or load_config(e["config"], opts).OUTPUT_DIR
            try:
                accuracy = read_accuracy(source, args.accuracy_key)
            except (OSError, ValueError) as err:
                logger.warning("%s: no accuracy (%s); left out of the chart", row["name"], err)
        row["accuracy"] = None if accuracy is None else float(accuracy)
        row["accuracy_key"] = args.accuracy_key if e.get("accuracy") is None else "given"
        print_row(row)
        append_results(row, args.json, args.csv)
        if row["accuracy"] is not None:
            points.append(row)
    if not points:
        print("No model in the sweep has an accuracy figure: no chart drawn "
              "(give 'accuracy' or 'metrics' per entry, or train first)")
        return 0
    chart = chart_path(args)
    first = points[0]
    title = f"{first['part']} {first['backend']} batch {first['batch']} {first['input']} on " \
            f"{first['gpu'] or first['cpu_model']} ({first['threads']} thr)"
    plot_speed_accuracy(points, chart, title=title, x_label="images / s (median)", y_label=args.accuracy_key)
    print(f"Speed-vs-accuracy chart written to {chart}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = os.path.basename(sys.argv[0]) or "benchmark.py"
    from detection.engine import setup_logger

    setup_logger()  # project console format on stdout; errors stay one line on stderr
    settings_args = argparse.Namespace(**vars(args))
    try:
        settings = resolve_settings(settings_args)
        settings["fp16"] = args.fp16
        check_outputs(args)
        if args.sweep:
            return run_sweep(args, settings)
        from detection.deploy.benchmark import append_results

        row = benchmark_one(args, settings, args.config_file, list(args.opts or []))
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print_row(row)
    append_results(row, args.json, args.csv)
    for path in (args.json, args.csv):
        if path:
            print(f"Appended to {os.path.abspath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
