"""Fuzz (fixed seeds, bounded, each case under a timeout): randomly corrupted COCO json files,
VOC xml files and image files go through the loaders, the mapper, the evaluators and the check
tool. Every case either succeeds, reporting the counts it delivers, or stops with one of the
documented errors (DatasetError, BadSampleError, FileNotFoundError): one line naming the file.
Never another exception, a traceback, a hang, or an evaluation that cannot score perfect
detections as perfect."""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import random
import re
import signal

import numpy as np
import pytest
import torch

from detection.cli import check_dataset
from detection.data import DatasetMapper, load_coco_json, load_voc_instances
from detection.data.conventions import usable_annotation
from detection.data.errors import DATA_ERRORS, BadSampleError, ProblemLog, visible
from detection.data.images import read_image
from detection.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

N_JSON, N_XML, N_IMAGES = 400, 300, 150
CASE_TIMEOUT_S = 10
WEIRD = [None, "", "ü/../x", -1, 0, 1.5, 10**20, 10**400, 1e308, math.nan, math.inf, -math.inf, True, [], {},
         [1, 2, 3, 4], {"id": 1}, "1", "\ufeffx"]


@contextlib.contextmanager
def time_limit(what: str):
    """Fail (not hang) when one case takes longer than CASE_TIMEOUT_S."""
    def hung(*_):
        raise TimeoutError(f"{what} did not finish within {CASE_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class LoadCounts(logging.Handler):
    """The counts a loader reports ("Loaded N images, M boxes ...")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reported = None

    def emit(self, record: logging.LogRecord) -> None:
        match = re.match(r"Loaded (\d+) images, (\d+) boxes", record.getMessage())
        if match:
            self.reported = (int(match.group(1)), int(match.group(2)))


def load_reporting(loader, *args, **kwargs):
    """``loader(*args, **kwargs)`` and check that what it says it loaded is what it returns."""
    handler = LoadCounts()
    logger = logging.getLogger(loader.__module__)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        records = loader(*args, **kwargs)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert handler.reported == (len(records), sum(len(r["annotations"]) for r in records))
    return records


def assert_one_line_naming(err: BaseException, path) -> None:
    """One line, naming ``path`` (shown as its repr when it holds invisible characters)."""
    text = str(err)
    assert "\n" not in text and (str(path) in text or visible(str(path)) in text), text


def perfect_outputs(records):
    for r in records:
        kept = [a for a in r["annotations"] if usable_annotation(a)]
        yield r, {
            "boxes": torch.tensor([a["bbox"] for a in kept], dtype=torch.float64).reshape(-1, 4),
            "scores": torch.ones(len(kept)),
            "labels": torch.tensor([a["category_id"] for a in kept], dtype=torch.int64),
        }


def assert_perfect_scores(evaluator, records, metric: str) -> None:
    """Perfect detections score 100, or NaN when there is no ground truth to score."""
    evaluator.prepare()
    for r, out in perfect_outputs(records):
        evaluator.process([r], [out])
    value = evaluator.evaluate()["bbox"][metric]
    has_gt = any(usable_annotation(a) for r in records for a in r["annotations"])
    assert value == pytest.approx(100.0) if has_gt else math.isnan(value), (metric, value)


# ---------------------------------------------------------------------------- COCO json


def _paths(obj):
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


NUMBERS = [0, 1, -1, 2, 0.5, 31.9, 1e6, 2**70, -(10**30), math.nan, math.inf]


def _mutate_numbers(data, rng):
    """Mostly plausible edits, which the loader accepts more often: numbers replaced by other
    numbers, optional keys dropped, flags set, entries duplicated."""
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        ann = rng.choice(data["annotations"])
        op = rng.random()
        if op < 0.4:
            key = rng.choice(["bbox", "area", "id", "image_id", "category_id"])
            if key == "bbox":
                ann["bbox"][rng.randrange(4)] = rng.choice(NUMBERS)
            else:
                ann[key] = rng.choice(NUMBERS)
        elif op < 0.6:
            ann.pop(rng.choice(["area", "id", "iscrowd", "bbox"]), None)
        elif op < 0.8:
            ann[rng.choice(["iscrowd", "ignore", "difficult"])] = rng.choice([0, 1, True])
        elif op < 0.9:
            data["annotations"].append(copy.deepcopy(ann))
        else:
            img = rng.choice(data["images"])
            img[rng.choice(["id", "height", "width"])] = rng.choice(NUMBERS + ["img_x"])
    return json.dumps(data)


def _mutate_text(text, rng):
    op = rng.random()
    if op < 0.4:
        return text[: rng.randrange(len(text))]
    chars = list(text)
    for _ in range(rng.randint(1, 5)):
        chars[rng.randrange(len(chars))] = rng.choice('{}[],:"0\\ x\x00é')
    return "".join(chars)


def test_fuzzed_coco_json(corpus, tmp_path):
    base = corpus.valid_coco(tmp_path, n=3)
    valid = json.loads(base.read_text())
    image_root = tmp_path / "img"
    mapper = DatasetMapper(is_train=True, min_size=(24,), max_size=64, max_image_pixels=10_000)
    rng = random.Random(1234)
    path = tmp_path / "fuzz.json"
    outcomes = {"ok": 0, "error": 0}
    for case in range(N_JSON):
        kind = case % 4
        text = (_mutate_text(json.dumps(valid), rng) if kind == 0 else _mutate_tree(valid, rng) if kind == 1
                else _mutate_numbers(valid, rng))
        path.write_text(text, encoding="utf-8")
        with time_limit(f"COCO case {case}"):
            try:
                records = load_reporting(load_coco_json, path, image_root)
            except DATA_ERRORS as err:
                assert_one_line_naming(err, path)
                records = None
            problems = ProblemLog(strict=False)  # check mode: the same verdict, collected
            try:
                load_coco_json(path, image_root, problems=problems)
                assert (problems.count("error") == 0) == (records is not None), (case, problems.counts)
            except DATA_ERRORS as err:  # file-level: raised in either mode
                assert records is None
                assert_one_line_naming(err, path)
            if records is None:
                outcomes["error"] += 1
                continue
            outcomes["ok"] += 1
            backend = "pycocotools" if case % 5 == 0 else "faster"
            assert_perfect_scores(COCOEvaluator(json_file=str(path), backend=backend, distributed=False), records, "AP")
            for record in records[:2]:
                try:
                    out = mapper(record)
                except BadSampleError as err:
                    assert_one_line_naming(err, record["file_name"])
                    continue
                assert out["image"].dtype == torch.uint8 and out["instances"]["boxes"].shape[1] == 4
            if case % 10 == 1:  # the check tool (it decodes every image) agrees with the loader
                source = {"format": "coco", "json": str(path), "images": str(image_root), "label": "fuzz"}
                report = check_dataset.check_sources([source], max_pixels=10_000, progress=False)
                json.dumps(report)  # the --json output is serialisable
                ds = report["datasets"][0]
                assert (ds["images"], ds["boxes"]) == (len(records), sum(len(r["annotations"]) for r in records))
    assert outcomes["ok"] > 10 and outcomes["error"] > 10  # the mutations exercise both paths


# ---------------------------------------------------------------------------- VOC xml


def _mutate_xml(xml: str, rng: random.Random) -> str:
    tags = sorted(set(re.findall(r"<([a-z]+)>", xml)))
    op = rng.randrange(9)
    if op == 0:  # other case for one element name everywhere
        tag = rng.choice(tags)
        return re.sub(rf"(</?){tag}>", lambda m: m.group(1) + rng.choice([tag.upper(), tag.capitalize()]) + ">", xml)
    if op == 1:  # a namespace
        return xml.replace("<annotation>", '<annotation xmlns="urn:x">', 1)
    if op == 2:  # wrap one element in another
        tag = rng.choice(tags[:-1] or tags)
        return re.sub(rf"(<{tag}>.*?</{tag}>)", r"<wrap>\1</wrap>", xml, count=1, flags=re.S)
    if op == 3:  # delete one element
        tag = rng.choice(tags)
        return re.sub(rf"<{tag}>.*?</{tag}>", "", xml, count=1, flags=re.S)
    if op == 4:  # duplicate one element
        tag = rng.choice(tags)
        return re.sub(rf"(<{tag}>.*?</{tag}>)", r"\1\1", xml, count=1, flags=re.S)
    if op == 5:  # a weird value
        values = re.findall(r">([^<>\s]+)<", xml)
        if values:
            old = rng.choice(values)
            return xml.replace(f">{old}<", f">{rng.choice(['nan', '-1', '1e400', '0.5', 'abc', '', '1.0', 'CAT'])}<", 1)
        return xml
    if op == 6:  # truncated
        return xml[: rng.randrange(len(xml))]
    if op == 7:  # a corrupt character
        i = rng.randrange(len(xml))
        return xml[:i] + rng.choice("<>&\x00\"é") + xml[i + 1:]
    return xml.replace("<annotation>", "<annotation><!-- c --><?pi x?>", 1)  # comments / instructions


def test_fuzzed_voc_xml(corpus, tmp_path):
    root = corpus.valid_voc(tmp_path / "VOC", n=2)
    xml_file = root / "Annotations" / "im1.xml"
    valid = xml_file.read_text()
    rng = random.Random(4321)
    outcomes = {"ok": 0, "error": 0}
    for case in range(N_XML):
        text = valid
        for _ in range(rng.randint(1, 2)):
            text = _mutate_xml(text, rng)
        xml_file.write_text(text, encoding="utf-8")
        with time_limit(f"VOC case {case}"):
            try:
                records = load_reporting(load_voc_instances, root, "train", ("cat", "dog"))
            except DATA_ERRORS as err:
                assert_one_line_naming(err, root)
                outcomes["error"] += 1
                continue
            outcomes["ok"] += 1
            evaluator = PascalVOCDetectionEvaluator(dataset_dicts=records, thing_classes=["cat", "dog"], distributed=False)
            assert_perfect_scores(evaluator, records, "AP50")
            if case % 10 == 0:
                assert_perfect_scores(
                    COCOEvaluator(dataset_dicts=records, thing_classes=["cat", "dog"], distributed=False), records, "AP"
                )
    assert outcomes["ok"] > 10 and outcomes["error"] > 10


# ---------------------------------------------------------------------------- image bytes


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


def _image_sources(corpus):
    import cv2

    sources = [corpus.jpeg_bytes(24, 32, 1), corpus.png_bytes(24, 32, 2)]
    buf = corpus.io.BytesIO()
    corpus.Image.fromarray(corpus.noise(24, 32)).convert("P").save(buf, format="GIF")
    sources.append(buf.getvalue())
    wide = np.random.default_rng(3).integers(0, 65536, (24, 32, 3), dtype=np.uint16)
    sources += [cv2.imencode(".png", wide)[1].tobytes(), cv2.imencode(".tiff", wide[:, :, 0])[1].tobytes()]
    return sources


def test_fuzzed_images(corpus, tmp_path):
    rng = random.Random(99)
    sources = _image_sources(corpus)
    paths = []
    for case in range(N_IMAGES):
        path = tmp_path / f"c{case}.img"
        path.write_bytes(_corrupt(rng.choice(sources), rng))
        paths.append(path)
    os.mkfifo(tmp_path / "fifo.img")  # files that would block or never end
    os.symlink("/dev/zero", tmp_path / "zero.img")
    paths += [tmp_path / "fifo.img", tmp_path / "zero.img"]
    records, decoded = [], 0
    for path in paths:
        records.append({"file_name": str(path), "height": 24, "width": 32, "annotations": []})
        with time_limit(f"reading {path.name}"):
            try:
                img = read_image(str(path), max_pixels=1_000_000)
            except BadSampleError as err:
                assert_one_line_naming(err, path)
                continue
        decoded += 1
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert 0 < decoded < len(paths) - 2
    problems = ProblemLog(strict=False)
    with time_limit("check_images"):
        check_dataset.check_images(records, problems, max_pixels=1_000_000, progress=False)
    assert problems.count("error") >= len(paths) - decoded


# ---------------------------------------------------------------------------- the tool


@pytest.mark.parametrize("seed", range(6))
def test_fuzzed_datasets_through_the_check_tool(seed, corpus, tmp_path, capsys):
    """tools/check_dataset.py itself: exit 0 or 1 with a report (never a traceback), the error
    count in the last line matching the problems listed."""
    rng = random.Random(seed)
    path = corpus.valid_coco(tmp_path, n=3)
    path.write_text(_mutate_tree(json.loads(path.read_text()), rng))
    (tmp_path / "img" / "1.png").write_bytes(_corrupt((tmp_path / "img" / "1.png").read_bytes(), rng))
    with time_limit(f"check_dataset seed {seed}"):
        rc = check_dataset.main(["--coco", str(path), "--images", str(tmp_path / "img"), "--quiet", "--json",
                                 "--workers", "0"])
    report = json.loads(capsys.readouterr().out)
    assert rc == (0 if report["ok"] else 1)
    assert report["errors"] == sum(p["count"] for p in report["problems"] if p["severity"] == "error")
