"""``python -m detection.d2.train_net``: detectron2's own trainer and evaluator running a
shipped configs/detectron2 YAML (shrunk) on a COCO-json dataset given by --register-coco,
then --eval-only and --resume on its output. Needs detectron2; skipped without it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip(
    "detectron2",
    reason="detectron2 is not installed (optional; build it from source as docs/detectron2.md explains)",
)

from helpers import REPO_ROOT as ROOT, subprocess_env  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "detectron2", "lighthead_shufflenet_v2_1.0x.yaml")
TINY = [
    "MODEL.DEVICE", "cpu", "MODEL.LITEDET.BACKBONE", "shufflenet_v2_0.5x", "MODEL.ROI_HEADS.NUM_CLASSES", "2",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "40",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "200", "MODEL.RPN.POST_NMS_TOPK_TEST", "40",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.LIGHT_HEAD.OHEM_TOPK", "12", "MODEL.LIGHT_HEAD.FC_DIM", "128",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "192", "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "192", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.001", "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0",
    "DATASETS.TRAIN", "('tiny_train',)", "DATASETS.TEST", "('tiny_val',)",
]


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    """Four 160x200 images with two boxes each, in COCO json form."""
    import cv2

    root = tmp_path_factory.mktemp("coco")
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(4):
        name = f"img{i}.jpg"
        image = rng.integers(0, 60, (160, 200, 3), dtype=np.uint8)
        image[30:90, 20:80] = (230, 40, 40)
        image[60:140, 110:190] = (40, 220, 40)
        cv2.imwrite(str(root / name), image)
        images.append({"id": i + 1, "file_name": name, "height": 160, "width": 200})
        for k, (box, cat) in enumerate((([20, 30, 60, 60], 1), ([110, 60, 80, 80], 2))):
            annotations.append({"id": 10 * i + k + 1, "image_id": i + 1, "category_id": cat, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]
    (root / "train.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def run_train_net(args, cwd):
    env = subprocess_env(OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "detection.d2.train_net", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_train_then_eval_only_then_resume(coco_folder, tmp_path):
    json_file, images = str(coco_folder / "train.json"), str(coco_folder)
    register = ["--register-coco", "tiny_train", json_file, images, "--register-coco", "tiny_val", json_file, images]
    out = tmp_path / "out"
    result = run_train_net([*register, "--config-file", CONFIG, *TINY, "SOLVER.MAX_ITER", "3",
                            "SOLVER.CHECKPOINT_PERIOD", "2", "OUTPUT_DIR", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model_final.pth").is_file() and (out / "model_0000001.pth").is_file()
    log = (out / "log.txt").read_text()
    assert "Evaluation results for bbox" in log and "iter: 2" in log
    assert "LitedetBackbone" in log or "LightHeadROIHeads" in log  # the model summary names our parts

    result = run_train_net([*register, "--eval-only", "--config-file", CONFIG, *TINY,
                            "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "eval" / "inference" / "coco_instances_results.json").is_file()

    # --resume continues from the last checkpoint (iteration 3) up to a longer MAX_ITER
    result = run_train_net([*register, "--resume", "--config-file", CONFIG, *TINY, "SOLVER.MAX_ITER", "5",
                            "SOLVER.CHECKPOINT_PERIOD", "100", "OUTPUT_DIR", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "Loading from " in log and "model_final.pth" in log and "Starting training from iteration 3" in log


def test_register_coco_names_a_missing_file(coco_folder, tmp_path):
    result = run_train_net(["--register-coco", "x", str(tmp_path / "missing.json"), str(coco_folder),
                            "--config-file", CONFIG, *TINY], tmp_path)
    assert result.returncode != 0
    assert "--register-coco x: annotation file" in result.stderr and "missing.json does not exist" in result.stderr
