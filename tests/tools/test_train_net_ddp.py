"""tools/train_net.py under torchrun with 2 CPU processes (gloo): the real detector trains
under DDP, SIGTERM to torchrun stops every rank at one iteration with a checkpoint, and
--resume finishes with the evaluation gathered from both ranks. Slow (several process
launches): run with `bash tools/run_tests.sh --slow`."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("detection.modeling")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml")
TINY = [
    "MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x",
    "INPUT.MIN_SIZE_TRAIN", "(96, 128)", "INPUT.MAX_SIZE_TRAIN", "200",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "200", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.LIGHT_HEAD.OHEM_TOPK", "16",
    "DATASETS.TEST", "('litedet_shapes_val',)", "DATALOADER.NUM_WORKERS", "0", "SEED", "3",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "40", "SOLVER.WARMUP_ITERS", "3",
    "SOLVER.CHECKPOINT_PERIOD", "5",
]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available in this build")
def test_torchrun_sigterm_resume_and_gathered_evaluation(tmp_path):
    from detection.data.shapes import generate_shapes_dataset

    data = tmp_path / "datasets"
    generate_shapes_dataset(str(data), num_train=10, num_val=4, image_size=(112, 144), seed=0)
    out = tmp_path / "out"
    env = dict(os.environ, LITEDET_DATASETS=str(data), OMP_NUM_THREADS="1", LITEDET_DIST_BACKEND="gloo",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(ROOT, "tools", "train_net.py"), "--config-file", CONFIG]
    first = subprocess.Popen([*cmd, *TINY, "OUTPUT_DIR", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env, cwd=str(tmp_path))
    deadline = time.monotonic() + 240
    while not ((out / "last_checkpoint").exists() and (out / "last_checkpoint").read_text() == "model_0000004.pth"):
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # torchrun forwards it to both workers
    log, _ = first.communicate(timeout=120)
    stops = [line for line in log.splitlines() if "Received SIGTERM: stopped after iteration" in line]
    assert len(stops) == 2, log[-3000:]  # both ranks, at the same iteration
    it = {line.split("stopped after iteration ")[1].split(";")[0] for line in stops}
    assert len(it) == 1 and not (out / "model_final.pth").exists()
    assert (out / "last_checkpoint").read_text() in (f"model_{int(next(iter(it))):07d}.pth", "model_0000004.pth")

    res = subprocess.run([*cmd, "--resume", *TINY, "OUTPUT_DIR", str(out)], capture_output=True, text=True,
                         env=env, cwd=str(tmp_path), timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ckpt = torch.load(out / "model_final.pth", weights_only=True)
    assert ckpt["iteration"] == 39 and ckpt["world_size"] == 2 and len(ckpt["rng_states"]) == 2
    final = json.loads((out / "metrics_final.json").read_text())
    assert "AP" in final["results"]["bbox"]
    assert "Evaluation results for bbox" in (out / "log.txt").read_text()
    assert not [f for f in os.listdir(out) if "rank" in f]
