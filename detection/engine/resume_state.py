"""What a checkpoint holds besides the weights so that ``--resume`` continues bit-for-bit.

Every checkpoint also saves the RNG states (python, NumPy, torch CPU, CUDA) of every rank
and the train loader's position, so a resumed run continues as the uninterrupted one would
have (same world size, CPU or deterministic kernels). States are stored as plain tensors
and Python values: checkpoints are read back with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch

from ..utils import comm

__all__ = [
    "capture_rng_state",
    "rng_state_for_checkpoint",
    "restore_rng_state",
    "capture_resume_state",
    "gather_resume_state",
    "restore_resume_state",
]

logger = logging.getLogger(__name__)


def capture_rng_state(device: Optional[torch.device] = None, *, raw: bool = False) -> Dict[str, Any]:
    """Python, NumPy, torch CPU (and ``device``'s CUDA) RNG states, as plain tensors so
    that ``torch.load(weights_only=True)`` reads them back. ``raw=True`` skips that
    conversion (cheap enough to call every iteration; see `rng_state_for_checkpoint`)."""
    state: Dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state if raw else rng_state_for_checkpoint(state)


def rng_state_for_checkpoint(state: Dict[str, Any]) -> Dict[str, Any]:
    """A raw `capture_rng_state` result as tensors / plain Python values."""
    py, npy = state["python"], state["numpy"]
    if isinstance(py, dict):  # already converted
        return state
    version, py_state, gauss = py
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = npy
    out = dict(state)
    out["python"] = {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss}
    out["numpy"] = {
        "name": np_name,
        "keys": torch.from_numpy(np_keys.astype(np.int64)),
        "pos": int(np_pos),
        "has_gauss": int(np_has_gauss),
        "gauss": float(np_gauss),
    }
    return out


def restore_rng_state(state: Mapping[str, Any], device: Optional[torch.device] = None) -> None:
    """Inverse of `capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def capture_resume_state(device: torch.device, loader: Any) -> Dict[str, Any]:
    """This rank's RNG states (raw) and ``loader``'s position (when it reports one), as of now."""
    state: Dict[str, Any] = {"rng": capture_rng_state(device, raw=True)}
    if loader is not None and callable(getattr(loader, "state_dict", None)):
        state["data_loader"] = loader.state_dict()
    return state


def gather_resume_state(mine: Dict[str, Any]) -> Dict[str, Any]:
    """The checkpoint entries built from every rank's `capture_resume_state`: the RNG states
    of every rank (``rng_states[rank]``), ``world_size``, and the train loader's state when
    it reports one (``data_loader``, rank 0's; under DDP also ``data_loader_states[rank]``:
    the position is the same on every rank, the bad-sample counts are not).
    Collective under DDP: every rank must call it."""
    gathered = comm.all_gather((rng_state_for_checkpoint(mine["rng"]), mine.get("data_loader")))
    world = comm.get_world_size()
    extra: Dict[str, Any] = {"rng_states": [rng for rng, _ in gathered], "world_size": world}
    if "data_loader" in mine:
        extra["data_loader"] = gathered[0][1]
        if world > 1:
            extra["data_loader_states"] = [loader for _, loader in gathered]
    return extra


def restore_resume_state(checkpoint: Mapping[str, Any], device: torch.device, get_loader: Callable[[], Any]) -> None:
    """Counterpart of `gather_resume_state` for this rank, after a resume. ``get_loader``
    returns the train loader (building it is a collective: called on every rank or none)."""
    rng_states = checkpoint.get("rng_states")
    world, rank = comm.get_world_size(), comm.get_rank()
    if rng_states is None:
        logger.warning("Checkpoint has no RNG states (older litedet?); the resumed run is not bit-exact")
    elif len(rng_states) != world:
        logger.warning(
            "Checkpoint was written by %d process(es), this run has %d: RNG states not restored, "
            "so the resumed run is not bit-exact", len(rng_states), world,
        )
    else:
        restore_rng_state(rng_states[rank], device)
    per_rank = checkpoint.get("data_loader_states")
    state = per_rank[rank] if per_rank is not None and len(per_rank) == world else checkpoint.get("data_loader")
    if state is None:
        return
    loader = get_loader()
    if not callable(getattr(loader, "load_state_dict", None)):
        return
    try:
        loader.load_state_dict(state)
        logger.info("Train loader continues after batch %s", state.get("num_batches", "?"))
    except (ValueError, KeyError) as err:
        logger.warning("Train loader position not restored (%s); it starts a fresh pass", err)
