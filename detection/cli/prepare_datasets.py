"""Put already-downloaded COCO / Pascal VOC archives into the layout litedet expects, and
verify it; or generate the bundled litedet_shapes dataset.

No network access: pass the archives you downloaded (see datasets/README.md for the
official file names). Examples::

    python datasets/prepare.py coco --archives ~/dl/val2017.zip ~/dl/annotations_trainval2017.zip
    python datasets/prepare.py voc  --archives ~/dl/VOCtrainval_06-Nov-2007.tar ~/dl/VOCtest_06-Nov-2007.tar
    python datasets/prepare.py verify coco          # check an existing layout only
    python datasets/prepare.py shapes --num-train 600 --num-val 100

The data root is ``--root``, else ``$LITEDET_DATASETS``, else the checkout's ``datasets/`` directory.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Iterable, List, Sequence

from .common import REPO_ROOT

#: the default data root: the checkout's datasets/ directory
DATASETS_DIR = Path(REPO_ROOT) / "datasets"

COCO_SPLITS = ("train2017", "val2017")
VOC_YEARS = ("2007", "2012")


class PrepareError(RuntimeError):
    """A problem the user must fix (bad archive, incomplete layout); printed without a traceback."""


def data_root(arg: str | None) -> Path:
    return Path(arg or os.environ.get("LITEDET_DATASETS") or DATASETS_DIR).expanduser()


# ---------------------------------------------------------------------------- extraction


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a .zip / .tar(.gz) refusing members that would land outside ``dest``."""
    if not archive.is_file():
        raise PrepareError(f"archive not found: {archive}")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    print(f"extracting {archive} -> {dest}", flush=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not (root / name).resolve().is_relative_to(root):
                    raise PrepareError(f"{archive}: member {name!r} would be written outside {dest}")
            zf.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")
            else:  # pragma: no cover - Python without tar filters
                for m in tf.getmembers():
                    if not (root / m.name).resolve().is_relative_to(root) or m.issym() or m.islnk():
                        raise PrepareError(f"{archive}: unsafe member {m.name!r}")
                tf.extractall(dest)
    else:
        raise PrepareError(f"{archive}: neither a zip nor a tar archive")


def prepare_coco(root: Path, archives: Sequence[Path]) -> None:
    """COCO zips (train2017.zip, val2017.zip, annotations_trainval2017.zip) -> <root>/coco."""
    dest = root / "coco"
    for a in archives:
        _safe_extract(a, dest)
    verify_coco(root)


def prepare_voc(root: Path, archives: Sequence[Path]) -> None:
    """VOC tars (they contain VOCdevkit/VOC20xx/) -> <root>/VOC2007, <root>/VOC2012."""
    staging = root / ".voc_extract"
    try:
        for a in archives:
            _safe_extract(a, staging)
        devkit = staging / "VOCdevkit"
        if not devkit.is_dir():
            raise PrepareError(f"the archives did not contain a VOCdevkit/ directory (got {sorted(os.listdir(staging))})")
        for year_dir in sorted(devkit.iterdir()):
            target = root / year_dir.name
            if target.exists():
                # trainval and test tars of one year share the directory: merge.
                for src in year_dir.rglob("*"):
                    dst = target / src.relative_to(year_dir)
                    if src.is_dir():
                        dst.mkdir(parents=True, exist_ok=True)
                    elif not dst.exists():
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.move(str(src), str(dst))
            else:
                shutil.move(str(year_dir), str(target))
            print(f"placed {target}", flush=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    verify_voc(root)


# ---------------------------------------------------------------------------- verification


def _check_files(paths: Iterable[Path], what: str, limit: int = 5) -> None:
    missing: List[str] = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - limit} more)" if len(missing) > limit else ""
        raise PrepareError(f"{what}: {len(missing)} missing file(s): {', '.join(missing[:limit])}{more}")


def verify_coco(root: Path) -> None:
    """Every split whose annotation file exists must have all its listed images."""
    found = 0
    for split in COCO_SPLITS:
        ann = root / "coco" / "annotations" / f"instances_{split}.json"
        img_dir = root / "coco" / split
        if not ann.is_file():
            print(f"  {split}: no {ann} (skipped)")
            continue
        with open(ann, encoding="utf-8") as f:
            data = json.load(f)
        files = [img_dir / im["file_name"] for im in data["images"]]
        _check_files(files, f"coco {split}")
        print(f"  {split}: ok, {len(files)} images, {len(data['annotations'])} annotations, {len(data['categories'])} classes")
        found += 1
    if not found:
        raise PrepareError(f"no COCO annotation file under {root / 'coco' / 'annotations'}")


def verify_voc(root: Path) -> None:
    """Every split list of VOC2007 / VOC2012 that exists must have its XML and JPEG files."""
    found = 0
    for year in VOC_YEARS:
        base = root / f"VOC{year}"
        if not base.is_dir():
            print(f"  VOC{year}: not present (skipped)")
            continue
        for split in ("trainval", "test"):
            lst = base / "ImageSets" / "Main" / f"{split}.txt"
            if not lst.is_file():
                continue
            ids = [line.split()[0] for line in lst.read_text().splitlines() if line.strip()]
            _check_files((base / "Annotations" / f"{i}.xml" for i in ids), f"VOC{year} {split} annotations")
            _check_files((base / "JPEGImages" / f"{i}.jpg" for i in ids), f"VOC{year} {split} images")
            print(f"  VOC{year} {split}: ok, {len(ids)} images")
            found += 1
    if not found:
        raise PrepareError(f"no VOC2007/VOC2012 split list under {root}")


# ---------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="data root (default: $LITEDET_DATASETS, else the checkout's datasets/ directory)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("coco", help="extract COCO zips into <root>/coco and verify")
    p.add_argument("--archives", nargs="+", type=Path, required=True)
    p = sub.add_parser("voc", help="extract VOC tars into <root>/VOC2007, <root>/VOC2012 and verify")
    p.add_argument("--archives", nargs="+", type=Path, required=True)
    p = sub.add_parser("verify", help="only verify an existing layout")
    p.add_argument("which", choices=["coco", "voc"])
    sub.add_parser(
        "shapes", help="generate litedet_shapes; other options go to python -m detection.data.shapes (e.g. --num-train 600)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.cmd != "shapes":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    root = data_root(args.root)
    try:
        if args.cmd == "coco":
            prepare_coco(root, args.archives)
        elif args.cmd == "voc":
            prepare_voc(root, args.archives)
        elif args.cmd == "verify":
            (verify_coco if args.which == "coco" else verify_voc)(root)
        elif args.cmd == "shapes":
            from detection.data.shapes import main as shapes_main

            return shapes_main(["--root", str(root), *extra])
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"data root: {root.resolve()}")
    if Path("datasets").resolve() != root.resolve() and not os.environ.get("LITEDET_DATASETS"):
        print(f"note: litedet looks in ./datasets unless LITEDET_DATASETS is set; use LITEDET_DATASETS={root.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
