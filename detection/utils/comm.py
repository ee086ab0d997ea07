"""Process-group helpers that also work in a plain single-process run.

Everything here answers sensibly when ``torch.distributed`` is unavailable or was never
initialised (rank 0 of a world of 1), so callers can always write
``if comm.is_main_process(): ...`` for "only rank 0 writes files". A torchrun launch
(``init_process_group`` from the environment) plugs in without changing callers.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import pickle
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "gather_to_main",
    "is_dist_initialized",
    "get_world_size",
    "get_rank",
    "get_local_rank",
    "is_main_process",
    "synchronize",
    "all_gather",
    "reduce_dict",
    "init_distributed_from_env",
    "any_across_ranks",
    "destroy_process_group",
    "fail_together",
    "PeerFailure",
    "shared_seed",
]

logger = logging.getLogger(__name__)


def is_dist_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist_initialized() else 0


def get_local_rank() -> int:
    """Rank within this machine (torchrun sets ``LOCAL_RANK``); 0 when not distributed."""
    if not is_dist_initialized():
        return 0
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; a no-op in a single-process run."""
    if get_world_size() <= 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather(obj: Any) -> List[Any]:
    """Gather a picklable object from every rank (``[obj]`` when not distributed)."""
    if get_world_size() <= 1:
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_dict(values: Dict[str, torch.Tensor], average: bool = True) -> Dict[str, torch.Tensor]:
    """Sum (or average) a dict of scalar tensors over all ranks; identity when not distributed."""
    world = get_world_size()
    if world <= 1 or not values:
        return values
    with torch.no_grad():
        names = sorted(values)
        stacked = torch.stack([values[k].detach() for k in names])
        dist.all_reduce(stacked)
        if average:
            stacked /= world
        return dict(zip(names, stacked))


def init_distributed_from_env(backend: Optional[str] = None) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); returns whether
    running distributed.

    torchrun sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT`` for single- and multi-node launches alike, so the ``env://`` init
    covers both. ``backend`` defaults to NCCL with one GPU per process (``LOCAL_RANK``)
    when CUDA is available, gloo otherwise (CPU training); ``LITEDET_DIST_BACKEND``
    overrides it (e.g. gloo on a GPU machine for CPU-only tests).
    """
    if is_dist_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = backend or os.environ.get("LITEDET_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
                "use --nproc_per_node <= the number of GPUs"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return True


def any_across_ranks(flags: List[bool], device: Optional[torch.device] = None) -> List[bool]:
    """Element-wise logical OR of ``flags`` over all ranks (one small all-reduce).

    Used at iteration boundaries so every rank takes the same decision (stop after a
    signal, stop on a non-finite loss) and none is left waiting in a collective.
    ``device`` must be a CUDA device under NCCL.
    """
    if get_world_size() <= 1:
        return list(flags)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def shared_seed(seed: Optional[int] = None) -> int:
    """``seed`` if it is >= 0, else a random seed that every rank agrees on (rank 0's
    draw, logged). Collective when distributed and ``seed`` < 0: every rank must call it.

    Samplers need it: ranks that shuffle with different seeds take overlapping shards of
    an epoch, and some images are never seen.
    """
    if seed is not None and int(seed) >= 0:
        return int(seed)
    drawn = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
    value = int(all_gather(drawn)[0])
    logger.info("SEED < 0: drew the random seed %d (shared by every rank)", value)
    return value


def gather_to_main(obj: Any) -> Optional[List[Any]]:
    """Collect ``obj`` from every rank: the per-rank list on rank 0, ``None`` elsewhere.

    Uses ``all_gather_object`` (not ``gather_object``) because it works on every backend,
    NCCL included, without choosing a device for the pickled payload. Without an
    initialized process group this is ``[obj]``.
    """
    world = get_world_size()
    if world == 1:
        return [obj]
    out: List[Any] = all_gather(obj)
    return out if get_rank() == 0 else None


def destroy_process_group() -> None:
    """Leave the process group (end of a torchrun launch); a no-op when not distributed."""
    if is_dist_initialized():
        dist.destroy_process_group()


class PeerFailure(RuntimeError):
    """Raised by `fail_together` on the ranks that did not fail: ``rank`` (the lowest
    failing global rank) raised ``error`` there."""

    def __init__(self, rank: int, error: BaseException) -> None:
        super().__init__(f"rank {rank} failed: {type(error).__name__}: {error}")
        self.rank, self.error = rank, error


def _portable(err: BaseException) -> BaseException:
    """``err`` if the other ranks can rebuild it (to classify it): it pickles, and
    ``copy.copy`` rebuilds it from its arguments as unpickling does. Else a RuntimeError
    with its type and message (e.g. a constructor that does not take its ``args`` back)."""
    try:
        pickle.dumps(err)
        copy.copy(err)
        return err
    except Exception:  # noqa: BLE001 - any exception type may fail either way
        return RuntimeError(f"{type(err).__name__}: {err}")


@contextlib.contextmanager
def fail_together() -> Iterator[None]:
    """Every rank runs the block; when it raises on any rank, it raises on every rank.

    The failing rank re-raises its own exception; the others raise `PeerFailure` with the
    failing rank's exception. Without this, an error only one rank sees (a file missing on
    one node, a write error on rank 0) kills that rank while the others block in their next
    collective: gloo then fails with "Connection closed by peer", NCCL hangs until its
    timeout. The block must contain no collective (a rank failing before it would leave
    the others waiting there); the check is one ``all_gather`` on leaving the block.
    A no-op when not distributed.
    """
    if get_world_size() <= 1:
        yield
        return
    try:
        yield
    except Exception as err:
        all_gather(_portable(err))
        raise
    errors = all_gather(None)
    failed = [(rank, err) for rank, err in enumerate(errors) if err is not None]
    if failed:
        raise PeerFailure(*failed[0])
