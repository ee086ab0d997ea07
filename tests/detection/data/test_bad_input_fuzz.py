"""Fuzz (fixed seeds, bounded): randomly corrupted COCO json files and image files go
through the loader, the mapper and the check tool; the only exceptions allowed are the
documented ones (DatasetError, BadSampleError, FileNotFoundError)."""
from __future__ import annotations

import copy
import json
import math
import os
import random

import numpy as np
import pytest

from detection.cli import check_dataset
from detection.data import DatasetMapper, load_coco_json
from detection.data.errors import DATA_ERRORS, BadSampleError, ProblemLog
from detection.data.images import read_image

N_JSON, N_IMAGES = 200, 50
WEIRD = [None, "", "ü/../x", -1, 0, 1.5, 10**20, 1e308, math.nan, math.inf, -math.inf, True, [], {}, [1, 2, 3, 4], {"id": 1}, "1"]


def _paths(obj, prefix=()):
    """Every (container, key) location in a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield obj, k
            yield from _paths(v)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield obj, i
            yield from _paths(v)


def _mutate_tree(data, rng):
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        locations = list(_paths(data))
        if not locations:
            break
        container, key = rng.choice(locations)
        op = rng.random()
        if op < 0.5:
            container[key] = rng.choice(WEIRD)
        elif op < 0.7 and isinstance(container, dict):
            del container[key]
        elif op < 0.85 and isinstance(container, list):
            container.append(copy.deepcopy(container[key]))  # duplicate entry (ids too)
        else:
            container[key] = copy.deepcopy(rng.choice(locations)[0])  # graft another subtree
    return json.dumps(data, ensure_ascii=rng.random() < 0.5)  # NaN/Infinity allowed by json


def _mutate_text(text, rng):
    op = rng.random()
    if op < 0.4:
        return text[: rng.randrange(len(text))]
    chars = list(text)
    for _ in range(rng.randint(1, 5)):
        chars[rng.randrange(len(chars))] = rng.choice('{}[],:"0\\ x\x00é')
    return "".join(chars)


def _check_loader_and_mapper(path, image_root, mapper):
    try:
        records = load_coco_json(path, image_root)
    except DATA_ERRORS:
        records = []
    for record in records[:2]:
        try:
            out = mapper(record)
        except BadSampleError:
            continue
        assert out["image"].dtype.is_floating_point is False and out["instances"]["boxes"].shape[1] == 4
    problems = ProblemLog(strict=False)
    try:
        load_coco_json(path, image_root, problems=problems)
    except DATA_ERRORS:
        pass


def test_fuzzed_coco_json(corpus, tmp_path):
    base = corpus.valid_coco(tmp_path, n=3)
    valid = json.loads(base.read_text())
    mapper = DatasetMapper(is_train=True, min_size=(24,), max_size=64, max_image_pixels=10_000)
    rng = random.Random(1234)
    path = tmp_path / "fuzz.json"
    outcomes = {"ok": 0, "error": 0}
    for case in range(N_JSON):
        text = _mutate_tree(valid, rng) if case % 4 else _mutate_text(json.dumps(valid), rng)
        path.write_text(text, encoding="utf-8")
        _check_loader_and_mapper(path, tmp_path / "img", mapper)
        try:
            load_coco_json(path, tmp_path / "img")
            outcomes["ok"] += 1
        except DATA_ERRORS:
            outcomes["error"] += 1
        if case % 10 == 0:  # the check tool on a subset (it decodes every image)
            source = {"format": "coco", "json": str(path), "images": str(tmp_path / "img"), "label": "fuzz"}
            report = check_dataset.check_sources([source], max_pixels=10_000, progress=False)
            json.dumps(report)  # the --json output is serialisable
    assert outcomes["ok"] > 10 and outcomes["error"] > 10  # the mutations exercise both paths


def _corrupt(data: bytes, rng: random.Random) -> bytes:
    op = rng.random()
    buf = bytearray(data)
    if op < 0.3:
        return bytes(buf[: rng.randrange(1, len(buf))])
    if op < 0.7:
        for _ in range(rng.randint(1, 20)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    if op < 0.85:
        at = rng.randrange(len(buf))
        return bytes(buf[:at]) + os.urandom(rng.randint(1, 64)) + bytes(buf[at:])
    return bytes(buf[:16]) + bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))  # header + junk


def test_fuzzed_images(corpus, tmp_path):
    rng = random.Random(99)
    sources = [corpus.jpeg_bytes(24, 32, 1), corpus.png_bytes(24, 32, 2)]
    buf = corpus.io.BytesIO()
    corpus.Image.fromarray(corpus.noise(24, 32)).convert("P").save(buf, format="GIF")
    sources.append(buf.getvalue())
    records = []
    decoded = 0
    for case in range(N_IMAGES):
        path = tmp_path / f"c{case}.img"
        path.write_bytes(_corrupt(rng.choice(sources), rng))
        records.append({"file_name": str(path), "height": 24, "width": 32, "annotations": []})
        try:
            img = read_image(str(path), max_pixels=1_000_000)
        except BadSampleError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            continue
        decoded += 1
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert 0 < decoded < N_IMAGES
    problems = ProblemLog(strict=False)
    check_dataset.check_images(records, problems, max_pixels=1_000_000, progress=False)
    assert problems.count("error") >= N_IMAGES - decoded
