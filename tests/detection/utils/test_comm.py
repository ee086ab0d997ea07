"""comm.fail_together: an error raised on one rank only stops every rank (2 gloo processes),
instead of leaving the others blocked in their next collective."""
import datetime
import errno

import pytest
import torch

from detection.utils import comm

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available in this build",
)


class _LocalOnlyError(Exception):
    """Takes two arguments but passes one to Exception: pickles, then fails to unpickle."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def _outcome(block) -> tuple:
    try:
        with comm.fail_together():
            block()
    except comm.PeerFailure as peer:
        return ("peer", peer.rank, type(peer.error).__name__, str(peer.error), getattr(peer.error, "filename", None))
    except Exception as err:  # noqa: BLE001 - the rank's own error, reported to the test
        return ("own", type(err).__name__, str(err))
    return ("ok",)


def _worker(rank: int, world: int, init_file: str, queue) -> None:
    # A short timeout turns a rank stuck in a collective into a failure instead of a hung test.
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30)
    )
    try:
        ran = []

        def nothing_fails():
            ran.append(rank)

        def missing_on_rank_1():
            if rank == 1:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/ann.json")

        def two_ranks_fail():
            raise ValueError(f"bad value on rank {rank}")

        def unpicklable_on_rank_0():
            if rank == 0:
                raise _LocalOnlyError("x.pth", "unreadable")

        out = {
            name: _outcome(block)
            for name, block in [("ok", nothing_fails), ("missing", missing_on_rank_1), ("both", two_ranks_fail),
                                ("unpicklable", unpicklable_on_rank_0)]
        }
        out["ran"] = ran
        out["after"] = comm.all_gather(rank * 10)  # the group still works after the failures
        queue.put((rank, out))
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    init = tmp_path_factory.mktemp("comm") / "init"
    mp.spawn(_worker, args=(2, str(init), queue), nprocs=2, join=True)
    return dict(queue.get() for _ in range(2))


def test_no_failure_runs_the_block_everywhere(outcomes):
    assert outcomes[0]["ok"] == outcomes[1]["ok"] == ("ok",)
    assert outcomes[0]["ran"] == [0] and outcomes[1]["ran"] == [1]


def test_error_on_one_rank_raises_on_every_rank(outcomes):
    # the failing rank keeps its own exception; the other learns which rank failed and why
    assert outcomes[1]["missing"] == ("own", "FileNotFoundError", "[Errno 2] No such file or directory: '/data/ann.json'")
    assert outcomes[0]["missing"] == (
        "peer", 1, "FileNotFoundError", "[Errno 2] No such file or directory: '/data/ann.json'", "/data/ann.json"
    )


def test_every_failing_rank_keeps_its_own_error(outcomes):
    assert outcomes[0]["both"] == ("own", "ValueError", "bad value on rank 0")
    assert outcomes[1]["both"] == ("own", "ValueError", "bad value on rank 1")


def test_an_error_that_cannot_travel_arrives_as_its_text(outcomes):
    assert outcomes[0]["unpicklable"] == ("own", "_LocalOnlyError", "x.pth: unreadable")
    assert outcomes[1]["unpicklable"] == ("peer", 0, "RuntimeError", "_LocalOnlyError: x.pth: unreadable", None)


def test_the_process_group_stays_usable(outcomes):
    assert outcomes[0]["after"] == outcomes[1]["after"] == [0, 10]


def test_single_process_is_a_plain_block():
    with pytest.raises(KeyError):
        with comm.fail_together():
            raise KeyError("x")
    with comm.fail_together():
        pass
