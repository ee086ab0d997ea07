"""inference_on_dataset, DatasetEvaluators, build_evaluator and the distributed gather."""
from __future__ import annotations

import datetime
import logging
import sys
import types
from typing import Any, Dict, List

import pytest
import torch
from torch import nn

from detection.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    PascalVOCDetectionEvaluator,
    build_evaluator,
    inference_on_dataset,
)
from helpers.records import annotation, record

CLASSES = ["cat", "dog"]
A = [10.0, 10.0, 60.0, 70.0]
B = [100.0, 40.0, 220.0, 200.0]


def make_records() -> List[dict]:
    return [record(i, [annotation(A, 0), annotation(B, 1)], 300, 300) for i in range(6)]


class FakeDetector(nn.Module):
    """Returns fixed detections per image id: on even images both objects, on odd images only the cat."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.calls: List[Dict[str, Any]] = []

    def forward(self, batch: List[dict]) -> List[dict]:
        self.calls.append({"training": self.training, "inference_mode": torch.is_inference_mode_enabled()})
        outs = []
        for x in batch:
            if x["image_id"] % 2 == 0:
                boxes, scores, labels = [A, B], [0.9, 0.8], [0, 1]
            else:
                boxes, scores, labels = [A], [0.7], [0]
            outs.append(
                {
                    "boxes": torch.tensor(boxes) + self.weight,
                    "scores": torch.tensor(scores),
                    "labels": torch.tensor(labels, dtype=torch.int64),
                }
            )
        return outs


def batches(records: List[dict], size: int) -> List[List[dict]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def test_inference_on_dataset_runs_both_evaluators(caplog: pytest.LogCaptureFixture) -> None:
    records = make_records()
    model = FakeDetector()
    model.train()
    evaluators = DatasetEvaluators(
        [
            PascalVOCDetectionEvaluator(dataset_dicts=records, thing_classes=CLASSES),
            COCOEvaluator(dataset_dicts=records, thing_classes=CLASSES, backend="faster"),
        ]
    )
    with caplog.at_level(logging.INFO, logger="detection.evaluation"):
        # PascalVOC and COCO both report under "bbox": merging them must fail loudly...
        with pytest.raises(KeyError, match="same key"):
            inference_on_dataset(model, batches(records, 2), evaluators, progress=False)

    # ...so run them separately; every cat found, half of the dogs (recall 0.5 at precision 1).
    voc_ev = PascalVOCDetectionEvaluator(dataset_dicts=records, thing_classes=CLASSES)
    voc = inference_on_dataset(model, batches(records, 2), voc_ev, progress=True)
    assert voc["bbox"]["AP50-cat"] == pytest.approx(100.0)
    assert voc["bbox"]["AP50-dog"] == pytest.approx(50.0)
    assert voc["bbox"]["AP50"] == pytest.approx(75.0)
    coco_ev = COCOEvaluator(dataset_dicts=records, thing_classes=CLASSES)
    coco = inference_on_dataset(model, batches(records, 4), [coco_ev], progress=False)
    assert coco["bbox"]["AP-cat"] == pytest.approx(100.0)
    assert 49.0 < coco["bbox"]["AP-dog"] < 51.0  # COCO's 101-point interpolation: 50.5

    assert model.training  # restored after evaluation
    assert all(not c["training"] and c["inference_mode"] for c in model.calls)


def test_timing_is_logged_after_warmup(caplog: pytest.LogCaptureFixture) -> None:
    records = make_records() * 2
    with caplog.at_level(logging.INFO, logger="detection.evaluation"):
        res = inference_on_dataset(FakeDetector(), batches(records, 1), None, progress=False, num_warmup=3)
    assert res == {}
    assert "s / img per device" in caplog.text


def test_generator_loader_and_evaluator_returning_none() -> None:
    class Counter(DatasetEvaluator):
        def reset(self) -> None:
            self.n = 0

        def process(self, inputs, outputs) -> None:
            self.n += len(outputs)

    counter = Counter()
    res = inference_on_dataset(FakeDetector(), (b for b in batches(make_records(), 4)), counter, progress=False)
    assert res == {} and counter.n == 6


# ----------------------------------------------------------------------------- build_evaluator
@pytest.fixture
def fake_catalog(monkeypatch: pytest.MonkeyPatch):
    """Stand-in for detection.data (written elsewhere) with a tiny MetadataCatalog/DatasetCatalog."""
    records = make_records()
    metas = {
        "toy_voc": types.SimpleNamespace(thing_classes=CLASSES, evaluator_type="voc"),
        "toy_coco": types.SimpleNamespace(thing_classes=CLASSES, evaluator_type="coco"),
        "toy_lvis": types.SimpleNamespace(thing_classes=CLASSES, evaluator_type="lvis"),
        "toy_none": types.SimpleNamespace(thing_classes=CLASSES),
    }
    mod = types.ModuleType("detection.data")
    mod.MetadataCatalog = types.SimpleNamespace(get=lambda name: metas[name])
    mod.DatasetCatalog = types.SimpleNamespace(get=lambda name: records)
    monkeypatch.setitem(sys.modules, "detection.data", mod)
    return records


def test_build_evaluator_picks_by_evaluator_type(fake_catalog, tmp_path) -> None:
    from detection.config import get_cfg

    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    voc = build_evaluator(cfg, "toy_voc")
    assert isinstance(voc, PascalVOCDetectionEvaluator)
    coco = build_evaluator(cfg, "toy_coco", output_dir=str(tmp_path / "c"))
    assert isinstance(coco, COCOEvaluator)
    res = inference_on_dataset(FakeDetector(), batches(fake_catalog, 3), coco, progress=False)
    assert res["bbox"]["AP-cat"] == pytest.approx(100.0)
    assert (tmp_path / "c" / "coco_instances_results.json").exists()
    res = inference_on_dataset(FakeDetector(), batches(fake_catalog, 3), voc, progress=False)
    assert res["bbox"]["AP50-dog"] == pytest.approx(50.0)
    assert (tmp_path / "inference" / "toy_voc" / "voc_detection_results.json").exists()

    with pytest.raises(ValueError, match="'lvis'.*known types"):
        build_evaluator(cfg, "toy_lvis")
    with pytest.raises(ValueError, match="no evaluator_type"):
        build_evaluator(cfg, "toy_none")


# ----------------------------------------------------------------------------- distributed
def _dist_worker(rank: int, world: int, init_file: str, queue) -> None:
    # A short timeout turns a rank stuck in a collective into a failure instead of a hung test.
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        records = make_records()
        mine = records[rank::world]  # each rank sees a different shard, like an InferenceSampler
        out = {}
        for name, ev in [
            ("voc", PascalVOCDetectionEvaluator(dataset_dicts=records, thing_classes=CLASSES)),
            ("coco", COCOEvaluator(dataset_dicts=records, thing_classes=CLASSES)),
        ]:
            out[name] = inference_on_dataset(FakeDetector(), batches(mine, 2), ev, progress=False)
        queue.put((rank, out))
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_gathers_to_rank0(tmp_path) -> None:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "init"), queue), nprocs=2, join=True)
    got = dict(queue.get() for _ in range(2))
    assert got[1] == {"voc": {}, "coco": {}}
    records = make_records()
    voc_ev = PascalVOCDetectionEvaluator(dataset_dicts=records, thing_classes=CLASSES)
    coco_ev = COCOEvaluator(dataset_dicts=records, thing_classes=CLASSES)
    single_voc = inference_on_dataset(FakeDetector(), batches(records, 2), voc_ev, progress=False)
    single_coco = inference_on_dataset(FakeDetector(), batches(records, 2), coco_ev, progress=False)
    assert got[0]["voc"]["bbox"] == pytest.approx(single_voc["bbox"], nan_ok=True)
    assert got[0]["coco"]["bbox"] == pytest.approx(single_coco["bbox"], nan_ok=True)
    assert got[0]["voc"]["bbox"]["AP50-dog"] == pytest.approx(50.0)
