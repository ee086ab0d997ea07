"""DistributedDataParallel through torchrun: 2 CPU processes (gloo) train the same
weights as one process with the same total batch; only rank 0 writes files."""
import json
import os
import subprocess
import sys

import pytest
import torch

from detection.engine import Trainer
from helpers import fakes as _fakes
from helpers import subprocess_env

HERE = os.path.dirname(os.path.abspath(__file__))

MAX_ITER, TOTAL_BATCH = 7, 4


def _metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available in this build")
def test_two_process_ddp_matches_single_process(tmp_path):
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    env = subprocess_env(OMP_NUM_THREADS="1", LITEDET_DIST_BACKEND="gloo", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         os.path.join(HERE, "train_loop_ddp_worker.py"), str(ddp_out), str(MAX_ITER), str(TOTAL_BATCH)],
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
    from detection.data.samplers import TrainingSampler

    world = 2
    samplers = [TrainingSampler(10, seed=5, rank=r, world_size=world) for r in range(world)]
    streams = [[next(it) for _ in range(5)] for it in map(iter, samplers)]
    single = TrainingSampler(10, seed=5, rank=0, world_size=1)
    whole = [next(iter(single)) for _ in range(10)]
    assert [streams[i % world][i // world] for i in range(10)] == whole  # interleaved = the 1-process stream
    assert sorted(streams[0] + streams[1]) == list(range(10))  # one epoch: disjoint, covering


# ------------------------------------------------------------------- a failure on one rank only
# Multi-node runs meet errors that only one rank sees (a file missing on one node, OUTPUT_DIR
# writable only on node 0). Every rank must stop with a clear error; before comm.fail_together
# the other ranks died in their next collective (gloo: "Connection closed by peer"; NCCL
# would have hung until its timeout).
class _NodeLocalTrainer(Trainer):
    """Builds the real sharded loader, except on ``missing_on_rank`` where the dataset is absent."""

    missing_on_rank = None

    @classmethod
    def build_train_loader(cls, cfg):
        from detection.data.errors import DatasetError
        from detection.utils import comm

        if comm.get_rank() == cls.missing_on_rank:
            raise DatasetError(f"COCO annotation file not found: /node{comm.get_rank()}/ann.json")
        return _fakes.linear_train_loader(int(cfg.SOLVER.IMS_PER_BATCH))


def _stops_how(work):
    from detection.utils import comm

    try:
        work()
    except comm.PeerFailure as peer:
        return ("peer", peer.rank, type(peer.error).__name__)
    except Exception as err:  # noqa: BLE001 - this rank's own error, reported to the test
        return ("own", type(err).__name__, str(err))
    return ("ok",)


def _node_local_worker(rank, world, root, queue):
    import datetime
    from unittest import mock

    from detection.checkpoint import CheckpointWriteError
    from detection.engine import default_setup
    from detection.utils import comm

    # A short timeout turns a rank stuck in a collective into a failure instead of a hung test.
    torch.distributed.init_process_group("gloo", init_method=f"file://{root}/init", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=30))
    try:
        def cfg_for(name, rank_dir=None, **solver):
            out = os.path.join(root, name, rank_dir if rank_dir is not None else "")
            return _fakes.make_cfg(out, **{"IMS_PER_BATCH": 4, "MAX_ITER": 3, "STEPS": (2,), **solver})

        def train(cfg, resume=False, missing_on_rank=None):
            trainer_cls = type("T", (_NodeLocalTrainer,), {"missing_on_rank": missing_on_rank})
            trainer = trainer_cls(cfg, model=_fakes.LinearFake(), log_period=1)
            trainer.resume_or_load(resume=resume)
            trainer.train()

        out = {}
        out["data_missing_on_1"] = _stops_how(lambda: train(cfg_for("data"), missing_on_rank=1))

        blocked = os.path.join(root, "not_a_dir")  # rank 0's OUTPUT_DIR cannot be created: a file is there
        out["output_dir_blocked"] = _stops_how(
            lambda: train(_fakes.make_cfg(blocked if rank == 0 else os.path.join(root, "ok1"), IMS_PER_BATCH=4, STEPS=(2,))))
        out["setup_blocked"] = _stops_how(
            lambda: default_setup(_fakes.make_cfg(blocked if rank == 0 else os.path.join(root, "ok1"))))

        def save_fails(*args, **kwargs):
            raise CheckpointWriteError(28, f"cannot write checkpoint {root}/ckpt/model_0000002.pth: No space left")

        cfg = cfg_for("ckpt")
        with mock.patch("detection.checkpoint.DetectionCheckpointer.save", save_fails) if rank == 0 else mock.MagicMock():
            out["checkpoint_write_fails_on_0"] = _stops_how(lambda: train(cfg))

        def metrics_write_fails(*args, **kwargs):
            raise OSError(28, "No space left on device", f"{root}/metrics/metrics.json")

        cfg = cfg_for("metrics")
        with mock.patch("detection.engine.events.JSONWriter.write", metrics_write_fails) if rank == 0 else mock.MagicMock():
            out["metrics_write_fails_on_0"] = _stops_how(lambda: train(cfg))

        # every rank resumes its own train-loader state (bad-sample counts differ between ranks)
        first = _NodeLocalTrainer(cfg_for("counts"), model=_fakes.LinearFake())
        first.resume_or_load(resume=False)
        first.data_loader.bad_samples.num_skipped = rank + 1
        first.train()
        resumed = _NodeLocalTrainer(cfg_for("counts", MAX_ITER=5), model=_fakes.LinearFake())
        resumed.resume_or_load(resume=True)
        out["resumed_bad_samples"] = resumed.data_loader.state_dict()["bad_samples"]

        # OUTPUT_DIR per rank (not a shared folder): only rank 0 wrote a checkpoint to resume from
        train(cfg_for("resume", f"rank{rank}"))
        out["resume_not_shared"] = _stops_how(lambda: train(cfg_for("resume", f"rank{rank}", MAX_ITER=5), resume=True))
        out["after"] = comm.all_gather(rank)  # nobody is left behind in a collective
        queue.put((rank, out))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available in this build")
def test_an_error_on_one_rank_stops_every_rank(tmp_path):
    import torch.multiprocessing as mp

    (tmp_path / "not_a_dir").write_text("")
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_node_local_worker, args=(2, str(tmp_path), queue), nprocs=2, join=True)
    got = dict(queue.get() for _ in range(2))

    assert got[1]["data_missing_on_1"] == ("own", "DatasetError", "COCO annotation file not found: /node1/ann.json")
    assert got[0]["data_missing_on_1"] == ("peer", 1, "DatasetError")
    for case in ("output_dir_blocked", "setup_blocked"):  # rank 0 cannot create OUTPUT_DIR
        assert got[0][case][:2] == ("own", "FileExistsError"), case
        assert got[1][case] == ("peer", 0, "FileExistsError"), case
    assert got[0]["checkpoint_write_fails_on_0"][:2] == ("own", "CheckpointWriteError")
    assert got[1]["checkpoint_write_fails_on_0"] == ("peer", 0, "CheckpointWriteError")
    assert got[0]["metrics_write_fails_on_0"][:2] == ("own", "OSError")  # mid-training, not at start-up
    assert got[1]["metrics_write_fails_on_0"] == ("peer", 0, "OSError")
    assert got[0]["resumed_bad_samples"] == {"num_samples": 6, "num_skipped": 1}
    assert got[1]["resumed_bad_samples"] == {"num_samples": 6, "num_skipped": 2}
    for rank in (0, 1):
        kind, name, message = got[rank]["resume_not_shared"]
        assert (kind, name) == ("own", "CheckpointError") and "different iterations [3, 0]" in message
        assert f"rank{rank}" in message and "must be the same (shared) folder" in message
        assert got[rank]["after"] == [0, 1]
    assert not (tmp_path / "resume" / "rank1" / "model_0000002.pth").exists()  # only rank 0 writes checkpoints
