"""``DATALOADER.BAD_SAMPLE_POLICY``: what a sample that cannot be used does to a run.

- ``"error"`` (default): the `BadSampleError` naming the file stops training.
- ``"skip"``: the dataset replaces the sample by another one (same aspect group, so
  batches keep their size) and marks the replacement with the skipped file names
  (`SKIPPED_KEY`); `BadSampleCounter`, in the main process, takes those marks off each
  batch, counts them, logs every skip with the file and the running total, and raises
  `BadSampleError` once more than ``DATALOADER.MAX_BAD_SAMPLE_FRACTION`` of the samples
  drawn were bad (measured over at least `MIN_DRAWS` draws, so one bad image early in a
  run does not stop it). Counting happens in the main process because data-loader workers
  are separate processes whose counters nobody would see.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Tuple

from ..config_checks import BAD_SAMPLE_POLICIES, check_choice
from .errors import BadSampleError

__all__ = [
    "SKIPPED_KEY", "EXIF_KEY", "MIN_DRAWS", "BadSampleCounter", "ExifOrientationCounter", "bad_sample_policy",
    "describe_error",
]

logger = logging.getLogger(__name__)

#: Key under which a replacement sample carries the files skipped to produce it.
SKIPPED_KEY = "skipped_bad_samples"
#: Key under which a training sample carries ``(file name, EXIF orientation)`` when its image
#: has a non-identity orientation (`ExifOrientationCounter` takes it off in the main process).
EXIF_KEY = "exif_orientation"
MIN_DRAWS = 100


def bad_sample_policy(cfg: Any) -> Tuple[bool, float]:
    """``(skip, max_fraction)`` from the config (``SKIP_BAD_SAMPLES True`` = ``"skip"``)."""
    dl = cfg.DATALOADER
    policy = check_choice("DATALOADER.BAD_SAMPLE_POLICY", str(dl.get("BAD_SAMPLE_POLICY", "error")).lower(), BAD_SAMPLE_POLICIES)
    skip = policy == "skip" or bool(dl.get("SKIP_BAD_SAMPLES", False))
    return skip, float(dl.get("MAX_BAD_SAMPLE_FRACTION", 0.05))


def describe_error(err: BaseException) -> str:
    """One line for ``err``. Errors re-raised from DataLoader workers carry the worker's
    whole traceback in their message; its last line is the original ``Type: message``."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(err).__name__
    # "pkg.mod.SomeError: message" -> "message"
    return re.sub(r"^[\w.]*(Error|Exception): ", "", lines[-1])


class BadSampleCounter:
    """Counts skipped samples across batches and enforces the maximum fraction."""

    def __init__(self, max_fraction: float = 0.05, min_draws: int = MIN_DRAWS) -> None:
        self.max_fraction = float(max_fraction)
        self.min_draws = int(min_draws)
        self.num_samples = 0  # samples delivered
        self.num_skipped = 0

    @property
    def num_draws(self) -> int:
        return self.num_samples + self.num_skipped

    def update(self, batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Strip the skip marks from ``batch`` (in place), count, log; returns ``batch``."""
        for item in batch:
            skipped = item.pop(SKIPPED_KEY, None) if isinstance(item, dict) else None
            for file_name in skipped or ():
                self.num_skipped += 1
                logger.warning(
                    "Skipped bad sample %s (DATALOADER.BAD_SAMPLE_POLICY skip); %d skipped so far",
                    file_name,
                    self.num_skipped,
                )
        self.num_samples += len(batch)
        allowed = self.max_fraction * max(self.num_draws, self.min_draws)
        if self.num_skipped > allowed:
            raise BadSampleError(
                "DATALOADER.MAX_BAD_SAMPLE_FRACTION",
                f"{self.num_skipped} of {self.num_draws} samples drawn were bad, more than the allowed "
                f"{self.max_fraction:g}; run tools/check_dataset.py on the dataset",
            )
        return batch

    def state_dict(self) -> Dict[str, int]:
        return {"num_samples": self.num_samples, "num_skipped": self.num_skipped}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Continue counting after a resume (the maximum fraction is over the whole run)."""
        self.num_samples = int(state.get("num_samples", 0))
        self.num_skipped = int(state.get("num_skipped", 0))

    def __repr__(self) -> str:
        return f"BadSampleCounter(skipped={self.num_skipped}, drawn={self.num_draws}, max_fraction={self.max_fraction})"


class ExifOrientationCounter:
    """Counts the distinct training images that carry a non-identity EXIF orientation.

    litedet applies the orientation (docs/check_dataset.md, "EXIF orientation"), so boxes
    must be in the displayed frame; an annotation tool that ignored EXIF gave boxes in the
    stored frame, which a 180-degree or mirrored rotation does not reveal by the image size.
    The first such image is logged as a warning with the rule, then the running count at 10,
    100, 1000, ... images, in the main process (from the marks `EXIF_KEY` the mapper sets).
    """

    def __init__(self) -> None:
        self._seen: set = set()

    @property
    def count(self) -> int:
        return len(self._seen)

    def update(self, batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Strip the marks from ``batch`` (in place), count, log; returns ``batch``."""
        for item in batch:
            mark = item.pop(EXIF_KEY, None) if isinstance(item, dict) else None
            if mark is None or mark[0] in self._seen:
                continue
            self._seen.add(mark[0])
            n = len(self._seen)
            if n == 1:
                logger.warning(
                    "%s carries EXIF orientation %d: litedet trains on the displayed (rotated) image, so its boxes "
                    "must be in that frame; if your annotation tool ignored EXIF they are wrong "
                    "(docs/check_dataset.md, EXIF orientation; tools/check_dataset.py lists every such image)",
                    mark[0], mark[1],
                )
            elif n >= 10 and str(n).rstrip("0") == "1":  # 10, 100, 1000, ...
                logger.warning("%d training images with an EXIF orientation so far (e.g. %s)", n, mark[0])
        return batch
