"""Samplers: which dataset indices each rank reads, and in which batches.

Training follows detectron2: an *infinite*, seeded, rank-sharded index stream
(`TrainingSampler`) whose every position is a pure function of the seed, so its state is
one number and a resumed run continues the same stream; `AspectRatioGroupedBatchSampler`
batches landscape and portrait images separately, so that padding to a common size wastes
little; `sample_seed` gives each stream position its own augmentation seed. Testing uses
`InferenceSampler`: each rank gets one contiguous chunk of the dataset once.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
from torch.utils.data import Sampler

from ..utils import comm

__all__ = [
    "TrainingSampler",
    "InferenceSampler",
    "AspectRatioGroupedBatchSampler",
    "PositionedBatchSampler",
    "sample_seed",
]


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
        self._size = int(size)
        self._shuffle = bool(shuffle)
        self._seed = comm.shared_seed(seed)
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world = comm.get_world_size() if world_size is None else int(world_size)
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
        self._size = int(size)
        rank = comm.get_rank() if rank is None else int(rank)
        world = comm.get_world_size() if world_size is None else int(world_size)
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


class PositionedBatchSampler:
    """Hands DataLoader an already-positioned batch iterator (used after a restore)."""

    def __init__(self, it: Iterator[List[int]]) -> None:
        self._it = it

    def __iter__(self) -> Iterator[List[int]]:
        return self._it


def sample_seed(seed: int, position: int) -> int:
    """Augmentation seed of the sample at ``position`` of a training stream seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(position)]).generate_state(1)[0] & 0x7FFFFFFF)
