"""Generators for the bad-input test corpus (nothing binary is committed).

Each ``make_*`` writes one file under a directory and returns its path; the COCO/VOC
helpers build small valid datasets that tests then break in one specific way.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save_rgb(path: Path, arr: np.ndarray, fmt: Optional[str] = None, **kwargs: Any) -> Path:
    Image.fromarray(arr).save(path, format=fmt, **kwargs)
    return path


def jpeg_bytes(h: int = 24, w: int = 32, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noise(h, w, seed)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bytes(h: int = 24, w: int = 32, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noise(h, w, seed)).save(buf, format="PNG")
    return buf.getvalue()


def write_coco(root: Path, images: List[Dict[str, Any]], annotations: List[Dict[str, Any]],
               categories: Optional[List[Dict[str, Any]]] = None, name: str = "ann.json") -> Path:
    data = {"images": images, "annotations": annotations,
            "categories": categories if categories is not None else [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    path = root / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def valid_coco(root: Path, n: int = 4, size: Sequence[int] = (24, 32)) -> Path:
    """``n`` noise PNGs under ``root/img`` and a valid json with two boxes per image."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    h, w = size
    images, anns = [], []
    for i in range(n):
        save_rgb(root / "img" / f"{i}.png", noise(h, w, i))
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": h, "width": w})
        anns.append({"id": 2 * i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 3, 10, 8], "iscrowd": 0, "area": 80})
        anns.append({"id": 2 * i + 2, "image_id": i + 1, "category_id": 2, "bbox": [12, 4, 6, 6], "iscrowd": 0, "area": 36})
    return write_coco(root, images, anns)


VOC_XML = """<annotation>
  <filename>{id}.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>
"""
VOC_OBJECT = """  <object><name>{name}</name><difficult>{difficult}</difficult>
    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>
"""


def voc_xml(image_id: str, objects: Sequence[Dict[str, Any]], h: int = 24, w: int = 32) -> str:
    body = "".join(VOC_OBJECT.format(**{"difficult": 0, **o}) for o in objects)
    return VOC_XML.format(id=image_id, h=h, w=w, objects=body)


def valid_voc(root: Path, n: int = 3, split: str = "train") -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"im{i}" for i in range(n)]
    for i, image_id in enumerate(ids):
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpeg_bytes(seed=i))
        objs = [{"name": "cat", "x1": 2, "y1": 3, "x2": 12, "y2": 10}, {"name": "dog", "x1": 14, "y1": 4, "x2": 20, "y2": 12, "difficult": 1}]
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, objs))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def exists(path: os.PathLike) -> bool:
    return os.path.exists(path)
