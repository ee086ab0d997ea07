"""DistributedDataParallel through torchrun: 2 CPU processes (gloo) train the same
weights as one process with the same total batch; only rank 0 writes files."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from detection.engine import Trainer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
_spec = importlib.util.spec_from_file_location("litedet_engine_fakes", os.path.join(HERE, "engine_fakes.py"))
_fakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fakes)

MAX_ITER, TOTAL_BATCH = 7, 4


def _metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available in this build")
def test_two_process_ddp_matches_single_process(tmp_path):
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    env = dict(
        os.environ, OMP_NUM_THREADS="1", LITEDET_DIST_BACKEND="gloo", CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    )
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         os.path.join(HERE, "ddp_train_worker.py"), str(ddp_out), str(MAX_ITER), str(TOTAL_BATCH)],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    # the same total batch in one process
    cfg = _fakes.make_cfg(single_out, MAX_ITER=MAX_ITER, CHECKPOINT_PERIOD=3, IMS_PER_BATCH=TOTAL_BATCH,
                          STEPS=(MAX_ITER // 2,))
    Trainer(cfg, model=_fakes.LinearFake(), data_loader=_fakes.linear_train_loader(TOTAL_BATCH), log_period=1).train()

    ddp = torch.load(ddp_out / "model_final.pth", weights_only=True)
    single = torch.load(single_out / "model_final.pth", weights_only=True)
    for k, v in single["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert not torch.equal(single["model"]["linear.weight"], _fakes.LinearFake().linear.weight.detach())  # it trained
    # every rank's RNG state is in the checkpoint; the loader position is per rank
    assert ddp["world_size"] == 2 and len(ddp["rng_states"]) == 2
    assert ddp["data_loader"]["num_batches"] == MAX_ITER and ddp["data_loader"]["world_size"] == 2

    # logged losses are averaged over ranks: equal to the single process's batch losses
    m_ddp, m_single = _metrics(ddp_out / "metrics.json"), _metrics(single_out / "metrics.json")
    assert [r["iteration"] for r in m_ddp] == list(range(MAX_ITER))
    for a, b in zip(m_ddp, m_single):
        for key in ("loss_fit", "loss_l1", "total_loss", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (a["iteration"], key)

    # only rank 0 wrote files
    files = sorted(os.listdir(ddp_out))
    assert not [f for f in files if "rank" in f], files
    assert sum(f.startswith("events.out.tfevents") for f in files) == 1
    assert {"log.txt", "metrics.json", "last_checkpoint", "model_0000002.pth", "model_final.pth"} <= set(files)


def test_total_batch_must_divide_by_world_size(monkeypatch):
    from detection.config import ConfigError, get_cfg
    from detection.engine import check_config
    from detection.utils import comm

    monkeypatch.setattr(comm, "get_world_size", lambda: 3)
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 16
    with pytest.raises(ConfigError, match=r"SOLVER.IMS_PER_BATCH=16 is the total batch .* divisible by the number "
                                          r"of processes \(3\); e.g. SOLVER.IMS_PER_BATCH 15"):
        check_config(cfg)


def test_sampler_shards_the_stream_between_ranks():
    from detection.data.build import TrainingSampler

    world = 2
    samplers = [TrainingSampler(10, seed=5, rank=r, world_size=world) for r in range(world)]
    streams = [[next(it) for _ in range(5)] for it in map(iter, samplers)]
    single = TrainingSampler(10, seed=5, rank=0, world_size=1)
    whole = [next(iter(single)) for _ in range(10)]
    assert [streams[i % world][i // world] for i in range(10)] == whole  # interleaved = the 1-process stream
    assert sorted(streams[0] + streams[1]) == list(range(10))  # one epoch: disjoint, covering
