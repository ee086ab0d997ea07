"""Training-sample randomness is a function of (seed, stream position): the same batches
with or without workers, after a resume, and however many ranks share the stream."""
import itertools

import pytest

from detection.data import MapDataset, TrainingSampler, TrainLoader
from helpers.fakes import NoisyMapper

RECORDS = [{"id": i, "width": 8 + (i % 3 == 0) * 8, "height": 10} for i in range(9)]


def _loader(num_workers=0, rank=0, world=1, batch=2, grouping=True):
    sampler = TrainingSampler(len(RECORDS), seed=7, rank=rank, world_size=world)
    return TrainLoader(MapDataset(RECORDS, NoisyMapper()), sampler, batch_size=batch,
                       aspect_ratio_grouping=grouping, num_workers=num_workers, seed=7)


def _take(loader, n):
    out = [[(x["id"], x["noise"]) for x in b] for b in itertools.islice(loader, n)]
    loader.close()
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_batches_with_workers_and_after_resume(num_workers):
    reference = _take(_loader(), 8)
    assert len({noise for b in reference for _, noise in b}) > 10  # the "augmentation" is random...
    assert _take(_loader(num_workers), 8) == reference  # ...but identical with workers
    first = _loader(num_workers)
    _take(first, 3)
    resumed = _loader(num_workers)
    resumed.load_state_dict(first.state_dict())
    assert _take(resumed, 5) == reference[3:]


def test_two_ranks_see_the_single_process_samples():
    single = [s for b in _take(_loader(batch=2, grouping=False), 6) for s in b]
    ranks = [_take(_loader(rank=r, world=2, batch=1, grouping=False), 6) for r in range(2)]
    interleaved = [ranks[i % 2][i // 2][0] for i in range(12)]
    assert interleaved == single  # same images, same augmentation
