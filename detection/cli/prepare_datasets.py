"""Put already-downloaded COCO / Pascal VOC archives or a BCCD clone into the layout litedet
expects, and verify it; or generate the bundled litedet_shapes dataset.

No network access: pass the archives you downloaded (see datasets/README.md for the
official file names) or the folder you cloned. Examples::

    python datasets/prepare.py coco --archives ~/dl/val2017.zip ~/dl/annotations_trainval2017.zip
    python datasets/prepare.py voc  --archives ~/dl/VOCtrainval_06-Nov-2007.tar ~/dl/VOCtest_06-Nov-2007.tar
    python datasets/prepare.py bccd --from ~/src/BCCD_Dataset   # git clone of Shenggan/BCCD_Dataset
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
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from detection.data.builtin import BCCD_CLASSES, BCCD_DIRNAME, BCCD_SPLITS
from detection.data.errors import DatasetError
from detection.data.images import inspect_image
from detection.data.voc import parse_voc_xml

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


# ---------------------------------------------------------------------------- BCCD

#: Spellings seen in BCCD forks and re-exports, matched after strip() and lower().
BCCD_CLASS_ALIASES = {"rbc": "RBC", "wbc": "WBC", "platelets": "Platelets", "platelet": "Platelets"}
#: Two boxes of one class overlapping this much are one cell annotated twice (BCCD has a few
#: such pairs offset by 2 px); distinct cells never coincide like that.
BCCD_DUPLICATE_IOU = 0.9
BCCD_REPORT = "prepare_report.json"


class BccdScan:
    """What checking a BCCD folder found: split lists, the corrected XML of each image that
    needed a fix (None: unchanged), every fix made (kind -> lines), per-split box counts,
    and annotation files no split lists."""

    def __init__(self) -> None:
        self.splits: Dict[str, List[str]] = {}
        self.fixed_xml: Dict[str, Optional[bytes]] = {}
        self.fixes: Dict[str, List[str]] = {}
        self.boxes: Dict[str, Counter] = {}
        self.unlisted: List[str] = []

    def fix(self, kind: str, detail: str) -> None:
        self.fixes.setdefault(kind, []).append(detail)


def _bccd_dir(src: Path) -> Path:
    """The folder holding Annotations/: the clone's BCCD/ subfolder, or ``src`` itself."""
    for cand in (src / BCCD_DIRNAME, src):
        if (cand / "Annotations").is_dir():
            return cand
    raise PrepareError(f"{src}: no Annotations/ folder here or in {src / BCCD_DIRNAME} (expected a clone of "
                       "github.com/Shenggan/BCCD_Dataset)")


def _read_bccd_splits(base: Path, scan_fix) -> Dict[str, List[str]]:
    """The four ImageSets/Main lists; refuses a missing list and lists that leak test images
    into training or disagree (trainval must be train + val)."""
    splits: Dict[str, List[str]] = {}
    for split in BCCD_SPLITS:
        lst = base / "ImageSets" / "Main" / f"{split}.txt"
        if not lst.is_file():
            raise PrepareError(f"{lst}: split list missing (BCCD has {', '.join(s + '.txt' for s in BCCD_SPLITS)})")
        ids = [line.split()[0] for line in lst.read_text(encoding="utf-8").splitlines() if line.strip()]
        unique = list(dict.fromkeys(ids))
        if len(unique) != len(ids):
            dup = sorted(i for i, n in Counter(ids).items() if n > 1)
            scan_fix("split_duplicate_id", f"{lst}: {len(ids) - len(unique)} repeated id(s) removed: {', '.join(dup[:5])}")
        splits[split] = unique
    train, val, trainval, test = (set(splits[s]) for s in BCCD_SPLITS)
    for a, b, sa, sb in ((train, val, "train", "val"), (trainval, test, "trainval", "test")):
        if a & b:
            raise PrepareError(f"{base}/ImageSets/Main: {len(a & b)} image(s) are in both {sa}.txt and {sb}.txt "
                               f"(e.g. {sorted(a & b)[0]}); the splits must be disjoint")
    if trainval != train | val:
        diff = sorted(trainval ^ (train | val))
        raise PrepareError(f"{base}/ImageSets/Main/trainval.txt is not train.txt + val.txt ({len(diff)} id(s) differ, "
                           f"e.g. {diff[0]})")
    return splits


def _iou_inclusive(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes in VOC's inclusive pixel indices (width = x2 - x1 + 1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def _fmt_coord(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _fix_bccd_xml(xml_file: Path, image_id: str, image_hw: Tuple[int, int], scan: BccdScan) -> Tuple[Optional[bytes], Counter]:
    """Check one annotation file against its image; returns the corrected XML (None when
    nothing changed) and the box count per class. Unfixable problems raise PrepareError."""
    try:
        root = parse_voc_xml(str(xml_file))
    except DatasetError as err:
        raise PrepareError(str(err)) from None
    changed = False
    height, width = image_hw
    size = root.find("size")
    if size is None:
        size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height)):
        node = size.find(tag)
        if node is None or (node.text or "").strip() != str(value):
            old = None if node is None else (node.text or "").strip()
            if node is None:
                node = ET.SubElement(size, tag)
            node.text = str(value)
            scan.fix("size_corrected", f"{xml_file}: <size><{tag}> {old!r} -> {value} (the JPEG's size)")
            changed = True
    name_node = root.find("filename")
    if name_node is not None and (name_node.text or "").strip() != f"{image_id}.jpg":
        scan.fix("filename_corrected", f"{xml_file}: <filename> {name_node.text!r} -> {image_id + '.jpg'!r}")
        name_node.text = f"{image_id}.jpg"
        changed = True

    kept: List[Tuple[int, str, List[float]]] = []  # (object number, class, box)
    counts: Counter = Counter()
    for k, obj in enumerate(list(root.findall("object"))):
        where = f"{xml_file}: <object> #{k + 1}"
        name_node = obj.find("name")
        raw_name = "" if name_node is None or name_node.text is None else name_node.text
        name = raw_name if raw_name in BCCD_CLASSES else BCCD_CLASS_ALIASES.get(raw_name.strip().lower())
        if name is None:
            raise PrepareError(f"{where}: class {raw_name!r} is not one of {list(BCCD_CLASSES)} (nor a known spelling "
                               "of one); fix the file or extend BCCD_CLASS_ALIASES")
        if name != raw_name:
            name_node.text = name
            scan.fix("class_renamed", f"{where}: {raw_name!r} -> {name!r}")
            changed = True
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise PrepareError(f"{where}: <difficult> must be 0 or 1, got {difficult!r}")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise PrepareError(f"{where}: {name} has no <bndbox>")
        coords: List[float] = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            raw = (bndbox.findtext(tag) or "").strip()
            try:
                coords.append(float(raw))
            except ValueError:
                raise PrepareError(f"{where}: <{tag}> is not a number: {raw!r}") from None
        x1, y1, x2, y2 = coords
        shown = "(" + ", ".join(_fmt_coord(c) for c in coords) + ")"
        if x2 <= x1 or y2 <= y1:  # a point or a line: VOC pixels are inclusive, so xmax == xmin is 1 px wide
            root.remove(obj)
            scan.fix("box_degenerate", f"{where}: {name} box {shown} has no extent; removed")
            changed = True
            continue
        clipped = [max(x1, 1.0), max(y1, 1.0), min(x2, float(width)), min(y2, float(height))]
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            root.remove(obj)
            scan.fix("box_outside_image", f"{where}: {name} box {shown} lies outside the {width}x{height} image; removed")
            changed = True
            continue
        if clipped != coords:
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), clipped):
                bndbox.find(tag).text = _fmt_coord(value)
            scan.fix("box_clipped", f"{where}: {name} box {shown} reaches outside the {width}x{height} image; clipped "
                                    f"to ({', '.join(_fmt_coord(c) for c in clipped)})")
            changed = True
        twin = next((t for t in kept if t[1] == name and _iou_inclusive(t[2], clipped) >= BCCD_DUPLICATE_IOU), None)
        if twin is not None:
            root.remove(obj)
            scan.fix("box_duplicate", f"{where}: {name} box {shown} repeats the box of object #{twin[0]} "
                                      f"(IoU {_iou_inclusive(twin[2], clipped):.2f}); removed")
            changed = True
            continue
        kept.append((k + 1, name, clipped))
        counts[name] += 1
    if not changed:
        return None, counts
    return ET.tostring(root, encoding="unicode").encode("utf-8"), counts


def scan_bccd(base: Path) -> BccdScan:
    """Check a BCCD folder (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``): split
    lists, one XML and one decodable JPEG per listed id, XML quirks fixed and counted."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        if not (base / sub).is_dir():
            raise PrepareError(f"{base}: missing folder {sub}/")
    scan = BccdScan()
    scan.splits = _read_bccd_splits(base, scan.fix)
    listed = list(dict.fromkeys(i for s in BCCD_SPLITS for i in scan.splits[s]))
    _check_files((base / "Annotations" / f"{i}.xml" for i in listed), f"BCCD annotations ({base / 'Annotations'})")
    _check_files((base / "JPEGImages" / f"{i}.jpg" for i in listed), f"BCCD images ({base / 'JPEGImages'})")
    on_disk = {p.stem for p in (base / "Annotations").glob("*.xml")}
    scan.unlisted = sorted(on_disk - set(listed))
    per_image: Dict[str, Counter] = {}
    for image_id in listed:
        jpeg = base / "JPEGImages" / f"{image_id}.jpg"
        bad, _, hw = inspect_image(str(jpeg))
        if bad is not None:
            raise PrepareError(str(bad))
        scan.fixed_xml[image_id], per_image[image_id] = _fix_bccd_xml(base / "Annotations" / f"{image_id}.xml", image_id, hw, scan)
    for split, ids in scan.splits.items():
        scan.boxes[split] = sum((per_image[i] for i in ids), Counter())
    return scan


def _print_bccd_summary(scan: BccdScan, limit: int = 10) -> None:
    for split in BCCD_SPLITS:
        c = scan.boxes[split]
        print(f"  BCCD {split}: {len(scan.splits[split])} images, {sum(c.values())} boxes "
              f"({', '.join(f'{n} {c[n]}' for n in BCCD_CLASSES)})")
    if scan.unlisted:
        print(f"  {len(scan.unlisted)} annotation file(s) in no split list, not used: {', '.join(scan.unlisted[:limit])}")
    for kind, items in sorted(scan.fixes.items()):
        print(f"  fixed {kind}: {len(items)}")
        for item in items[:limit]:
            print(f"    {item}")
        if len(items) > limit:
            print(f"    ... and {len(items) - limit} more (all listed in {BCCD_REPORT})")


def prepare_bccd(root: Path, src: Path) -> None:
    """A clone of github.com/Shenggan/BCCD_Dataset -> <root>/BCCD, checked and with its XML
    quirks fixed (each fix counted, printed and listed in <root>/BCCD/prepare_report.json)."""
    base = _bccd_dir(src)
    target = root / BCCD_DIRNAME
    if target.resolve() == base.resolve():
        raise PrepareError(f"{base}: source and destination are the same folder; pass another --root")
    if target.exists() and not (target / BCCD_REPORT).is_file():
        raise PrepareError(f"{target} exists and was not made by prepare.py (no {BCCD_REPORT}); move it away first")
    print(f"checking {base}", flush=True)
    scan = scan_bccd(base)
    staging = root / ".bccd_prepare"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (staging / sub).mkdir(parents=True)
        for split, ids in scan.splits.items():
            (staging / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        for image_id, fixed in scan.fixed_xml.items():
            xml_out = staging / "Annotations" / f"{image_id}.xml"
            if fixed is None:
                shutil.copyfile(base / "Annotations" / f"{image_id}.xml", xml_out)
            else:
                xml_out.write_bytes(fixed)
            shutil.copyfile(base / "JPEGImages" / f"{image_id}.jpg", staging / "JPEGImages" / f"{image_id}.jpg")
        report = {
            "source": str(base.resolve()),
            "classes": list(BCCD_CLASSES),
            "splits": {s: {"images": len(scan.splits[s]), "boxes": dict(scan.boxes[s])} for s in BCCD_SPLITS},
            "fixes": scan.fixes,
            "unlisted": scan.unlisted,
        }
        (staging / BCCD_REPORT).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"placed {target}")
    _print_bccd_summary(scan)


def verify_bccd(root: Path) -> None:
    """<root>/BCCD must be complete and need no further fix."""
    base = root / BCCD_DIRNAME
    if not base.is_dir():
        raise PrepareError(f"{base} not found; run: python datasets/prepare.py bccd --from <clone of BCCD_Dataset>")
    scan = scan_bccd(base)
    _print_bccd_summary(scan)
    if scan.fixes:
        raise PrepareError(f"{base}: {sum(len(v) for v in scan.fixes.values())} annotation problem(s) listed above; "
                           "re-run python datasets/prepare.py bccd --from <clone>")


# ---------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="data root (default: $LITEDET_DATASETS, else the checkout's datasets/ directory)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("coco", help="extract COCO zips into <root>/coco and verify")
    p.add_argument("--archives", nargs="+", type=Path, required=True)
    p = sub.add_parser("voc", help="extract VOC tars into <root>/VOC2007, <root>/VOC2012 and verify")
    p.add_argument("--archives", nargs="+", type=Path, required=True)
    p = sub.add_parser("bccd", help="check a BCCD_Dataset clone, fix its annotation quirks and place it in <root>/BCCD")
    p.add_argument("--from", dest="src", type=Path, required=True, help="the clone (or its BCCD/ folder)")
    p = sub.add_parser("verify", help="only verify an existing layout")
    p.add_argument("which", choices=["coco", "voc", "bccd"])
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
        elif args.cmd == "bccd":
            prepare_bccd(root, args.src.expanduser())
        elif args.cmd == "verify":
            {"coco": verify_coco, "voc": verify_voc, "bccd": verify_bccd}[args.which](root)
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
