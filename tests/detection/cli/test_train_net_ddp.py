"""tools/train_net.py under torchrun with 2 CPU processes (gloo): the real detector trains
under DDP, SIGTERM to torchrun stops every rank at one iteration with a checkpoint, and
--resume finishes with the evaluation gathered from both ranks. Then two nodes simulated on
this machine (two torchrun launches, static rendezvous on 127.0.0.1): only node 0 writes,
a resume from a shared OUTPUT_DIR is bit-exact, and an error on node 1 alone stops node 0
with a message naming it. Slow (several process launches): run with
`bash tools/run_tests.sh --slow`."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from helpers import QUICKSTART_CONFIG, REPO_ROOT as ROOT, subprocess_env

pytest.importorskip("detection.modeling")

CONFIG = QUICKSTART_CONFIG
TOOL = os.path.join(ROOT, "tools", "train_net.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
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
needs_distributed = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available in this build"
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from detection.data.shapes import generate_shapes_dataset

    root = tmp_path_factory.mktemp("datasets")
    generate_shapes_dataset(str(root), num_train=10, num_val=4, image_size=(112, 144), seed=0)
    return root


def _env(data_root):
    return subprocess_env(LITEDET_DATASETS=str(data_root), OMP_NUM_THREADS="1", LITEDET_DIST_BACKEND="gloo",
                          CUDA_VISIBLE_DEVICES="")


@pytest.mark.slow
@needs_distributed
def test_torchrun_sigterm_resume_and_gathered_evaluation(data_root, tmp_path):
    out = tmp_path / "out"
    env = _env(data_root)
    cmd = [*TORCHRUN, "--standalone", "--nproc_per_node=2", TOOL, "--config-file", CONFIG]
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


# --------------------------------------------------------------------------- two nodes
# Node-local paths: each node runs in its own working directory with a relative OUTPUT_DIR,
# as two machines without a shared file system would.
FAST = ["SOLVER.MAX_ITER", "6", "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_nodes(tmp_path, data_root, node_args, timeout=150):
    """Launch ``torchrun --nnodes 2 --nproc-per-node 1 --node-rank N --master-addr 127.0.0.1
    --master-port P tools/train_net.py --config-file CONFIG ARGS`` for N = 0 and 1 at once,
    node N in ``tmp_path/nodeN``; returns ``[(exit code, output)]`` per node."""
    port, procs, logs = _free_port(), [], []
    try:
        for node, args in enumerate(node_args):
            (tmp_path / f"node{node}").mkdir(exist_ok=True)
            logs.append(open(tmp_path / f"node{node}.log", "w+"))  # a file: a full pipe could stall a rank
            cmd = [*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                   "--master-addr", "127.0.0.1", "--master-port", str(port), TOOL, "--config-file", CONFIG, *args]
            procs.append(subprocess.Popen(cmd, stdout=logs[-1], stderr=subprocess.STDOUT, env=_env(data_root),
                                          cwd=tmp_path / f"node{node}", start_new_session=True))
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        hung = [node for node, p in enumerate(procs) if p.poll() is None]
        results = []
        for log, p in zip(logs, procs):
            log.seek(0)
            results.append((p.returncode, log.read()))
        assert not hung, f"node(s) {hung} still running after {timeout} s:\n" + "\n".join(o[-3000:] for _, o in results)
        return results
    finally:
        for p in procs:  # torchrun and its worker: the session this test started
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()


@pytest.mark.slow
@needs_distributed
def test_two_nodes_only_node0_writes_and_resume_is_exact(data_root, tmp_path):
    args = [*TINY, *FAST, "OUTPUT_DIR", "out"]
    (code0, log0), (code1, log1) = _run_two_nodes(tmp_path, data_root, [args, args])
    assert code0 == 0 and code1 == 0, log0[-3000:] + log1[-3000:]
    out, node1 = tmp_path / "node0" / "out", tmp_path / "node1"

    # one world of two processes, one per node
    text = (out / "log.txt").read_text()
    assert "Rank of current process: 0. World size: 2" in text
    assert "DistributedDataParallel over 2 processes" in text
    ckpt = torch.load(out / "model_final.pth", weights_only=True)
    assert ckpt["iteration"] == 5 and ckpt["world_size"] == 2 and len(ckpt["rng_states"]) == 2
    assert [s["world_size"] for s in ckpt["data_loader_states"]] == [2, 2]
    assert [s["num_batches"] for s in ckpt["data_loader_states"]] == [6, 6]
    # the final iteration was reached and evaluated; rank 0 ran 2 of the 4 test images and
    # holds the detections of all 4
    assert json.loads((out / "metrics.json").read_text().splitlines()[-1])["iteration"] == 5
    final = json.loads((out / "metrics_final.json").read_text())
    assert final["iteration"] == 5 and "AP" in final["results"]["bbox"]
    assert "Start inference on 2 batches" in text and "on 2 devices" in text
    assert "Evaluation results for litedet_shapes_val" in text
    val = json.loads((data_root / "litedet_shapes" / "annotations" / "instances_val.json").read_text())
    detections = json.loads((out / "inference" / "litedet_shapes_val" / "coco_instances_results.json").read_text())
    assert {d["image_id"] for d in detections} == {im["id"] for im in val["images"]}
    assert f"Results written to {out / 'metrics_final.json'}" in log0 and "Results written" not in log1

    # only global rank 0 writes: node 1's working directory (and its OUTPUT_DIR) stay empty
    assert {"model_0000002.pth", "model_final.pth", "last_checkpoint", "metrics.json", "config.yaml"} <= set(
        os.listdir(out))
    assert list(node1.iterdir()) == []
    assert "Traceback" not in log0 + log1

    # --resume from a shared OUTPUT_DIR (both nodes name the same folder) after iteration 2
    # ends with the weights of the uninterrupted run, bit for bit: node 1 restored its own
    # RNG and loader state
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(out / "model_0000002.pth", shared)
    (shared / "last_checkpoint").write_text("model_0000002.pth")
    args = ["--resume", *TINY, *FAST, "OUTPUT_DIR", str(shared)]
    (code0, log0), (code1, log1) = _run_two_nodes(tmp_path, data_root, [args, args])
    assert code0 == 0 and code1 == 0, log0[-3000:] + log1[-3000:]
    assert "Resumed; training continues at iteration 3" in (shared / "log.txt").read_text()
    resumed = torch.load(shared / "model_final.pth", weights_only=True)
    assert resumed["iteration"] == 5
    for key, value in ckpt["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert json.loads((shared / "metrics_final.json").read_text())["iteration"] == 5


@pytest.mark.slow
@needs_distributed
def test_two_nodes_an_error_on_node1_stops_node0_with_its_message(data_root, tmp_path):
    # MODEL.WEIGHTS copied to node 0 only: node 1 fails its config check. Before every rank
    # agreed on start-up errors, node 0 died in its first collective with a gloo traceback
    # ("Connection closed by peer"; with NCCL it would hang until the collective timeout).
    weights = tmp_path / "node0" / "init.pth"
    weights.parent.mkdir()
    torch.save({"model": {}}, weights)
    args = [*TINY, *FAST, "MODEL.WEIGHTS", "init.pth", "OUTPUT_DIR", "out"]
    (code0, log0), (code1, log1) = _run_two_nodes(tmp_path, data_root, [args, args], timeout=90)
    assert code0 != 0 and code1 != 0
    missing = "config error: MODEL.WEIGHTS: checkpoint file not found: init.pth"
    assert f"train_net.py: {missing}" in log1
    assert f"train_net.py: stopped because rank 1 failed: {missing}" in log0, log0[-3000:]
    assert "[rank0]: Traceback" not in log0 and "Connection closed by peer" not in log0
    assert not (tmp_path / "node0" / "out").exists()  # stopped before writing anything
