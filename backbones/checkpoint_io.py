"""Safe checkpoint I/O: reading a torch file as data only, and writing files atomically.

Reading always uses ``torch.load(..., weights_only=True)``: a checkpoint is data, and a
pickle that would run code is refused (`UnsafeCheckpointError`), never executed. Every
problem with a file is a `CheckpointError` naming it.

Writing goes to a temporary file in the target's folder, is fsynced, and replaces the
target in one ``os.replace``: a crash or a full disk never leaves a half-written file under
the final name, and the previous version stays intact. Every file litedet writes for later
reading (checkpoints, ``last_checkpoint``, result files) goes through `atomic_write`.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from collections import OrderedDict
from typing import IO, Any, Callable, Dict, Mapping, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "CheckpointNotFoundError",
    "read_state_dict",
    "load_torch_file",
    "atomic_write",
    "atomic_torch_save",
]

StateDict = Dict[str, Tensor]
PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked (missing, truncated, corrupt, of an
    unknown kind, or with the wrong layout or shapes); the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled Python objects beyond tensors and containers; not loaded."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


# ----------------------------------------------------------------------- reading
def _last_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    for ln in lines:  # torch puts the useful line in the middle of a long explanation
        if "GLOBAL" in ln or "Unsupported" in ln or "EOF" in ln or "expected" in ln:
            return ln.strip()
    return lines[-1].strip() if lines else ""


def load_torch_file(path: PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with every failure as
    one `CheckpointError` line naming ``path``: missing (`CheckpointNotFoundError`), a
    directory, empty, truncated or corrupt, or holding Python objects
    (`UnsafeCheckpointError`; nothing in it is executed)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(
            f"cannot read checkpoint {path}: empty file (0 bytes; truncated or corrupt: interrupted download or save?)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):
            raise UnsafeCheckpointError(
                f"refused to load {path}: it contains pickled Python objects other than tensors and "
                f"plain containers (only weights_only loading is allowed here, nothing was executed); "
                f"save plain tensors/dicts instead. Detail: {_last_line(e)}"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: not a valid torch file ({_last_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - torch.load fails in many ways on a damaged file; all name it
        raise CheckpointError(
            f"cannot read checkpoint {path} ({size} bytes): the file is truncated or corrupt "
            f"(interrupted download or save?): {type(e).__name__}: {_last_line(e) or 'unexpected end of file'}"
        ) from None


def read_state_dict(path: PathLike) -> Tuple[StateDict, Dict[str, Any]]:
    """Read ``path`` safely (`load_torch_file`) and unwrap it to a flat ``{name: tensor}`` dict.

    Returns ``(state_dict, meta)``; ``meta`` holds the non-tensor entries of a wrapper
    dict (e.g. ``input_format`` written by `backbones.weights.save_backbone_checkpoint`).
    ``module.`` prefixes (DataParallel) are stripped.
    """
    path = os.fspath(path)
    obj = load_torch_file(path)
    meta: Dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                meta = {k: v for k, v in obj.items() if k != wrapper}
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds no state dict (got {type(obj).__name__})")
    non_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(f"{path}: entries {non_tensors[:5]} are not tensors; is this a state dict?")
    sd: StateDict = OrderedDict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = OrderedDict((k[len("module.") :], v) for k, v in sd.items())
    return sd, meta


# ----------------------------------------------------------------------- writing
def _fsync_dir(path: str) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Union[str, bytes, Callable[[IO[bytes]], Any]]) -> str:
    """Write ``path`` so that it either holds the complete new content or is untouched.

    ``write`` is the content (``str`` is written as UTF-8) or a function that writes into
    the binary file object it is given (e.g. ``lambda f: torch.save(obj, f)``). The folder
    is created if needed. Returns ``path``; an `OSError` (disk full, permissions) leaves no
    temporary file behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if isinstance(write, str):
        write = write.encode("utf-8")
    if isinstance(write, bytes):
        data = write
        write = lambda f: f.write(data)  # noqa: E731
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)
    return path


def atomic_torch_save(obj: Any, path: PathLike) -> str:
    """``torch.save(obj, path)`` that either fully succeeds or leaves ``path`` untouched."""
    return atomic_write(path, lambda f: torch.save(obj, f))
