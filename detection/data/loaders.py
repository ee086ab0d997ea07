"""The training loaders: infinite, seeded, resumable iterators of batches.

Batches are formed from the records' annotated sizes in the main process, so the exact
position of the stream is known and can be saved and restored (`TrainLoader.state_dict`):
a resumed run sees the batches it would have seen. `ResumableTrainLoader` is the part
shared with the classification loader.
"""
from __future__ import annotations

import contextlib
import logging
import random
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from .bad_samples import BadSampleCounter, ExifOrientationCounter
from .common import MapDataset
from .samplers import AspectRatioGroupedBatchSampler, PositionedBatchSampler, TrainingSampler, sample_seed

__all__ = ["ResumableTrainLoader", "TrainLoader", "seed_worker", "trivial_batch_collator"]

logger = logging.getLogger(__name__)


def trivial_batch_collator(batch: List[Any]) -> List[Any]:
    """Keep a batch as a list of dicts (images differ in size; the model pads them).

    ``None`` entries — samples skipped under ``DATALOADER.BAD_SAMPLE_POLICY skip`` — are dropped.
    """
    return [b for b in batch if b is not None]


def seed_worker(worker_id: int) -> None:
    """Seed each worker differently (python, numpy, albumentations) and keep OpenCV to one
    thread: workers already run in parallel and oversubscribing cores slows everything."""
    import cv2

    info = torch.utils.data.get_worker_info()
    seed = int(info.seed % (2**31)) if info is not None else worker_id
    random.seed(seed)
    np.random.seed(seed)
    cv2.setNumThreads(1)
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(seed)


@contextlib.contextmanager
def _cv2_threads_stopped(active: bool = True) -> Iterator[None]:
    """Stop OpenCV's worker threads in this process while data-loader workers are forked.

    A forked child inherits OpenCV's thread-pool bookkeeping but not its threads; the
    workers' ``cv2.setNumThreads(1)`` (`seed_worker`) then joins threads that do not exist
    and hangs forever. It happens (intermittently) when this process ran parallel OpenCV
    code before, e.g. generating litedet_shapes in-process. With the pool shut down at fork
    time there is nothing stale to join; the previous thread count is restored after.
    """
    if not active:
        yield
        return
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


class ResumableTrainLoader:
    """Base of the infinite, resumable training loaders (detection and classification).

    Batch ``b`` is the ``b``-th batch of this rank's `TrainingSampler` stream, so
    ``state_dict()`` only needs the number of batches handed out plus what must match for
    that count to mean the same thing (batch size, seed, dataset size, world size);
    ``load_state_dict()`` checks those and positions the stream without reading any image.
    ``seed_drawn=True`` says ``seed`` was drawn at random (``SEED < 0``): a saved state then
    brings its own seed, since continuing a run means continuing its stream.
    Subclasses build the positioned DataLoader in `_make_loader` and may post-process
    batches in `_after_batch`.
    """

    def __init__(
        self, sampler: TrainingSampler, batch_size: int, num_workers: int = 0, seed: int = 0, seed_drawn: bool = False
    ) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.seed_drawn = bool(seed_drawn)
        self._num_batches = 0
        self._iter: Optional[Iterator[Any]] = None
        self._loader: Optional[DataLoader] = None

    def _worker_generator(self) -> torch.Generator:
        """Seeds the DataLoader's workers from (seed, rank, position), so a restart is reproducible."""
        rank = self.sampler.state_dict()["rank"]
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1000003 + rank * 7919 + self._num_batches) % (2**63))
        return generator

    def _make_loader(self) -> DataLoader:
        raise NotImplementedError

    def _start(self) -> None:
        self._loader = self._make_loader()
        with _cv2_threads_stopped(self.num_workers > 0):
            self._iter = iter(self._loader)  # forks the workers

    def _after_batch(self, batch: Any) -> Any:
        return batch

    def __iter__(self) -> "ResumableTrainLoader":
        return self

    def __next__(self) -> Any:
        if self._iter is None:
            self._start()
        assert self._iter is not None
        batch = self._after_batch(next(self._iter))
        self._num_batches += 1
        return batch

    def _extra_state(self) -> Dict[str, Any]:
        """Settings (besides the sampler's) that a saved position only applies to."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        s = self.sampler.state_dict()
        return {
            "num_batches": self._num_batches,
            "batch_size": self.batch_size,
            **self._extra_state(),
            "seed": s["seed"],
            "size": s["size"],
            "world_size": s["world_size"],
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        free = ("num_batches", "seed") if self.seed_drawn else ("num_batches",)
        for key, mine in self.state_dict().items():
            if key not in free and key in state and state[key] != mine:
                raise ValueError(
                    f"train loader state has {key}={state[key]!r} but this loader has {mine!r}; "
                    "the saved position does not apply to this data/batch setup"
                )
        if self.seed_drawn and "seed" in state and int(state["seed"]) != self.seed:
            self._adopt_seed(int(state["seed"]))
        self.close()
        self._num_batches = int(state["num_batches"])

    def _adopt_seed(self, seed: int) -> None:
        """Continue a stream seeded ``seed`` (a resumed run whose seed was drawn at random)."""
        s = self.sampler.state_dict()
        self.sampler = TrainingSampler(s["size"], shuffle=s["shuffle"], seed=seed, rank=s["rank"], world_size=s["world_size"])
        logger.info("Train loader: SEED < 0, continuing the saved run's data seed %d (instead of %d)", seed, self.seed)
        self.seed = seed

    def close(self) -> None:
        """Stop the worker processes (a new iteration restarts them)."""
        self._iter = None
        self._loader = None


class TrainLoader(ResumableTrainLoader):
    """Infinite iterator of training batches (lists of mapped dicts).

    ``state_dict()`` records how many batches were handed out; ``load_state_dict()``
    (before iterating) replays the index stream — indices only, no image is read — to the
    same point, so a resumed run sees the batches it would have seen. Each sample's
    augmentation RNG is seeded from ``(seed, global stream position)``, so the batches are
    bit-identical after a resume, with any number of workers. (A saved position only applies
    to the same number of ranks: `load_state_dict` refuses another world size.)
    """

    def __init__(
        self,
        dataset: MapDataset,
        sampler: TrainingSampler,
        batch_size: int,
        aspect_ratio_grouping: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        max_bad_sample_fraction: float = 0.05,
        seed_drawn: bool = False,
    ) -> None:
        super().__init__(sampler, batch_size, num_workers, seed, seed_drawn)
        self.dataset = dataset
        self.bad_samples = BadSampleCounter(max_bad_sample_fraction)
        self.exif_orientations = ExifOrientationCounter()
        self.aspect_ratio_grouping = bool(aspect_ratio_grouping)
        self._flags = dataset.aspect_flags if aspect_ratio_grouping else None

    def _seeded_stream(self) -> Iterator[Tuple[int, int]]:
        for pos, idx in self.sampler.iter_with_positions():
            yield idx, sample_seed(self.seed, pos)

    def _batch_sampler(self, skip: int) -> Iterator[List[Tuple[int, int]]]:
        self.sampler.load_state_dict({"num_yielded": 0})
        batches = iter(AspectRatioGroupedBatchSampler(self._seeded_stream(), self.batch_size, self._flags))
        for _ in range(skip):
            next(batches)
        return batches

    def _make_loader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_sampler=PositionedBatchSampler(self._batch_sampler(self._num_batches)),
            num_workers=self.num_workers,
            collate_fn=trivial_batch_collator,
            worker_init_fn=seed_worker,
            generator=self._worker_generator(),
            persistent_workers=False,
        )

    def _after_batch(self, batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        return self.exif_orientations.update(self.bad_samples.update(batch))

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "bad_samples": self.bad_samples.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state.items() if k != "bad_samples"})
        self.bad_samples.load_state_dict(state.get("bad_samples", {}))

    def _extra_state(self) -> Dict[str, Any]:
        return {"aspect_ratio_grouping": self.aspect_ratio_grouping}

    def __repr__(self) -> str:
        return (
            f"TrainLoader(images={len(self.dataset)}, batch_size={self.batch_size}, "
            f"aspect_ratio_grouping={self.aspect_ratio_grouping}, num_workers={self.num_workers})"
        )
