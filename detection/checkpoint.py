"""Saving and loading detector checkpoints.

A litedet checkpoint is a ``torch.save``'d dict::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., <other checkpointables>,
     "iteration": int, "model_info": {...}, "__litedet__": 1}

``model_info`` (`detection.model_info.ModelInfo`, written when the checkpointer is given
one) records the meta-architecture, the backbone, the class count and the training
set's class names in label order.

Weights that do not fit the model are refused (`CheckpointError`, naming both
architectures and the share of the model's tensors the file fills) instead of leaving
the model at its random initialisation: a checkpoint that records another
meta-architecture or backbone than the model's, or one that fills fewer than half of
the model's tensors. Tensors whose shape differs (a head trained for another class
count) are skipped with a warning, so fine-tuning from a detector of other classes
works; a checkpointer built with ``require_complete`` (evaluation, demo, export) also
refuses any tensor of the model the file does not fill, since a randomly initialised
part never gives a valid prediction.

Files are written and read by `backbones.checkpoint_io`: writes are atomic, so a crash
mid-save never leaves a half-written ``model_XXXXXXX.pth`` or ``last_checkpoint``, and
reading never unpickles arbitrary Python objects (``weights_only=True``).

Resuming (`DetectionCheckpointer.resume_or_load`) survives a damaged output folder: a
newest checkpoint that is missing, truncated or corrupt is reported with a warning naming
the file and the next older ``*.pth`` is used instead. ``max_keep`` keeps only the newest
K periodic ``model_XXXXXXX.pth`` files (``model_final.pth`` is never deleted). A failed
write (disk full, permissions) raises `CheckpointWriteError` naming the path; the
previous checkpoint and ``last_checkpoint`` stay as they were.

``MODEL.WEIGHTS`` may also name a plain backbone (ImageNet) checkpoint; that is handed
to `backbones.weights.load_checkpoint`.
"""
from __future__ import annotations

import errno
import logging
import os
import re
from typing import Any, Dict, Iterable, List, Optional

import torch
from torch import nn

from backbones.checkpoint_io import (
    CheckpointError,
    CheckpointNotFoundError,
    atomic_torch_save,
    atomic_write,
    load_torch_file,
)

from .model_info import MODEL_INFO_KEY, ModelInfo
from .utils.comm import is_main_process

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "DetectionCheckpointer",
    "atomic_torch_save",
    "read_model_info",
]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions, ...); the message names
    the path, and the previous checkpoint is left intact."""


_PERIODIC = re.compile(r"^model_(\d+)\.pth$")

#: A file that fills fewer than this share of the model's tensors is not its checkpoint.
MIN_LOADED_SHARE = 0.5


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def _strip_prefix(state: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


class DetectionCheckpointer:
    """Save/load the model plus any objects with ``state_dict``/``load_state_dict``.

    ``DetectionCheckpointer(model, save_dir, optimizer=opt, scheduler=sched, scaler=...)``.
    Only the main process writes (``save_to_disk`` defaults to ``comm.is_main_process()``).
    ``max_keep`` > 0 deletes all but the newest ``max_keep`` periodic checkpoints after
    each successful save. ``model_info``: what the model is (written into every checkpoint
    saved, and the architecture a loaded checkpoint must record when it records one);
    ``require_complete``: every tensor of the model must come from the loaded file (see
    the module docstring). After a load, ``loaded_info`` is the file's `ModelInfo` (None
    when it records none).
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: Optional[bool] = None,
        max_keep: int = 0,
        model_info: Optional[ModelInfo] = None,
        require_complete: bool = False,
        **checkpointables: Any,
    ) -> None:
        if save_to_disk is None:
            save_to_disk = is_main_process()
        self.model = _unwrap(model)
        self.save_dir = save_dir
        self.save_to_disk = save_to_disk
        self.max_keep = int(max_keep)
        self.model_info = model_info
        self.require_complete = bool(require_complete)
        self.resumed_from: Optional[str] = None  # the file resume_or_load actually used
        self.loaded_info: Optional[ModelInfo] = None
        self.checkpointables = {k: v for k, v in checkpointables.items() if v is not None}

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **extra: Any) -> Optional[str]:
        """Write ``save_dir/name.pth`` atomically and tag it in ``last_checkpoint``."""
        if not self.save_dir or not self.save_to_disk:
            return None
        data: Dict[str, Any] = {"model": self.model.state_dict(), "__litedet__": 1}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        if self.model_info is not None:
            data[MODEL_INFO_KEY] = self.model_info.to_dict()
        data.update(extra)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        logger.info("Saving checkpoint to %s", path)
        try:
            atomic_torch_save(data, path)
            self.tag_last_checkpoint(basename)
        except OSError as err:
            previous = self.get_checkpoint_file()
            keep = f"; the previous checkpoint {previous} is intact" if previous and previous != path else ""
            reason = err.strerror or str(err)
            if err.errno == errno.ENOSPC:
                reason += " (disk full: free space or point OUTPUT_DIR elsewhere)"
            raise CheckpointWriteError(err.errno, f"cannot write checkpoint {path}: {reason}{keep}") from err
        self._prune()
        return path

    def _prune(self) -> None:
        """Delete all but the newest ``max_keep`` periodic checkpoints."""
        if self.max_keep <= 0:
            return
        periodic = sorted(
            (int(m.group(1)), f) for f in os.listdir(self.save_dir) if (m := _PERIODIC.match(f))
        )
        current = os.path.basename(self.get_checkpoint_file())
        for _, f in periodic[: max(0, len(periodic) - self.max_keep)]:
            if f == current:
                continue
            try:
                os.remove(os.path.join(self.save_dir, f))
                logger.info("Removed old checkpoint %s (SOLVER.CHECKPOINT_MAX_KEEP=%d)", f, self.max_keep)
            except OSError as err:
                logger.warning("Could not remove old checkpoint %s: %s", f, err)

    def tag_last_checkpoint(self, basename: str) -> None:
        atomic_write(os.path.join(self.save_dir, LAST_CHECKPOINT), basename)

    def has_checkpoint(self) -> bool:
        return bool(self.save_dir) and os.path.isfile(os.path.join(self.save_dir, LAST_CHECKPOINT))

    def get_checkpoint_file(self) -> str:
        """Path of the newest checkpoint in ``save_dir`` ("" when there is none)."""
        try:
            with open(os.path.join(self.save_dir, LAST_CHECKPOINT)) as f:
                name = f.read().strip()
        except OSError:
            return ""
        return os.path.join(self.save_dir, name) if name else ""

    def get_all_checkpoint_files(self) -> List[str]:
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        return sorted(
            os.path.join(self.save_dir, f)
            for f in os.listdir(self.save_dir)
            if f.endswith(".pth") and os.path.isfile(os.path.join(self.save_dir, f))
        )

    def _resume_candidates(self) -> List[str]:
        """The tagged newest checkpoint first, then the other ones, newest first."""
        tagged = self.get_checkpoint_file()
        others = [p for p in self.get_all_checkpoint_files() if p != tagged]
        # newest first: by modification time, periodic iteration number as tie-break
        others.sort(key=lambda p: (os.path.getmtime(p), _iteration_of(p)), reverse=True)
        return ([tagged] if tagged else []) + others

    # ------------------------------------------------------------------ loading
    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With ``resume`` and a ``last_checkpoint`` in ``save_dir``: load it fully
        (model, optimizer, scheduler, ...) and return it, ``"iteration"`` included.
        Otherwise load only the model weights from ``path`` (may be "")."""
        if resume and self.has_checkpoint():
            candidates = self._resume_candidates()
            for i, path in enumerate(candidates):
                try:
                    checkpoint = load_torch_file(path)
                except CheckpointError as err:
                    nxt = candidates[i + 1] if i + 1 < len(candidates) else None
                    logger.warning(
                        "Cannot resume from %s: %s. %s", path, err,
                        f"Falling back to the previous checkpoint {nxt}" if nxt else "No older checkpoint left",
                    )
                    continue
                logger.info("Resuming from %s", path)
                self.resumed_from = path
                return self._load_checkpoint(checkpoint, path, None)
            raise CheckpointError(
                f"no usable checkpoint in {self.save_dir} (tried {', '.join(candidates) or 'none'}); "
                "delete the folder's last_checkpoint to start from scratch"
            )
        if resume:
            logger.info("No checkpoint to resume from in %r; loading MODEL.WEIGHTS instead", self.save_dir)
        return self.load(path, checkpointables=[])

    def load(self, path: str, checkpointables: Optional[Iterable[str]] = None) -> Dict[str, Any]:
        """Load ``path`` into the model and the named checkpointables (default: all
        present in the file). Returns what was not consumed (e.g. ``"iteration"``)."""
        if not path:
            logger.info("No checkpoint given; the model keeps its initialisation.")
            return {}
        return self._load_checkpoint(load_torch_file(path), path, checkpointables)

    def _load_checkpoint(self, checkpoint: Any, path: str, checkpointables: Optional[Iterable[str]]) -> Dict[str, Any]:
        self.loaded_info = None
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f"{path}: expected a dict of tensors, found {type(checkpoint).__name__}")

        if not checkpoint.get("__litedet__"):
            # Not written by this class: a detector state dict (bare, {"model": ...} or
            # {"state_dict": ...}), or the weights of a backbone alone.
            if isinstance(checkpoint.get("model"), dict):
                state = checkpoint["model"]
            else:
                state = checkpoint.get("state_dict", checkpoint)
                checkpoint = {}
            if not isinstance(state, dict) or not self._looks_like_detector(state):
                self._load_backbone_checkpoint(path)
                return {}
            checkpoint["model"] = state

        self.loaded_info = ModelInfo.from_dict(checkpoint.pop(MODEL_INFO_KEY, None))
        self._load_model(checkpoint.pop("model"), path)
        checkpoint.pop("__litedet__", None)
        names = list(self.checkpointables) if checkpointables is None else list(checkpointables)
        for key in names:
            if key not in checkpoint:
                if checkpointables is not None:
                    logger.warning("%s has no %r state; %s starts fresh", path, key, key)
                continue
            logger.info("Loading %s from %s", key, path)
            self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        for key in self.checkpointables:  # not requested: do not hand them back as "extra"
            checkpoint.pop(key, None)
        return checkpoint

    def _looks_like_detector(self, state: Dict[str, Any]) -> bool:
        own = self.model.state_dict()
        state = _strip_prefix(state, "module.")
        keys = [k for k in state if isinstance(state[k], torch.Tensor)]
        if not keys:
            return False
        hits = sum(1 for k in keys if k in own)
        return hits >= 0.5 * len(keys)

    def _load_model(self, state: Dict[str, Any], path: str) -> None:
        state = _strip_prefix(dict(state), "module.")
        own = self.model.state_dict()
        skipped = []
        for key in list(state):
            if key in own and isinstance(state[key], torch.Tensor) and state[key].shape != own[key].shape:
                skipped.append(f"{key}: {tuple(state[key].shape)} in file, {tuple(own[key].shape)} in model")
                del state[key]
        self._check_fit(state, path, skipped)
        if skipped:
            logger.warning("%s: skipping parameters with a different shape:\n  %s", path, "\n  ".join(skipped))
        result = self.model.load_state_dict(state, strict=False)
        logger.info("Loaded model weights from %s", path)
        if result.missing_keys:
            logger.warning(
                "%d parameters not found in %s (left at their initialisation): %s",
                len(result.missing_keys), path, _summarize(result.missing_keys),
            )
        if result.unexpected_keys:
            logger.warning(
                "%d entries of %s not used by the model: %s",
                len(result.unexpected_keys), path, _summarize(result.unexpected_keys),
            )

    def _check_fit(self, state: Dict[str, Any], path: str, skipped: List[str]) -> None:
        """`CheckpointError` when ``state`` (shape mismatches already removed and listed in
        ``skipped``) is not this model's checkpoint: another recorded architecture, too few
        tensors filled, or (``require_complete``) any tensor left unfilled."""
        # BatchNorm's batch counter changes nothing a trained model computes
        tensors = [k for k in self.model.state_dict() if not k.endswith("num_batches_tracked")]
        unfilled = [k for k in tensors if k not in state]
        filled = len(tensors) - len(unfilled)
        share = f"{filled} of the model's {len(tensors)} tensors ({filled / max(len(tensors), 1):.0%}) would load"
        loaded, expected = self.loaded_info, self.model_info
        this = f"this config builds {expected.architecture}" if expected else f"the model is a {type(self.model).__name__}"
        if loaded is not None and expected is not None and not loaded.same_architecture(expected):
            raise CheckpointError(
                f"{path} holds a {loaded.architecture} detector but {this}: {share}. Use weights of this "
                "architecture (MODEL.BACKBONE.WEIGHTS takes ImageNet weights of the backbone alone)"
            )
        trained_as = f"trained as {loaded.architecture}" if loaded else "its architecture is not recorded"
        if filled < MIN_LOADED_SHARE * len(tensors):
            raise CheckpointError(
                f"{path} does not fit this model ({trained_as}; {this}): only {share}, the rest would stay "
                "randomly initialised. Use weights of this architecture (MODEL.BACKBONE.WEIGHTS takes ImageNet "
                "weights of the backbone alone)"
            )
        if self.require_complete and unfilled:
            shapes = {s.split(":", 1)[0]: s for s in skipped}
            detail = [shapes.get(k, f"{k}: not in file") for k in unfilled]
            hint = ""
            if loaded is not None and expected is not None and loaded.num_classes != expected.num_classes:
                hint = (
                    f"; it was trained for {loaded.num_classes} classes and the model has {expected.num_classes} "
                    f"(MODEL.ROI_HEADS.NUM_CLASSES {loaded.num_classes})"
                )
            raise CheckpointError(
                f"{path} does not fill {len(unfilled)} of the model's {len(tensors)} tensors ({trained_as}; "
                f"{this}): {_summarize(detail, 3)}{hint}. A prediction with randomly initialised parts is "
                "meaningless; use the checkpoint of this model"
            )

    def _load_backbone_checkpoint(self, path: str) -> None:
        """Hand a plain backbone (ImageNet) checkpoint to `backbones.weights`."""
        from backbones import Backbone, load_checkpoint

        backbone = getattr(self.model, "backbone", None)
        if not isinstance(backbone, Backbone):
            raise CheckpointError(
                f"{path} is not a litedet detector checkpoint (its keys do not match the model). "
                "For ImageNet backbone weights use MODEL.BACKBONE.WEIGHTS instead of MODEL.WEIGHTS."
            )
        logger.info("%s is not a detector checkpoint; loading it as backbone weights (backbones.weights)", path)
        try:
            report = load_checkpoint(backbone, path)
        except CheckpointError as err:
            raise CheckpointError(
                f"{path} matches neither the detector nor its backbone: {err}. "
                "(Detector checkpoints go in MODEL.WEIGHTS, ImageNet backbone weights in MODEL.BACKBONE.WEIGHTS.)"
            ) from None
        logger.info("%s", report)


def read_model_info(path: str) -> Optional[ModelInfo]:
    """The `ModelInfo` checkpoint ``path`` records (None for a checkpoint that records none:
    written by an older litedet, or not by litedet). `CheckpointError` for an unreadable file."""
    checkpoint = load_torch_file(path)
    return ModelInfo.from_dict(checkpoint.get(MODEL_INFO_KEY)) if isinstance(checkpoint, dict) else None


def _iteration_of(path: str) -> int:
    m = _PERIODIC.match(os.path.basename(path))
    return int(m.group(1)) if m else -1


def _summarize(keys: List[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
