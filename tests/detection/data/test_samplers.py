"""Samplers: rank shards of the infinite training stream, state round trip, inference
chunks and aspect-ratio grouping."""
import itertools

import numpy as np
import pytest

from detection.data import AspectRatioGroupedBatchSampler, InferenceSampler, TrainingSampler


def test_training_sampler_shards_are_disjoint_and_complete():
    size = 10
    shards = [list(itertools.islice(TrainingSampler(size, seed=3, rank=r, world_size=2), size // 2)) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(size))
    # next epoch is a different permutation, still complete
    s = TrainingSampler(size, seed=3, rank=0, world_size=1)
    first, second = list(itertools.islice(s, size)), list(itertools.islice(s, size))
    assert sorted(second) == list(range(size)) and first != second


def test_training_sampler_state_roundtrip():
    s = TrainingSampler(7, seed=5, rank=1, world_size=2)
    it = iter(s)
    for _ in range(9):
        next(it)
    state = s.state_dict()
    assert state["num_yielded"] == 9
    tail = [next(it) for _ in range(6)]
    restored = TrainingSampler(7, seed=5, rank=1, world_size=2)
    restored.load_state_dict(state)
    assert list(itertools.islice(restored, 6)) == tail
    with pytest.raises(ValueError, match="seed"):
        TrainingSampler(7, seed=6, rank=1, world_size=2).load_state_dict(state)


@pytest.mark.parametrize("size,world", [(10, 2), (7, 3), (2, 4)])
def test_inference_sampler_contiguous_disjoint_complete(size, world):
    chunks = [list(InferenceSampler(size, rank=r, world_size=world)) for r in range(world)]
    assert list(itertools.chain(*chunks)) == list(range(size))
    for c in chunks:
        assert c == list(range(c[0], c[0] + len(c))) if c else True
    assert max(map(len, chunks)) - min(map(len, chunks)) <= 1


def test_aspect_grouped_batches_are_homogeneous():
    flags = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0])
    batches = list(itertools.islice(AspectRatioGroupedBatchSampler(TrainingSampler(9, seed=0, rank=0, world_size=1), 3, flags), 12))
    assert all(len(b) == 3 and len({int(flags[i]) for i in b}) == 1 for b in batches)
