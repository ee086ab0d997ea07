"""litedet_shapes: a small synthetic detection dataset that ships with the code.

Why it exists: COCO and VOC are large downloads, yet examples, tests and CI need a
dataset on which a detector trained from scratch on a laptop CPU learns something
measurable within minutes. Five geometric classes (circle, square, triangle, star, cross)
are drawn with random colour, size (about 20-140 px), rotation and position on real photo
crops (``skimage.data``, shipped with scikit-image) or procedural gradients/noise.

Learnability is a design goal, so every object is a solid fill chosen to stand out from
the background under it, outlined in black or white (whichever contrasts more with that
background), 28-140 px across its corners (boxes at least 20 px a side), fully inside
the image, and never hidden by more than 20 % by a later object. Images hold 1-4 objects
(more often 3-4 than 1), except about 5 % empty negatives.

Layout under ``<root>/litedet_shapes``::

    train/images/shapes_train_000000.jpg ...   val/images/shapes_val_000000.jpg ...
    annotations/instances_train.json           annotations/instances_val.json   (COCO)
    VOC/JPEGImages/*.jpg (hard links to the same files), VOC/Annotations/*.xml,
    VOC/ImageSets/Main/{train,val,trainval}.txt
    manifest.json                              (written last: marks a complete dataset)

Boxes are integer pixel edges (``x2`` exclusive), so the COCO ``[x, y, w, h]`` and the
VOC 1-based ``xmin = x1 + 1, xmax = x2`` forms load to exactly the same records.

CLI: ``python -m detection.data.shapes --root datasets [--num-train N --num-val M]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    "SHAPES_CLASSES",
    "SHAPES_DIRNAME",
    "ShapesPaths",
    "shapes_paths",
    "generate_shapes_dataset",
    "ensure_shapes_dataset",
    "render_shapes_image",
    "shape_masks",
    "main",
]

logger = logging.getLogger(__name__)

SHAPES_CLASSES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SHAPES_DIRNAME = "litedet_shapes"
#: Bumped whenever the rendering changes, so an old dataset on disk is regenerated.
GENERATOR_VERSION = 2

_DEFAULTS: Dict[str, Any] = {"num_train": 600, "num_val": 100, "image_size": (256, 320), "seed": 0}
_SPLIT_CODE = {"train": 1, "val": 2}

# Photos from skimage.data used as backgrounds. Images full of shape-like structures
# (coins, chessboard, the retina disk, the skimage logo) are left out on purpose: they
# would be unlabelled circles and squares.
_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "text",
)


@dataclass(frozen=True)
class ShapesPaths:
    """Where each part of the dataset lives under ``<data_root>/litedet_shapes``."""

    root: str

    def image_dir(self, split: str) -> str:
        return os.path.join(self.root, split, "images")

    def json_file(self, split: str) -> str:
        return os.path.join(self.root, "annotations", f"instances_{split}.json")

    @property
    def voc_dir(self) -> str:
        return os.path.join(self.root, "VOC")

    @property
    def manifest(self) -> str:
        return os.path.join(self.root, "manifest.json")


def shapes_paths(data_root: str) -> ShapesPaths:
    return ShapesPaths(os.path.join(os.fspath(data_root), SHAPES_DIRNAME))


# ---------------------------------------------------------------------------- backgrounds

_photo_cache: Optional[List[np.ndarray]] = None


def _load_photos() -> List[np.ndarray]:
    """RGB uint8 photos from skimage.data, loaded once per process.

    A missing file (a trimmed scikit-image install) only removes that photo; with none
    left the backgrounds are all procedural.
    """
    global _photo_cache
    if _photo_cache is None:
        photos = []
        try:
            import skimage.data as skdata
        except Exception as err:  # pragma: no cover - scikit-image is a dependency
            logger.warning("scikit-image unavailable (%s); procedural backgrounds only", err)
            skdata = None
        for name in _PHOTOS if skdata is not None else ():
            try:
                img = np.asarray(getattr(skdata, name)())
            except Exception as err:  # noqa: BLE001 - any failure just drops this photo
                logger.warning("skimage.data.%s unavailable (%s); skipped as a background", name, err)
                continue
            if img.dtype != np.uint8:
                img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
            if img.ndim == 2:
                img = np.stack([img] * 3, axis=-1)
            photos.append(np.ascontiguousarray(img[:, :, :3]))
        _photo_cache = photos
    return _photo_cache


def _photo_background(rng: np.random.Generator, h: int, w: int, photos: List[np.ndarray]) -> np.ndarray:
    src = photos[int(rng.integers(len(photos)))]
    sh, sw = src.shape[:2]
    # Largest crop with the target aspect ratio, then a random fraction of it.
    full = min(sh / h, sw / w)
    scale = full * rng.uniform(0.35, 1.0)
    ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
    y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
    crop = src[y0 : y0 + ch, x0 : x0 + cw]
    img = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if ch > h else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    # Mild global brightness/contrast change so the same photo does not repeat exactly.
    alpha, beta = rng.uniform(0.7, 1.2), rng.uniform(-30, 30)
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255)


def _random_colour(rng: np.random.Generator, sat: Tuple[int, int] = (60, 256), val: Tuple[int, int] = (60, 256)) -> np.ndarray:
    """A random RGB colour (float32) with HSV saturation/value drawn from the given ranges."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(*sat), rng.integers(*val)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


_BG_SAT = (0, 170)  # procedural backgrounds are less saturated than the objects on them


def _procedural_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # linear gradient between two colours at a random angle
        a, b = _random_colour(rng, _BG_SAT), _random_colour(rng, _BG_SAT)
        theta = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(theta) + yy * math.sin(theta)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    else:  # smooth colour noise: a coarse random grid upsampled (plus fine grain for kind 2)
        gh, gw = int(rng.integers(2, 7)), int(rng.integers(2, 9))
        grid = np.stack([_random_colour(rng, _BG_SAT) for _ in range(gh * gw)]).reshape(gh, gw, 3)
        img = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        if kind == 2:
            img = img + rng.normal(0, 18, size=(h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    photos = _load_photos()
    if photos and rng.random() < 0.6:
        img = _photo_background(rng, h, w, photos)
    else:
        img = _procedural_background(rng, h, w)
    return np.ascontiguousarray(img, dtype=np.float32)


# ---------------------------------------------------------------------------- shapes

_SUB = 4  # fixed-point bits for cv2 drawing (sub-pixel vertex positions)


def _polygon(cls: str, rng: np.random.Generator) -> Optional[np.ndarray]:
    """Vertices of a shape with circumradius 1, centred at 0 (None for the circle)."""
    if cls == "square":
        return np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64) / math.sqrt(2)
    if cls == "triangle":
        ang = np.deg2rad([90, 210, 330])
        return np.stack([np.cos(ang), np.sin(ang)], 1)
    if cls == "star":
        inner = rng.uniform(0.4, 0.5)
        ang = np.deg2rad(90 + 36 * np.arange(10))
        rad = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    if cls == "cross":
        t = rng.uniform(0.17, 0.24)  # half-width of an arm
        q = [(t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t), (-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t)]
        pts = np.array(q, np.float64)
        return pts / np.linalg.norm(pts, axis=1).max()
    return None


def shape_masks(
    cls: str, cx: float, cy: float, size: float, angle: float, outline: int, hw: Tuple[int, int], rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """Anti-aliased (fill, outline) coverage masks, uint8 ``[h, w]`` in [0, 255], of one
    ``cls`` shape (a `SHAPES_CLASSES` name) of ``size`` px across its corners, centred at
    (``cx``, ``cy``), rotated by ``angle`` radians, with an ``outline`` px wide edge."""
    h, w = hw
    fill = np.zeros((h, w), np.uint8)
    edge = np.zeros((h, w), np.uint8)
    k = 1 << _SUB
    if cls == "circle":
        r = size / 2
        axes = (int(round(r * k)), int(round(r * rng.uniform(0.92, 1.0) * k)))
        centre = (int(round(cx * k)), int(round(cy * k)))
        cv2.ellipse(fill, centre, axes, math.degrees(angle), 0, 360, 255, -1, cv2.LINE_AA, _SUB)
        cv2.ellipse(edge, centre, axes, math.degrees(angle), 0, 360, 255, outline, cv2.LINE_AA, _SUB)
    else:
        pts = _polygon(cls, rng)
        assert pts is not None
        c, s = math.cos(angle), math.sin(angle)
        rot = pts @ np.array([[c, s], [-s, c]])
        xy = np.round((rot * (size / 2) + [cx, cy]) * k).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(fill, [xy], 255, cv2.LINE_AA, _SUB)
        cv2.polylines(edge, [xy], True, 255, outline, cv2.LINE_AA, _SUB)
    return fill, edge


def _box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114], np.float32))


def render_shapes_image(
    rng: np.random.Generator,
    image_size: Tuple[int, int] = (256, 320),
    min_size: int = 28,
    max_size: int = 140,
    max_objects: int = 4,
    empty_prob: float = 0.05,
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Draw one image; returns (RGB uint8 ``[H, W, 3]``, objects).

    Each object is ``{"category_id": 0-based, "bbox": [x1, y1, x2, y2] ints, "area":
    visible pixel count}``; the box is the tight box of the object's visible pixels.
    """
    h, w = image_size
    img = _background(rng, h, w)
    if rng.random() < empty_prob:
        n_wanted = 0
    else:  # 1..max_objects, leaning towards more objects: more positives per image seen
        weights = np.arange(1, max_objects + 1, dtype=np.float64) + 1.0
        n_wanted = int(rng.choice(np.arange(1, max_objects + 1), p=weights / weights.sum()))
    owner = np.full((h, w), -1, np.int32)  # which object each pixel shows
    full_area: List[int] = []
    visible: List[int] = []
    objects: List[Dict[str, Any]] = []
    hi = min(max_size, int(0.7 * min(h, w)))
    for _ in range(n_wanted):
        for _attempt in range(30):
            cls_id = int(rng.integers(len(SHAPES_CLASSES)))
            cls = SHAPES_CLASSES[cls_id]
            # Half log-uniform, half uniform: every scale is present, but not dominated by
            # small objects (hard for stride-32 heads on 256-px inputs).
            lo_hi = (min_size, max(min_size + 1, hi))
            if rng.random() < 0.5:
                size = float(math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1]))))
            else:
                size = float(rng.uniform(*lo_hi))
            margin = size / 2 + 3
            if w - 2 * margin <= 0 or h - 2 * margin <= 0:
                continue
            cx, cy = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
            outline = 2 if size < 60 else 3
            fill, edge = shape_masks(cls, cx, cy, size, rng.uniform(0, 2 * math.pi), outline, (h, w), rng)
            # Work inside the shape's neighbourhood only (anti-aliasing reaches ~1 px out).
            r = int(size / 2 + outline + 3)
            ys = slice(max(0, int(cy) - r), min(h, int(cy) + r + 1))
            xs = slice(max(0, int(cx) - r), min(w, int(cx) + r + 1))
            fill_r, edge_r = fill[ys, xs], edge[ys, xs]
            solid = np.maximum(fill_r, edge_r) >= 128
            local = _box(solid)
            if local is None:
                continue
            box = (local[0] + xs.start, local[1] + ys.start, local[2] + xs.start, local[3] + ys.start)
            if min(box[2] - box[0], box[3] - box[1]) < 20:
                continue
            if any(_iou(box, o["bbox"]) > 0.25 for o in objects):
                continue
            # Earlier objects must keep >= 80 % of their pixels.
            own_r = owner[ys, xs]
            hidden = np.bincount(own_r[solid & (own_r >= 0)], minlength=len(objects)) if objects else []
            if any(visible[k] - hidden[k] < 0.8 * full_area[k] for k in range(len(objects))):
                continue
            # Fill colour: the most distinct of a few random candidates from the local background.
            img_r = img[ys, xs]
            bg = img_r[solid].mean(axis=0)
            cands = [_random_colour(rng) for _ in range(6)]
            if rng.random() < 0.15:
                cands.append(np.full(3, 245.0 if _luma(bg) < 128 else 15.0, np.float32))
            colour = max(cands, key=lambda c: float(np.linalg.norm(c - bg)))
            line = np.full(3, 20.0 if _luma(bg) > 110 else 240.0, np.float32)
            a = fill_r.astype(np.float32)[..., None] / 255.0
            e = edge_r.astype(np.float32)[..., None] / 255.0
            img_r[:] = (img_r * (1 - a) + colour * a) * (1 - e) + line * e
            for k in range(len(objects)):
                visible[k] -= int(hidden[k])
            own_r[solid] = len(objects)
            full_area.append(int(solid.sum()))
            visible.append(full_area[-1])
            objects.append({"category_id": cls_id, "bbox": box})
            break
    # Boxes and areas of what is actually visible after occlusion.
    kept = []
    for k, obj in enumerate(objects):
        x1, y1, x2, y2 = obj["bbox"]
        vis = owner[y1:y2, x1:x2] == k
        local = _box(vis)
        if local is None:
            continue
        box = [local[0] + x1, local[1] + y1, local[2] + x1, local[3] + y1]
        kept.append({"category_id": obj["category_id"], "bbox": box, "area": int(vis.sum())})
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.8))
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(rng.uniform(1, 5))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), kept


# ---------------------------------------------------------------------------- writing


def _voc_xml(file_name: str, h: int, w: int, objects: List[Dict[str, Any]]) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(w)
    ET.SubElement(size, "height").text = str(h)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        x1, y1, x2, y2 = obj["bbox"]
        o = ET.SubElement(root, "object")
        ET.SubElement(o, "name").text = SHAPES_CLASSES[obj["category_id"]]
        ET.SubElement(o, "pose").text = "Unspecified"
        ET.SubElement(o, "truncated").text = "0"
        ET.SubElement(o, "difficult").text = "0"
        bb = ET.SubElement(o, "bndbox")
        # VOC: 1-based inclusive pixel indices; the loader subtracts 1 from xmin/ymin.
        ET.SubElement(bb, "xmin").text = str(x1 + 1)
        ET.SubElement(bb, "ymin").text = str(y1 + 1)
        ET.SubElement(bb, "xmax").text = str(x2)
        ET.SubElement(bb, "ymax").text = str(y2)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _settings(num_train: int, num_val: int, image_size: Sequence[int], seed: int) -> Dict[str, Any]:
    return {
        "generator": "litedet.shapes",
        "version": GENERATOR_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "seed": int(seed),
        "classes": list(SHAPES_CLASSES),
    }


def _read_manifest(paths: ShapesPaths) -> Optional[Dict[str, Any]]:
    try:
        with open(paths.manifest, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_complete(paths: ShapesPaths, manifest: Optional[Dict[str, Any]]) -> bool:
    """The manifest is written last; also check the files it promises are still there."""
    if not manifest or manifest.get("generator") != "litedet.shapes" or manifest.get("version") != GENERATOR_VERSION:
        return False
    try:
        for split in ("train", "val"):
            n = int(manifest[f"num_{split}"])
            if not os.path.isfile(paths.json_file(split)):
                return False
            if not os.path.isfile(os.path.join(paths.voc_dir, "ImageSets", "Main", f"{split}.txt")):
                return False
            if sum(1 for f in os.listdir(paths.image_dir(split)) if f.endswith(".jpg")) != n:
                return False
    except (OSError, KeyError, ValueError):
        return False
    return True


def _write_split(
    tmp: ShapesPaths, split: str, num: int, image_size: Tuple[int, int], seed: int, progress: bool
) -> Dict[str, int]:
    os.makedirs(tmp.image_dir(split), exist_ok=True)
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(tmp.voc_dir, sub), exist_ok=True)
    images, annotations, ids = [], [], []
    h, w = image_size
    it = range(num)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"litedet_shapes {split}", unit="img")
    for i in it:
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], i])
        img, objects = render_shapes_image(rng, (h, w))
        stem = f"shapes_{split}_{i:06d}"
        path = os.path.join(tmp.image_dir(split), stem + ".jpg")
        if not cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise OSError(f"could not write {path}")
        _link_or_copy(path, os.path.join(tmp.voc_dir, "JPEGImages", stem + ".jpg"))
        _voc_xml(stem + ".jpg", h, w, objects).write(
            os.path.join(tmp.voc_dir, "Annotations", stem + ".xml"), encoding="utf-8", xml_declaration=False
        )
        image_id = i + 1
        images.append({"id": image_id, "file_name": stem + ".jpg", "height": h, "width": w})
        for obj in objects:
            x1, y1, x2, y2 = obj["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj["category_id"] + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": obj["area"],
                    "iscrowd": 0,
                }
            )
        ids.append(stem)
    coco = {
        "info": {"description": f"litedet_shapes {split} (synthetic)", "version": str(GENERATOR_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": c, "supercategory": "shape"} for k, c in enumerate(SHAPES_CLASSES)],
    }
    os.makedirs(os.path.dirname(tmp.json_file(split)), exist_ok=True)
    with open(tmp.json_file(split), "w", encoding="utf-8") as f:
        json.dump(coco, f)
    with open(os.path.join(tmp.voc_dir, "ImageSets", "Main", f"{split}.txt"), "w", encoding="utf-8") as f:
        f.write("".join(s + "\n" for s in ids))
    return {"images": len(images), "boxes": len(annotations), "empty": num - len({a["image_id"] for a in annotations})}


def generate_shapes_dataset(
    root: str,
    num_train: int = 600,
    num_val: int = 100,
    image_size: Tuple[int, int] = (256, 320),
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> Dict[str, Any]:
    """Write litedet_shapes under ``<root>/litedet_shapes``; returns its manifest.

    Idempotent: when a complete dataset with the same settings (counts, ``image_size`` as
    ``(height, width)``, ``seed``, generator version) is present, nothing is written.
    Image ``i`` of a split depends only on ``(seed, split, i)``, so the train images do not
    change when ``num_val`` does. The dataset is written to a temporary directory and
    moved into place, so an interrupted or concurrent run never leaves a half-written
    dataset that looks complete.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got num_train={num_train}, num_val={num_val}")
    if len(image_size) != 2 or min(image_size) < 64:
        raise ValueError(f"image_size must be (height, width) with both >= 64, got {image_size}")
    root = os.fspath(root)
    paths = shapes_paths(root)
    settings = _settings(num_train, num_val, image_size, seed)
    manifest = _read_manifest(paths)
    if not force and _is_complete(paths, manifest) and all(manifest.get(k) == v for k, v in settings.items()):
        logger.info("litedet_shapes already complete at %s; nothing to do", paths.root)
        return manifest  # type: ignore[return-value]

    os.makedirs(root, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{SHAPES_DIRNAME}.tmp-", dir=root)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_dir, 0o777 & ~umask)  # mkdtemp makes it private; the dataset should not be
    try:
        tmp = ShapesPaths(tmp_dir)
        counts = {}
        for split, num in (("train", num_train), ("val", num_val)):
            counts[split] = _write_split(tmp, split, num, tuple(image_size), seed, progress)
        with open(os.path.join(tmp.voc_dir, "ImageSets", "Main", "trainval.txt"), "w", encoding="utf-8") as f:
            for split in ("train", "val"):
                with open(os.path.join(tmp.voc_dir, "ImageSets", "Main", f"{split}.txt"), encoding="utf-8") as g:
                    f.write(g.read())
        manifest = {**settings, "counts": counts}
        with open(tmp.manifest, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        if not _swap_into_place(tmp_dir, paths.root, settings):
            manifest = _read_manifest(paths) or manifest
    finally:
        if os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info(
        "Wrote litedet_shapes to %s: train %d images / %d boxes, val %d images / %d boxes",
        paths.root,
        counts["train"]["images"],
        counts["train"]["boxes"],
        counts["val"]["images"],
        counts["val"]["boxes"],
    )
    return manifest


def _swap_into_place(new_dir: str, target: str, settings: Dict[str, Any]) -> bool:
    """Move ``new_dir`` to ``target``; False if ``target`` was kept instead.

    A complete dataset with the same settings already at ``target`` (a concurrent
    generator finished first) is kept: other processes may be reading it, and ours is
    identical anyway (generation is deterministic). Anything else there is replaced.
    """
    paths = shapes_paths(os.path.dirname(target))

    def same_complete() -> bool:
        m = _read_manifest(paths)
        return _is_complete(paths, m) and all(m.get(k) == v for k, v in settings.items())  # type: ignore[union-attr]

    if same_complete():
        return False
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix=f".{SHAPES_DIRNAME}.old-", dir=os.path.dirname(target))
        os.rmdir(old)
        try:
            os.rename(target, old)
        except FileNotFoundError:  # another process moved it meanwhile
            old = None
        else:
            logger.warning("Replacing the litedet_shapes dataset at %s (other settings, or incomplete)", target)
    try:
        os.rename(new_dir, target)
    except OSError:
        if not same_complete():  # lost a race to a generator with other settings
            raise
        return False
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return True


def ensure_shapes_dataset(root: str) -> ShapesPaths:
    """Make sure *a* complete litedet_shapes exists under ``root`` (whatever its settings,
    so a custom-size dataset made with the CLI is used as is); generate the default one
    otherwise. Used by the built-in ``litedet_shapes_*`` datasets."""
    paths = shapes_paths(root)
    if not _is_complete(paths, _read_manifest(paths)):
        logger.info("litedet_shapes not found under %s; generating it (one-off, a few seconds)", root)
        generate_shapes_dataset(root, **_DEFAULTS)
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m detection.data.shapes", description="Generate the litedet_shapes synthetic detection dataset."
    )
    parser.add_argument("--root", default=os.environ.get("LITEDET_DATASETS", "datasets"), help="data root (default: $LITEDET_DATASETS or ./datasets)")
    parser.add_argument("--num-train", type=int, default=_DEFAULTS["num_train"])
    parser.add_argument("--num-val", type=int, default=_DEFAULTS["num_val"])
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=list(_DEFAULTS["image_size"]))
    parser.add_argument("--seed", type=int, default=_DEFAULTS["seed"])
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching dataset exists")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point: generate the dataset and print where it went."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    manifest = generate_shapes_dataset(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=tuple(args.image_size),
        seed=args.seed,
        force=args.force,
        progress=True,
    )
    paths = shapes_paths(args.root)
    print(f"litedet_shapes at {os.path.abspath(paths.root)}")
    for split in ("train", "val"):
        c = manifest["counts"][split]
        print(f"  {split}: {c['images']} images, {c['boxes']} boxes, {c['empty']} empty -> {paths.json_file(split)}")
    print(f"  VOC layout: {paths.voc_dir}")
    print(f"  classes: {', '.join(manifest['classes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
