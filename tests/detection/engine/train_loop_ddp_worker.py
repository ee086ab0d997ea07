"""Worker for test_train_loop_ddp.py, launched with torchrun: trains LinearFake with the
real sharded loader under DistributedDataParallel (gloo on CPU).

    torchrun --standalone --nproc_per_node=2 train_loop_ddp_worker.py OUTPUT_DIR MAX_ITER TOTAL_BATCH
"""
import sys

import torch

from detection.engine import Trainer, setup_logger
from detection.utils import comm
from helpers.fakes import LinearFake, linear_train_loader, make_cfg


def main(out: str, max_iter: int, total_batch: int) -> None:
    assert comm.init_distributed_from_env(), "expected to run under torchrun with WORLD_SIZE > 1"
    setup_logger(out, distributed_rank=comm.get_rank())
    cfg = make_cfg(out, MAX_ITER=max_iter, CHECKPOINT_PERIOD=3, IMS_PER_BATCH=total_batch, STEPS=(max_iter // 2,))
    trainer = Trainer(cfg, model=LinearFake(), data_loader=linear_train_loader(total_batch), log_period=1)
    assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
    trainer.train()
    comm.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
