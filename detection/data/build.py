"""Data loaders: dataset concatenation, samplers, aspect-ratio grouping, the train/test loaders.

Training follows detectron2: an *infinite*, seeded, rank-sharded index stream
(`TrainingSampler`), batched per process (``SOLVER.IMS_PER_BATCH // world_size``), with
landscape and portrait images batched separately so that padding to a common size wastes
little. Batches are formed from the records' annotated sizes in the main process, so the
exact position of the stream is known and can be saved and restored (`TrainLoader.state_dict`).
Testing uses `InferenceSampler`: each rank gets one contiguous chunk of the dataset once.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import pickle
import random
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from .bad_samples import SKIPPED_KEY, BadSampleCounter, bad_sample_policy
from .catalog import DatasetCatalog, MetadataCatalog, register_from_cfg
from .mapper import DatasetMapper
from .transforms import BadSampleError

__all__ = [
    "get_detection_dataset_dicts",
    "build_detection_train_loader",
    "build_detection_test_loader",
    "TrainingSampler",
    "InferenceSampler",
    "AspectRatioGroupedBatchSampler",
    "MapDataset",
    "TrainLoader",
    "ResumableTrainLoader",
    "trivial_batch_collator",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- helpers


def _dist_rank_world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shared_seed(seed: int) -> int:
    """``seed`` if it is >= 0, else a random seed that every rank agrees on.

    All ranks must shuffle with the *same* seed, otherwise their shards of the
    permutation overlap and some images are never seen in an epoch.
    """
    if seed is not None and int(seed) >= 0:
        return int(seed)
    value = [int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(value, src=0)
    logger.info("Data loader seed (SEED < 0, drawn at random): %d", value[0])
    return value[0]


def trivial_batch_collator(batch: List[Any]) -> List[Any]:
    """Keep a batch as a list of dicts (images differ in size; the model pads them).

    ``None`` entries — samples skipped under ``DATALOADER.BAD_SAMPLE_POLICY skip`` — are dropped.
    """
    return [b for b in batch if b is not None]


class _SerializedList:
    """A list of records stored as one pickled byte buffer.

    Forked data-loader workers that touch Python objects copy their memory pages
    (reference counts are written on access); one numpy buffer has no per-record objects,
    so 100k+ COCO records are not duplicated into every worker (detectron2 does the same).
    """

    def __init__(self, items: Sequence[Any]) -> None:
        blobs = [np.frombuffer(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for x in items]
        self._addr = np.cumsum(np.asarray([len(b) for b in blobs], dtype=np.int64))
        self._data = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._addr)

    def __getitem__(self, idx: int) -> Any:
        start = 0 if idx == 0 else int(self._addr[idx - 1])
        end = int(self._addr[idx])
        return pickle.loads(memoryview(self._data[start:end]))


# ---------------------------------------------------------------------------- datasets


def _usable(ann: Dict[str, Any]) -> bool:
    """An annotation training actually learns from (crowd and difficult boxes are ignored)."""
    return not ann.get("iscrowd", 0) and not ann.get("difficult", 0)


def get_detection_dataset_dicts(
    names: Union[str, Sequence[str]], filter_empty: bool = False
) -> List[Dict[str, Any]]:
    """Load and concatenate the records of ``names``.

    All datasets must share ``thing_classes`` (same names, same order), since the
    contiguous class ids of the records are only meaningful relative to that list.
    ``filter_empty`` drops images without a usable (non-crowd, non-difficult) box.
    """
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError("no dataset names given (DATASETS.TRAIN / DATASETS.TEST is empty)")
    all_records: List[Dict[str, Any]] = []
    classes: Optional[List[str]] = None
    first = ""
    for name in names:
        records = DatasetCatalog.get(name)
        if not records:
            raise ValueError(f"dataset {name!r} is empty")
        these = MetadataCatalog.get(name).get("thing_classes")
        if these is not None:
            these = list(these)
            if classes is None:
                classes, first = these, name
            elif these != classes:
                raise ValueError(
                    f"datasets {first!r} and {name!r} have different thing_classes "
                    f"({classes} vs {these}); they cannot be trained or evaluated together"
                )
        all_records.extend(records)
    if filter_empty:
        before = len(all_records)
        all_records = [r for r in all_records if any(_usable(a) for a in r.get("annotations", []))]
        logger.info("Removed %d images without usable annotations; %d left", before - len(all_records), len(all_records))
        if not all_records:
            raise ValueError(f"no image of {names} has a usable annotation (DATALOADER.FILTER_EMPTY_ANNOTATIONS)")
    _log_class_histogram(all_records, classes, names)
    return all_records


def _log_class_histogram(records: List[Dict[str, Any]], classes: Optional[List[str]], names: List[str]) -> None:
    counts: Dict[int, int] = {}
    for r in records:
        for a in r.get("annotations", []):
            if _usable(a):
                counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
    if classes:
        parts = [f"{c}: {counts.get(i, 0)}" for i, c in enumerate(classes)]
    else:
        parts = [f"{k}: {v}" for k, v in sorted(counts.items())]
    logger.info("%s: %d images, %d boxes (%s)", "+".join(names), len(records), sum(counts.values()), ", ".join(parts))


class MapDataset(Dataset):
    """Records + mapper as a map-style dataset.

    With ``skip_bad_samples``, a sample whose image cannot be used (`BadSampleError`) is
    logged and replaced by another random sample of the same aspect group (training:
    batch size and grouping stay intact), or by ``None`` when ``replace=False`` (testing:
    the image is left out rather than evaluated twice).
    """

    def __init__(
        self,
        records: Sequence[Dict[str, Any]],
        mapper: Callable[[Dict[str, Any]], Dict[str, Any]],
        skip_bad_samples: bool = False,
        replace: bool = True,
        seed: int = 0,
    ) -> None:
        #: 0 landscape / 1 portrait per index, from the annotated sizes (no image is read).
        self.aspect_flags = aspect_ratio_flags(records)
        self._groups = [np.nonzero(self.aspect_flags == g)[0] for g in (0, 1)]
        self._records = _SerializedList(records)
        self.mapper = mapper
        self.skip_bad_samples = skip_bad_samples
        self.replace = replace
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        """Called in each worker so replacements and augmentations differ between workers."""
        self._rng = random.Random(seed)
        if hasattr(self.mapper, "set_random_seed"):
            self.mapper.set_random_seed(seed)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, idx: Union[int, Tuple[int, int]]) -> Optional[Dict[str, Any]]:
        # (index, sample_seed) from `TrainLoader`: the sample's randomness (augmentation,
        # bad-sample replacement) is a function of its stream position only, so it is the
        # same with or without workers and after a resume.
        if isinstance(idx, tuple):
            idx, sample_seed = idx
            self.reseed(sample_seed)
        skipped: List[str] = []  # counted by BadSampleCounter in the main process
        for _ in range(10):
            try:
                result = self.mapper(self._records[idx])
                if skipped:
                    result[SKIPPED_KEY] = skipped
                return result
            except BadSampleError as err:
                if not self.skip_bad_samples:
                    raise
                skipped.append(str(err))
                # Replacements are logged with the running count by the main process
                # (BadSampleCounter); a left-out test image is only reported here.
                logger.log(logging.DEBUG if self.replace else logging.WARNING, "Skipping bad sample: %s", err)
                if not self.replace:
                    return None
                pool = self._groups[int(self.aspect_flags[idx])]
                idx = pool[self._rng.randrange(len(pool))]
        raise BadSampleError(skipped[-1], "10 bad samples in a row; is the dataset readable at all? (tools/check_dataset.py)")


# ---------------------------------------------------------------------------- samplers


class TrainingSampler(Sampler[int]):
    """Infinite stream of dataset indices for this rank.

    Epoch ``e`` is a permutation seeded by ``(seed, e)`` (identity order when
    ``shuffle=False``); the global stream is the concatenation of epochs and rank ``r`` of
    ``W`` takes positions ``r, r + W, r + 2W, ...``, so within an epoch the ranks see
    disjoint indices that together cover the dataset. Because every position is a pure
    function of the seed, the state is just the number of indices this rank has yielded
    and restoring it is O(1).
    """

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: Optional[int] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> None:
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty dataset, got size={size}")
        d_rank, d_world = _dist_rank_world()
        self._size = int(size)
        self._shuffle = bool(shuffle)
        self._seed = _shared_seed(-1 if seed is None else seed)
        self._rank = d_rank if rank is None else int(rank)
        self._world = d_world if world_size is None else int(world_size)
        if not 0 <= self._rank < self._world:
            raise ValueError(f"rank {self._rank} is outside world_size {self._world}")
        self._num_yielded = 0
        self._perm_epoch = -1
        self._perm: Optional[np.ndarray] = None

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def num_yielded(self) -> int:
        """Indices yielded so far by this rank (across all iterators)."""
        return self._num_yielded

    def _epoch_perm(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            if self._shuffle:
                self._perm = np.random.default_rng([self._seed, epoch]).permutation(self._size)
            else:
                self._perm = np.arange(self._size)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def index_at(self, n: int) -> int:
        """The ``n``-th index this rank yields (counting from 0)."""
        pos = self._rank + n * self._world
        return int(self._epoch_perm(pos // self._size)[pos % self._size])

    def __iter__(self) -> Iterator[int]:
        while True:
            idx = self.index_at(self._num_yielded)
            self._num_yielded += 1
            yield idx

    def iter_with_positions(self) -> Iterator[Tuple[int, int]]:
        """Like ``iter(self)`` but yields ``(global_position, index)``: the position in the
        stream shared by all ranks (``rank + n * world_size``), which does not depend on
        how the stream is split between ranks."""
        while True:
            n = self._num_yielded
            idx = self.index_at(n)
            self._num_yielded += 1
            yield self._rank + n * self._world, idx

    def state_dict(self) -> Dict[str, Any]:
        return {
            "num_yielded": self._num_yielded,
            "seed": self._seed,
            "size": self._size,
            "shuffle": self._shuffle,
            "rank": self._rank,
            "world_size": self._world,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from ``state["num_yielded"]``.

        The dataset size, seed, shuffle flag and world size must match: with any of them
        changed, the same count would point at a different place in a different stream.
        """
        for key in ("size", "seed", "shuffle", "world_size"):
            mine = self.state_dict()[key]
            if key in state and state[key] != mine:
                raise ValueError(f"TrainingSampler state has {key}={state[key]!r} but this sampler has {mine!r}")
        self._num_yielded = int(state["num_yielded"])


class InferenceSampler(Sampler[int]):
    """Each rank gets one contiguous chunk of ``range(size)``, exactly once.

    Chunk sizes differ by at most one; concatenating the ranks' chunks in rank order
    gives the dataset order back, which keeps gathered results easy to reassemble.
    """

    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        d_rank, d_world = _dist_rank_world()
        self._size = int(size)
        rank = d_rank if rank is None else int(rank)
        world = d_world if world_size is None else int(world_size)
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside world_size {world}")
        shard, extra = divmod(self._size, world)
        begin = rank * shard + min(rank, extra)
        end = begin + shard + (1 if rank < extra else 0)
        self._indices = range(begin, end)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)


class AspectRatioGroupedBatchSampler:
    """Batch an infinite index stream, keeping images with ``w > h`` (landscape, flag 0) and
    the others (flag 1) in separate batches. With ``group_flags=None`` indices are simply
    batched in stream order."""

    def __init__(self, sampler: Iterable[int], batch_size: int, group_flags: Optional[np.ndarray]) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.group_flags = group_flags

    def __iter__(self) -> Iterator[List[int]]:
        it = iter(self.sampler)
        if self.group_flags is None:
            while True:
                yield list(itertools.islice(it, self.batch_size))
        buckets: Dict[int, List[Any]] = {}
        for idx in it:
            # items may be (index, payload) pairs (see TrainLoader); group by the index
            key = idx[0] if isinstance(idx, tuple) else idx
            bucket = buckets.setdefault(int(self.group_flags[key]), [])
            bucket.append(idx)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()


def sample_seed(seed: int, position: int) -> int:
    """Augmentation seed of the sample at ``position`` of a training stream seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(position)]).generate_state(1)[0] & 0x7FFFFFFF)


def aspect_ratio_flags(records: Sequence[Dict[str, Any]]) -> np.ndarray:
    """0 for landscape (``width > height``), 1 otherwise, from the annotated sizes."""
    return np.asarray([0 if r["width"] > r["height"] else 1 for r in records], dtype=np.int64)


# ---------------------------------------------------------------------------- loaders


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


class PositionedBatchSampler:
    """Hands DataLoader an already-positioned batch iterator (used after a restore)."""

    def __init__(self, it: Iterator[List[int]]) -> None:
        self._it = it

    def __iter__(self) -> Iterator[List[int]]:
        return self._it


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
        return self.bad_samples.update(batch)

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


def _check_num_classes(cfg: Any, names: Sequence[str], records: Sequence[Dict[str, Any]]) -> None:
    num_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    classes = MetadataCatalog.get(names[0]).get("thing_classes")
    top = max((a["category_id"] for r in records for a in r.get("annotations", [])), default=-1)
    if top >= num_classes:
        raise ValueError(
            f"{list(names)} use class id {top} but MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}"
            + (f" (the dataset has {len(classes)} classes)" if classes else "")
        )
    if classes is not None and len(classes) != num_classes:
        logger.warning(
            "MODEL.ROI_HEADS.NUM_CLASSES=%d but %s has %d classes %s",
            num_classes,
            list(names),
            len(classes),
            list(classes),
        )


def build_detection_train_loader(
    cfg: Any, mapper: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
) -> TrainLoader:
    """The training loader described by ``cfg``: infinite, seeded (``SEED``), per-process
    batch ``SOLVER.IMS_PER_BATCH // world_size``, honouring ``DATASETS.TRAIN``,
    ``DATASETS.REGISTER_*`` and ``DATALOADER.*``."""
    # First, before anything that can fail on one rank alone (a file missing on one node):
    # the other ranks must not be left in this broadcast (see comm.fail_together).
    seed = _shared_seed(int(cfg.SEED))
    register_from_cfg(cfg)
    rank, world = _dist_rank_world()
    total = int(cfg.SOLVER.IMS_PER_BATCH)
    if total <= 0 or total % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={total} must be a positive multiple of the world size {world}")
    names = [cfg.DATASETS.TRAIN] if isinstance(cfg.DATASETS.TRAIN, str) else list(cfg.DATASETS.TRAIN)
    records = get_detection_dataset_dicts(names, filter_empty=bool(cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS))
    _check_num_classes(cfg, names, records)
    sampler = TrainingSampler(len(records), shuffle=True, seed=seed, rank=rank, world_size=world)
    skip_bad, max_bad_fraction = bad_sample_policy(cfg)
    dataset = MapDataset(
        records,
        mapper if mapper is not None else DatasetMapper(cfg, is_train=True),
        skip_bad_samples=skip_bad,
        replace=True,
        seed=seed + rank,
    )
    return TrainLoader(
        dataset,
        sampler,
        batch_size=total // world,
        aspect_ratio_grouping=bool(cfg.DATALOADER.ASPECT_RATIO_GROUPING),
        num_workers=int(cfg.DATALOADER.NUM_WORKERS),
        seed=seed,
        max_bad_sample_fraction=max_bad_fraction,
        seed_drawn=int(cfg.SEED) < 0,
    )


def build_detection_test_loader(
    cfg: Any,
    dataset_name: Union[str, Sequence[str]],
    mapper: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    num_workers: Optional[int] = None,
) -> DataLoader:
    """A loader over ``dataset_name`` once, batch size 1, yielding lists of mapped dicts;
    each rank gets a contiguous chunk (`InferenceSampler`).

    With ``DATALOADER.BAD_SAMPLE_POLICY skip`` an unreadable image is logged and its batch is an
    empty list, so evaluation loops should skip empty batches.
    """
    register_from_cfg(cfg)
    records = get_detection_dataset_dicts(dataset_name, filter_empty=False)
    dataset = MapDataset(
        records,
        mapper if mapper is not None else DatasetMapper(cfg, is_train=False),
        skip_bad_samples=bad_sample_policy(cfg)[0],
        replace=False,
    )
    return DataLoader(
        dataset,
        batch_size=1,
        sampler=InferenceSampler(len(dataset)),
        num_workers=int(cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers),
        collate_fn=trivial_batch_collator,
        worker_init_fn=seed_worker,
    )
