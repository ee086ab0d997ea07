"""tools/train_net.py on a tiny generated COCO dataset with one truncated image:
BAD_SAMPLE_POLICY skip trains to the end with the skips counted in the log (exit 0);
"error" (the default) stops with exit 2 and one stderr line naming the file."""
import os
import subprocess
import sys

import pytest

from helpers import QUICKSTART_CONFIG, REPO_ROOT as ROOT

pytest.importorskip("detection.modeling")

CONFIG = QUICKSTART_CONFIG


@pytest.fixture(scope="module")
def tiny_broken_coco(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("tiny_coco")
    corpus.valid_coco(root, n=4, size=(64, 80))
    data = (root / "img" / "1.png").read_bytes()
    (root / "img" / "1.png").write_bytes(data[: len(data) // 3])
    return root


def _train(root, out, *extra):
    args = [
        sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", CONFIG,
        "MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "MODEL.ROI_HEADS.NUM_CLASSES", "2",
        "DATASETS.REGISTER_COCO", f"[['tiny_broken', '{root / 'ann.json'}', '{root / 'img'}']]",
        "DATASETS.TRAIN", "('tiny_broken',)", "DATASETS.TEST", "()",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "100",
        "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(2,)",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "DATALOADER.NUM_WORKERS", "0", "SEED", "0", "OUTPUT_DIR", str(out), *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=180)


def test_skip_policy_trains_and_logs_the_skip_count(tiny_broken_coco, tmp_path):
    res = _train(tiny_broken_coco, tmp_path / "skip", "DATALOADER.BAD_SAMPLE_POLICY", "skip",
                 "DATALOADER.MAX_BAD_SAMPLE_FRACTION", "0.5")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    log = (tmp_path / "skip" / "log.txt").read_text()
    assert "Skipped bad sample " + str(tiny_broken_coco / "img" / "1.png") in log
    assert "1 skipped so far" in log
    assert (tmp_path / "skip" / "model_final.pth").is_file()


def test_error_policy_exits_non_zero_naming_the_file(tiny_broken_coco, tmp_path):
    res = _train(tiny_broken_coco, tmp_path / "error")
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last == f"train_net.py: data error: {tiny_broken_coco / 'img' / '1.png'}: corrupt or truncated PNG data (image file is truncated)"
    assert "Traceback" not in res.stderr
