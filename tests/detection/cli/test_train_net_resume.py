"""tools/train_net.py survives being killed: SIGKILL mid-run, --resume, SIGTERM (checkpoint
and clean exit), --resume again, and the final weights equal an uninterrupted run's
bit for bit (CPU, one thread, one data-loader worker)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import QUICKSTART_CONFIG, REPO_ROOT as ROOT

pytest.importorskip("detection.modeling")

CONFIG = QUICKSTART_CONFIG
# Tiny and quick, but with everything that makes resuming hard: random augmentation
# (flip, scale choice), a data-loader worker, RPN/RoI sampling (torch RNG), AdamW state,
# a cosine schedule with warmup and gradient clipping.
TINY = [
    "MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x",
    "INPUT.MIN_SIZE_TRAIN", "(96, 128)", "INPUT.MAX_SIZE_TRAIN", "200",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.LIGHT_HEAD.OHEM_TOPK", "16",
    "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "1", "SEED", "3",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "20", "SOLVER.WARMUP_ITERS", "3",
    "SOLVER.CHECKPOINT_PERIOD", "3",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from detection.data.shapes import generate_shapes_dataset

    root = tmp_path_factory.mktemp("datasets")
    generate_shapes_dataset(str(root), num_train=10, num_val=2, image_size=(112, 144), seed=0)
    return root


def _start(out, data_root, resume=False):
    env = dict(os.environ, LITEDET_DATASETS=str(data_root), OMP_NUM_THREADS="1", LITEDET_PROGRESS="0")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", CONFIG]
    if resume:
        cmd.append("--resume")
    return subprocess.Popen(
        [*cmd, *TINY, "OUTPUT_DIR", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(data_root),
    )


def _wait_for_checkpoint(proc, out, name, timeout=120):
    """Poll until ``last_checkpoint`` names ``name`` (the file is complete by then)."""
    tag = out / "last_checkpoint"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tag.exists() and tag.read_text() == name:
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before {name} was written:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"{name} not written within {timeout}s")


def _finish(proc, timeout=180):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def test_sigkill_sigterm_and_resume_match_an_uninterrupted_run_bitwise(data_root, tmp_path):
    ref, run = tmp_path / "reference", tmp_path / "interrupted"
    reference = _start(ref, data_root)  # runs alongside the interrupted one

    # 1. SIGKILL right after the first checkpoint: no chance to clean up
    victim = _start(run, data_root)
    _wait_for_checkpoint(victim, run, "model_0000002.pth")
    victim.send_signal(signal.SIGKILL)
    code, log = _finish(victim)
    assert code == -signal.SIGKILL, log[-3000:]
    assert not (run / "model_final.pth").exists()

    # 2. --resume, then SIGTERM after its first checkpoint: saves and exits with 0
    resumed = _start(run, data_root, resume=True)
    _wait_for_checkpoint(resumed, run, "model_0000005.pth")
    resumed.send_signal(signal.SIGTERM)
    code, log = _finish(resumed)
    assert code == 0, log[-3000:]
    assert "Resumed; training continues at iteration 3" in log
    assert "Interrupted by SIGTERM after iteration" in log and "--resume" in log
    stopped = int(log.split("Interrupted by SIGTERM after iteration ")[1].split(";")[0])
    assert 5 <= stopped < 19
    assert (run / "last_checkpoint").read_text() == f"model_{stopped:07d}.pth"
    assert not (run / "model_final.pth").exists() and not (run / "metrics_final.json").exists()

    # 3. --resume to the end
    code, log = _finish(_start(run, data_root, resume=True))
    assert code == 0, log[-3000:]
    assert f"Resumed; training continues at iteration {stopped + 1}" in log

    code, log = _finish(reference)
    assert code == 0, log[-3000:]
    a = torch.load(ref / "model_final.pth", weights_only=True)
    b = torch.load(run / "model_final.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == 19
    assert a["model"].keys() == b["model"].keys()
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"
    for key in ("optimizer", "scheduler", "data_loader"):  # optimizer moments, schedule, data position
        assert repr(a[key]) == repr(b[key]), key
    for name in ("torch", "python"):
        assert torch.equal(a["rng_states"][0][name]["state"] if name == "python" else a["rng_states"][0][name],
                           b["rng_states"][0][name]["state"] if name == "python" else b["rng_states"][0][name])
