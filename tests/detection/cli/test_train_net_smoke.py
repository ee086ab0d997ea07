"""End to end on CPU: tools/train_net.py trains a tiny Light-Head R-CNN for a few
iterations on a tiny generated litedet_shapes, then --eval-only re-evaluates the result."""
import json
import os
import subprocess
import sys

import pytest
import torch

from helpers import QUICKSTART_CONFIG, REPO_ROOT as ROOT

pytest.importorskip("detection.modeling")

CONFIG = QUICKSTART_CONFIG
TINY = [
    "MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "200",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "200",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "20",
    "DATALOADER.NUM_WORKERS", "0", "SEED", "0",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from detection.data.shapes import generate_shapes_dataset

    root = tmp_path_factory.mktemp("datasets")
    generate_shapes_dataset(str(root), num_train=12, num_val=6, image_size=(128, 160), seed=0)
    return root


def _run(args, data_root, timeout=120):
    env = dict(os.environ, LITEDET_DATASETS=str(data_root), OMP_NUM_THREADS="1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), *args],
        capture_output=True, text=True, env=env, cwd=str(data_root), timeout=timeout,
    )


def test_train_then_eval_only(data_root, tmp_path):
    out = tmp_path / "run"
    res = _run(
        ["--config-file", CONFIG, *TINY, "SOLVER.MAX_ITER", "5", "SOLVER.IMS_PER_BATCH", "2",
         "SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "3",
         "OUTPUT_DIR", str(out)],
        data_root,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"Results written to {out / 'metrics_final.json'}" in res.stdout

    # checkpoints
    assert (out / "model_0000002.pth").is_file() and (out / "model_final.pth").is_file()
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 4 and {"model", "optimizer", "scheduler"} <= set(ckpt)
    # run records
    assert (out / "config.yaml").is_file() and "Using seed 0" in (out / "log.txt").read_text()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    last = lines[-1]
    assert last["iteration"] == 4
    assert last["total_loss"] > 0 and last["lr"] > 0 and last["time"] > 0
    assert any(k.startswith("loss_") for k in last)
    # final evaluation of both test sets lands in the same line
    assert "litedet_shapes_val/bbox/AP" in last and "litedet_shapes_voc_val/bbox/AP50_07" in last
    final = json.loads((out / "metrics_final.json").read_text())
    assert final["eval_only"] is False and final["datasets"] == ["litedet_shapes_val", "litedet_shapes_voc_val"]
    coco = final["results"]["litedet_shapes_val"]["bbox"]
    voc = final["results"]["litedet_shapes_voc_val"]["bbox"]
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(coco)
    assert {"AP50", "AP50_07"} <= set(voc) and all(f"AP50-{c}" in voc for c in ("circle", "cross"))
    for ap in (coco["AP"], voc["AP50"], voc["AP50_07"]):
        assert ap is None or 0.0 <= ap <= 100.0

    # --eval-only from the trained weights
    ev = tmp_path / "eval"
    res = _run(
        ["--config-file", CONFIG, "--eval-only", *TINY, "MODEL.WEIGHTS", str(out / "model_final.pth"),
         "OUTPUT_DIR", str(ev)],
        data_root,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((ev / "metrics_final.json").read_text())
    assert result["eval_only"] is True and result["iteration"] == 4
    assert result["weights"] == str(out / "model_final.pth")
    assert set(result["results"]["litedet_shapes_val"]["bbox"]) >= {"AP", "AP50", "AP75"}
    assert set(result["results"]["litedet_shapes_voc_val"]["bbox"]) >= {"AP50", "AP50_07"}
    for name, metric in (("litedet_shapes_val", "AP"), ("litedet_shapes_voc_val", "AP50")):
        trained = final["results"][name]["bbox"][metric]
        reloaded = result["results"][name]["bbox"][metric]
        if trained is None:
            assert reloaded is None
        else:  # same weights, same data: the same number
            assert reloaded == pytest.approx(trained, abs=1e-6)
    assert not (ev / "metrics.json").exists()
