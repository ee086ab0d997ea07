"""Validate a detection dataset before training on it: annotations and every image.

    python tools/check_dataset.py --config-file CFG [KEY VALUE ...]    # DATASETS.TRAIN + TEST
    python tools/check_dataset.py --coco instances.json --images DIR
    python tools/check_dataset.py --voc VOCdevkit/VOC2007 --split trainval [--classes a,b,c]
    python tools/check_dataset.py ... --json > report.json
    python tools/check_dataset.py --config-file CFG --suggest        # + anchors / input size
    python tools/check_dataset.py --voc ROOT --classes a,b --suggest --suggest-config CFG

Every annotation entry is checked (the same rules the loaders apply when training) and
every image is opened and fully decoded (tqdm bar on stderr). The summary lists images,
boxes per class, and the problems found grouped by kind with example files.

Exit status: 0 no errors (warnings only, or nothing); 1 errors found; 2 invalid command
line or config. See docs/check_dataset.md for every problem kind, and its "Anchors and
input size" section for ``--suggest`` (`detection.data.anchor_stats`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from detection.data.catalog import parse_class_list
from detection.data.conventions import usable_annotation
from detection.data.errors import BadSampleError, DatasetError, ProblemLog

#: Images smaller than this (either side) are reported: anchors and RoI pooling assume
#: objects of some size, and such files are often thumbnails or placeholders.
TINY_IMAGE_SIDE = 16
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192


def check_images(
    records: Sequence[Dict[str, Any]],
    problems: ProblemLog,
    max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
    progress: bool = True,
    label: str = "images",
    workers: int = 0,
) -> Counter:
    """Open and decode every record's image (in ``workers`` processes when > 0); record
    problems; return image-mode counts."""
    import functools
    import multiprocessing

    from tqdm import tqdm

    from detection.data.images import check_decoded_size, inspect_image

    # Each file is decoded once, but checked against the size of every entry naming it:
    # training reads it once per entry, each time expecting that entry's size.
    unique: Dict[str, List[Dict[str, Any]]] = {}
    for record in records:
        path = record["file_name"]
        if path in unique:
            problems.warn("duplicate_file_name", path, "used by several image entries")
        unique.setdefault(path, []).append(record)
    inspect = functools.partial(inspect_image, max_pixels=max_pixels or None)
    pool = None
    if workers > 0 and len(unique) > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        pool = multiprocessing.get_context(method).Pool(workers)
        results = pool.imap(inspect, list(unique), chunksize=16)
    else:
        results = map(inspect, unique)
    modes: Counter = Counter()
    try:
        bar = tqdm(zip(unique.items(), results), total=len(unique), desc=label, unit="img",
                   disable=not progress, file=sys.stderr)
        for (path, entries), (error, info, (h, w)) in bar:
            if error is not None:
                problems.error(error.kind, path, error.reason)
                continue
            modes[info.pixel_type] += 1
            for want in dict.fromkeys((int(r["height"]), int(r["width"])) for r in entries):
                try:
                    check_decoded_size(path, (h, w), want)
                except BadSampleError as err:
                    problems.error(err.kind, path, err.reason)
            if info.exif_orientation != 1:
                problems.warn(
                    "exif_orientation",
                    path,
                    f"EXIF orientation {info.exif_orientation}: litedet rotates the pixels before use (training, "
                    "evaluation and the demo alike), so the boxes must be in the rotated (displayed) frame",
                )
            if min(h, w) < TINY_IMAGE_SIDE:
                problems.warn("tiny_image", path, f"only {w}x{h} pixels")
    finally:
        if pool is not None:
            pool.terminate()
    return modes


_FLAG_COLUMNS = ("crowd", "difficult", "ignore")


def _summarise_records(records: Sequence[Dict[str, Any]], classes: Optional[List[str]]) -> Dict[str, Any]:
    def row() -> Dict[str, int]:
        return {"boxes": 0, "usable": 0, **{k: 0 for k in _FLAG_COLUMNS}}

    per_class: Dict[str, Dict[str, int]] = {}
    names = list(classes or [])
    for c in names:
        per_class[c] = row()
    empty = 0
    for r in records:
        anns = r.get("annotations", [])
        if not anns:
            empty += 1
        for a in anns:
            cid = a["category_id"]
            name = names[cid] if 0 <= cid < len(names) else str(cid)
            counts = per_class.setdefault(name, row())
            counts["boxes"] += 1
            counts["usable"] += int(usable_annotation(a))
            for flag, key in zip(_FLAG_COLUMNS, ("iscrowd", "difficult", "ignore")):
                counts[flag] += int(bool(a.get(key, 0)))
    return {
        "images": len(records),
        "images_without_boxes": empty,
        "boxes": sum(v["boxes"] for v in per_class.values()),
        "usable_boxes": sum(v["usable"] for v in per_class.values()),
        "boxes_per_class": per_class,
    }


def _check_learnable(summary: Dict[str, Any], label: str, problems: ProblemLog) -> None:
    """A dataset must hold boxes to learn from / score (training refuses one without), and
    each class should have some."""
    if not summary["images"]:
        return
    if not summary["usable_boxes"]:
        problems.error(
            "no_usable_boxes", label,
            f"{summary['images']} images and {summary['boxes']} boxes, none usable (every box missing, dropped, "
            "or a crowd/ignore/difficult region): training refuses it, evaluation has nothing to score",
        )
        return
    for name, counts in summary["boxes_per_class"].items():
        if not counts["usable"]:
            problems.warn(
                "class_without_boxes", label,
                f"class {name!r} has no usable box: training cannot learn it, its AP is undefined",
            )


def load_source(source: Dict[str, Any], problems: ProblemLog) -> Tuple[List[Dict[str, Any]], Optional[List[str]]]:
    """Load one dataset description non-strictly; fatal file-level errors become one problem."""
    from detection.data.coco import load_coco_json
    from detection.data.voc import VOC_CLASSES, load_voc_instances

    try:
        if source["format"] == "coco":
            from detection.data.catalog import MetadataCatalog

            # The loader stores the class names in a dataset's metadata; use a scratch entry
            # when the json is checked on its own.
            name = source.get("metadata_name") or f"_check_dataset_{os.getpid()}_{id(source)}"
            try:
                records = load_coco_json(
                    source["json"],
                    source["images"],
                    dataset_name=name,
                    allow_outside_root=source.get("allow_outside_root", False),
                    problems=problems,
                )
                return records, MetadataCatalog.get(name).get("thing_classes")
            finally:
                if not source.get("metadata_name"):
                    MetadataCatalog.remove(name)
        if source["format"] == "voc":
            classes = list(source.get("classes") or VOC_CLASSES)
            records = load_voc_instances(
                source["root"], source["split"], classes, problems=problems,
                class_option=source.get("class_option", "give them in the dataset's REGISTER_VOC class string:"),
            )
            return records, classes
        from detection.data.catalog import DatasetCatalog, MetadataCatalog

        records = DatasetCatalog.get(source["name"])
        return records, MetadataCatalog.get(source["name"]).get("thing_classes")
    except DatasetError as err:
        problems.error_from(err)
    except FileNotFoundError as err:
        problems.error("missing_file", source.get("label", "dataset"), str(err))
    return [], None


def sources_from_config(cfg: Any) -> List[Dict[str, Any]]:
    """One source per dataset of DATASETS.TRAIN + DATASETS.TEST (duplicates once); those
    training reads have ``"train": True``."""
    from detection.data.catalog import DatasetCatalog, MetadataCatalog, register_from_cfg

    register_from_cfg(cfg)
    allow = bool(cfg.DATASETS.ALLOW_PATHS_OUTSIDE_ROOT)
    sources: List[Dict[str, Any]] = []
    train = set(cfg.DATASETS.TRAIN)
    todo = [(n, n in train) for n in dict.fromkeys(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))]
    while todo:
        name, is_train = todo.pop(0)
        if name not in DatasetCatalog:
            raise ValueError(f"dataset {name!r} is not registered; registered: {', '.join(DatasetCatalog.list())}")
        meta = MetadataCatalog.get(name)
        if meta.get("components"):
            todo = [(c, is_train) for c in meta.components] + todo
            continue
        if meta.get("evaluator_type") == "coco" and meta.get("json_file"):
            source = {"format": "coco", "json": meta.json_file, "images": meta.image_root,
                      "allow_outside_root": allow, "label": name, "metadata_name": name}
        elif meta.get("evaluator_type") == "voc" and meta.get("dirname"):
            source = {"format": "voc", "root": meta.dirname, "split": meta.split,
                      "classes": list(meta.thing_classes), "label": name}
        else:
            source = {"format": "catalog", "name": name, "label": name}
        if is_train:
            source["train"] = True
        sources.append(source)
    return sources


def check_sources(
    sources: Sequence[Dict[str, Any]],
    max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
    check_image_files: bool = True,
    progress: bool = True,
    max_examples: int = 5,
    workers: int = 0,
    train_records: Optional[List[Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """The whole check; returns the JSON-able report (``"ok"`` false when errors were found).
    ``train_records``, when given, receives the records of the sources marked ``"train"``."""
    report: Dict[str, Any] = {"datasets": []}
    problems = ProblemLog(strict=False, examples_per_kind=max_examples)
    for source in sources:
        errors_before = problems.count("error")
        records, classes = load_source(source, problems)
        if not records and problems.count("error") == errors_before:  # else already reported why
            problems.error("empty_dataset", source.get("label", "dataset"), "no images (training refuses an empty dataset)")
        if train_records is not None and source.get("train"):
            train_records.extend(records)
        summary = _summarise_records(records, classes)
        _check_learnable(summary, source.get("label", "dataset"), problems)
        if check_image_files and records:
            summary["image_modes"] = dict(
                check_images(records, problems, max_pixels, progress, label=f"{source.get('label', 'images')} images",
                             workers=workers)
            )
        report["datasets"].append({"name": source.get("label", "?"), **summary})
    report["problems"] = [
        {
            "severity": sev,
            "kind": kind,
            "count": n,
            "examples": [{"where": p.where, "message": p.message} for p in problems.examples[(sev, kind)]],
        }
        for (sev, kind), n in sorted(problems.counts.items(), key=lambda kv: (kv[0][0] != "error", kv[0][1]))
    ]
    report["errors"] = problems.count("error")
    report["warnings"] = problems.count("warning")
    report["ok"] = report["errors"] == 0
    return report


def format_report(report: Dict[str, Any]) -> str:
    lines: List[str] = []
    for ds in report["datasets"]:
        lines.append(f"Dataset {ds['name']}: {ds['images']} images ({ds['images_without_boxes']} without boxes), {ds['boxes']} boxes")
        if ds.get("image_modes"):
            modes = ", ".join(f"{m}: {n}" for m, n in sorted(ds["image_modes"].items()))
            lines.append(f"  image modes (all converted to 8-bit RGB): {modes}")
        if ds["boxes_per_class"]:
            width = max(len(c) for c in ds["boxes_per_class"])
            for cls, row in ds["boxes_per_class"].items():
                extra = ", ".join(f"{row[k]} {k}" for k in _FLAG_COLUMNS if row[k])
                lines.append(f"  {cls:<{width}}  {row['boxes']:>7}" + (f"  ({extra})" if extra else ""))
    if report["problems"]:
        lines.append(f"Problems: {report['errors']} error(s), {report['warnings']} warning(s)")
        for p in report["problems"]:
            lines.append(f"  {p['severity'].upper():<7} {p['kind']} x{p['count']}")
            for ex in p["examples"]:
                lines.append(f"      {ex['where']}: {ex['message']}")
    else:
        lines.append("Problems: none")
    verdict = "OK" if report["ok"] else "FAILED"
    lines.append(f"{verdict}: {report['errors']} error(s), {report['warnings']} warning(s)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Validate a COCO-json or VOC-xml detection dataset (annotations + every image).",
        epilog="Exit status: 0 no errors (warnings allowed), 1 errors found, 2 bad command line/config. "
        "Documentation: docs/check_dataset.md",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config-file", metavar="CFG", help="check DATASETS.TRAIN and DATASETS.TEST of this config")
    src.add_argument("--coco", metavar="JSON", help="COCO instances json (with --images)")
    src.add_argument("--voc", metavar="ROOT", help="VOC-layout directory (Annotations/, JPEGImages/, ImageSets/Main/)")
    p.add_argument("--images", metavar="DIR", help="image root of --coco")
    p.add_argument("--split", help="VOC split (default: trainval)")
    p.add_argument("--classes", help="VOC class names, comma separated (default: the 20 VOC classes)")
    p.add_argument("--allow-paths-outside-root", action="store_true",
                   help="allow COCO file_name entries outside the image root "
                   "(with --config-file: DATASETS.ALLOW_PATHS_OUTSIDE_ROOT True)")
    from .common import non_negative_int  # the tools' shared argparse types

    p.add_argument("--max-image-pixels", type=non_negative_int, default=None,
                   help=f"refuse images above this many pixels (default: INPUT.MAX_IMAGE_PIXELS, {DEFAULT_MAX_IMAGE_PIXELS})")
    p.add_argument("--no-images", action="store_true", help="check the annotations only, do not open the images")
    p.add_argument("--max-examples", type=non_negative_int, default=5, help="example files shown per problem kind (default 5)")
    p.add_argument("--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1),
                   help="processes decoding images (default: min(4, CPU count); 0 = in this process)")
    p.add_argument("--suggest", action="store_true",
                   help="also report training-box sizes at the config's input size, the share its anchors match "
                   "at IoU >= 0.5, and suggested MODEL.ANCHOR_GENERATOR.* / INPUT.*_SIZE_* overrides")
    p.add_argument("--suggest-config", metavar="CFG",
                   help="with --coco/--voc and --suggest: the config (input size, model, anchors) to analyse for; "
                   "overrides KEY VALUE follow")
    from detection.config_checks import POSITIVE

    from .common import bounded

    p.add_argument("--min-box-size", type=bounded(float, POSITIVE, "a number > 0"), default=None, metavar="PX",
                   help="--suggest: keep the 5%% quantile of sqrt(box area) between PX and 2*PX at the input size "
                   "(default: twice the finest RPN stride)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ... (with --config-file or --suggest-config)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("--json", "--quiet", "--no-images", "--allow-paths-outside-root", "--suggest"):  # after the overrides: still a flag
        if flag in (args.opts or []):
            args.opts.remove(flag)
            setattr(args, flag[2:].replace("-", "_"), True)
    # Options of another source kind would be silently ignored: refuse them.
    if args.images is not None and not args.coco:
        parser.error("--images applies to --coco only")
    if (args.split is not None or args.classes is not None) and not args.voc:
        parser.error("--split and --classes apply to --voc only")
    if args.allow_paths_outside_root and args.voc:  # VOC ids always name files under the VOC root
        parser.error("--allow-paths-outside-root applies to COCO file names (--coco, --config-file), not to --voc")
    if args.suggest_config is not None and (args.config_file or not args.suggest):
        parser.error("--suggest-config goes with --suggest and --coco/--voc (with --config-file, that config is used)")
    if args.min_box_size is not None and not args.suggest:
        parser.error("--min-box-size applies to --suggest")
    if args.suggest and not args.config_file and args.suggest_config is None:
        parser.error("--suggest needs a config for the input size and anchors: --config-file CFG, "
                     "or --suggest-config CFG with --coco/--voc")
    # The loaders' own warnings duplicate what the report lists (restored after: callers
    # running the check in their own process keep their logging).
    detection_logger = logging.getLogger("detection")
    level = detection_logger.level
    detection_logger.setLevel(logging.ERROR)
    try:
        return _check(parser, args)
    finally:
        detection_logger.setLevel(level)


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    prog = "check_dataset.py"
    max_pixels = args.max_image_pixels
    suggest_cfg = None
    try:
        if args.suggest_config is not None:
            from detection.config import ConfigError, load_config

            try:
                suggest_cfg = load_config(args.suggest_config, list(args.opts or []))
            except (ConfigError, ValueError, TypeError) as err:
                print(f"{prog}: config error: {err}", file=sys.stderr)
                return 2
        if args.config_file:
            from detection.config import ConfigError, load_config

            try:
                opts = list(args.opts or [])
                if args.allow_paths_outside_root:
                    opts += ["DATASETS.ALLOW_PATHS_OUTSIDE_ROOT", "True"]
                cfg = load_config(args.config_file, opts)
                sources = sources_from_config(cfg)
                suggest_cfg = cfg
            except (ConfigError, ValueError, TypeError) as err:
                print(f"{prog}: config error: {err}", file=sys.stderr)
                return 2
            if max_pixels is None:
                max_pixels = int(cfg.INPUT.MAX_IMAGE_PIXELS)
        elif args.opts and suggest_cfg is None:
            parser.error(f"config overrides need --config-file or --suggest-config: {args.opts}")
        elif args.coco:
            if not args.images:
                parser.error("--coco needs --images DIR")
            sources = [{"format": "coco", "json": args.coco, "images": args.images, "label": args.coco,
                        "allow_outside_root": args.allow_paths_outside_root, "train": True}]
        else:
            try:  # the same parser as REGISTER_VOC's class string
                classes = parse_class_list(args.classes, "--classes") if args.classes is not None else None
            except ValueError as err:
                parser.error(str(err))
            split = args.split or "trainval"
            sources = [{"format": "voc", "root": args.voc, "split": split, "classes": classes,
                        "label": f"{args.voc} ({split})", "class_option": "pass --classes", "train": True}]
        train_records: List[Dict[str, Any]] = []
        report = check_sources(
            sources,
            max_pixels=DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels,
            check_image_files=not args.no_images,
            progress=not args.quiet,
            max_examples=args.max_examples,
            workers=max(0, args.workers),
            train_records=train_records if args.suggest else None,
        )
        if args.suggest:
            from detection.data.anchor_stats import analyse

            try:
                report["anchors"] = analyse(train_records, suggest_cfg, args.min_box_size)
            except ValueError as err:
                print(f"{prog}: config error: --suggest: {err}", file=sys.stderr)
                return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_report(report))
        if "anchors" in report:
            from detection.data.anchor_stats import format_analysis

            print(format_analysis(report["anchors"]))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
