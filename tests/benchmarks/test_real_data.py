"""benchmarks/real_data.py: the time-budget schedule, and a --quick run end to end on a tiny
VOC copy built here (never BCCD itself); the accuracies are the script's job, not a test's."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detection.config import load_config

CLASSES = ("RBC", "WBC", "Platelets")


def make_tiny_voc(root: Path, n_trainval: int = 4, n_test: int = 2) -> Path:
    """Discs on a noisy background, one class per colour, VOC layout with trainval/test lists."""
    rng = np.random.default_rng(0)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"img_{i:03d}" for i in range(n_trainval + n_test)]
    colours = {"RBC": (200, 40, 40), "WBC": (60, 60, 200), "Platelets": (150, 60, 150)}
    yy, xx = np.mgrid[0:96, 0:128]
    for image_id in ids:
        img = rng.integers(180, 230, (96, 128, 3)).astype(np.uint8)
        objects = []
        for k, name in enumerate(CLASSES):
            r = (14, 20, 6)[k]
            cx, cy = 20 + 40 * k + int(rng.integers(-4, 5)), int(rng.integers(r + 2, 96 - r - 2))
            img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colours[name]
            objects.append(f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{cx - r + 1}</xmin>"
                           f"<ymin>{cy - r + 1}</ymin><xmax>{cx + r}</xmax><ymax>{cy + r}</ymax></bndbox></object>")
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>128</width><height>96</height></size>{''.join(objects)}</annotation>")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids[:n_trainval]) + "\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids[n_trainval:]) + "\n")
    return root


def test_budget_schedule_warms_up_then_follows_the_cosine_to_its_end(load_benchmark):
    bench = load_benchmark("real_data")
    cfg = load_config("", ["SOLVER.BASE_LR", "0.002", "SOLVER.BASE_LR_END", "0.0002", "SOLVER.WARMUP_ITERS", "10",
                           "SOLVER.WARMUP_FACTOR", "0.1"])
    assert bench.budget_lr_factor(cfg, 0, 0.0) == pytest.approx(0.1)
    assert bench.budget_lr_factor(cfg, 5, 0.0) == pytest.approx(0.1 + 0.9 * 0.5)
    assert bench.budget_lr_factor(cfg, 10, 0.0) == pytest.approx(1.0)
    assert bench.budget_lr_factor(cfg, 10, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert bench.budget_lr_factor(cfg, 10**6, 1.0) == pytest.approx(0.1)  # BASE_LR_END / BASE_LR
    assert bench.budget_lr_factor(cfg, 10**6, 1.7) == pytest.approx(0.1)  # a late check stays at the end
    spent = np.linspace(0, 1, 11)
    factors = [bench.budget_lr_factor(cfg, 100, s) for s in spent]
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert factors[3] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.3)))


def test_quick_run_trains_all_three_and_reports(load_benchmark, tmp_path, capsys):
    import torchvision

    bench = load_benchmark("real_data")
    voc = make_tiny_voc(tmp_path / "voc")
    weights = tmp_path / "mobilenet_v2_imagenet.pth"  # torchvision layout, random values
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    out = tmp_path / "results.json"
    code = bench.main(["--quick", "--minutes", "0.05", "--voc-dir", str(voc), "--imagenet-weights", str(weights),
                       "--json", str(out), "--progress-every", "0"])
    assert code == 0
    captured = capsys.readouterr()
    text = captured.out
    report = json.loads(out.read_text())
    assert report["train"] == "real_data_trainval" and report["classes"] == list(CLASSES)
    assert set(report["results"]) == {"ours", "reference", "imagenet"}
    for name, res in report["results"].items():
        assert res["iterations"] >= 1 and res["train_seconds"] >= 0.05 * 60
        # the clock stopped it, and its last step ran at the schedule's LR for the share of the
        # budget spent when that step began
        cfg = load_config(bench.os.path.join(bench.REPO_ROOT, bench.OURS_CONFIG), bench.QUICK_OVERRIDES)
        assert 0.0 <= res["last_step_started_at"] < 1.0, name
        assert res["last_lr_factor"] == pytest.approx(
            bench.budget_lr_factor(cfg, res["iterations"] - 1, res["last_step_started_at"])), name
        assert 0.0 <= res["voc"]["AP50"] <= 100.0 and set(res["voc"]) >= {f"AP50-{c}" for c in CLASSES}
        assert 0.0 <= res["coco"]["AP"] <= 100.0
        assert f"{name}: {res['iterations']} iterations" in text
        label = {"reference": "torchvision"}.get(name, name)
        assert re.search(rf"\[{label}\] [\d.]+/0\.05 min: \d+ it, loss [\d.]+, lr x[\d.]+", captured.err), captured.err
    assert "VOC mAP@0.5 from scratch: ours" in text and "target 0.80" in text
    ours, ref = (report["results"][k]["voc"]["AP50"] / 100 for k in ("ours", "reference"))
    line = re.search(r"VOC mAP@0\.5: ours ([\d.e+-]+) , torchvision ([\d.e+-]+) , ratio ([\d.e+-]+)", text)
    assert line, text
    assert float(line[1]) == pytest.approx(ours, abs=1e-3) and float(line[2]) == pytest.approx(max(ref, 1e-4), rel=1e-3)
    assert float(line[3]) == pytest.approx(ours / max(ref, 1e-4), rel=1e-2)
    imagenet = re.search(r"ImageNet init: VOC mAP@0\.5 ([\d.]+) vs ([\d.]+) from scratch", text)
    assert imagenet and float(imagenet[1]) == pytest.approx(report["results"]["imagenet"]["voc"]["AP50"] / 100, abs=1e-3)


def test_missing_dataset_is_one_clear_error(load_benchmark, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LITEDET_DATASETS", str(tmp_path))
    assert load_benchmark("real_data").main(["--quick"]) == 2
    assert "prepare.py bccd --from" in capsys.readouterr().err


def test_missing_imagenet_file_is_one_clear_error_before_training(load_benchmark, tmp_path, capsys):
    voc = make_tiny_voc(tmp_path / "voc")
    code = load_benchmark("real_data").main(["--quick", "--voc-dir", str(voc), "--imagenet-weights", str(tmp_path / "nope.pth")])
    captured = capsys.readouterr()
    assert code == 2 and "[1] ours" not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "nope.pth: file not found" in err[0]
