"""Dataset wrappers: records + mapper as a map-style dataset, stored compactly.

`MapDataset` serves mapped samples from records held as one pickled buffer (forked loader
workers then share it instead of copying every record), and replaces a sample that cannot
be used when ``DATALOADER.BAD_SAMPLE_POLICY`` is ``skip``.
"""
from __future__ import annotations

import logging
import pickle
import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import Dataset

from .bad_samples import SKIPPED_KEY
from .conventions import usable_annotation
from .errors import BadSampleError

__all__ = ["MapDataset", "aspect_ratio_flags", "usable_annotation"]

logger = logging.getLogger(__name__)


def aspect_ratio_flags(records: Sequence[Dict[str, Any]]) -> np.ndarray:
    """0 for landscape (``width > height``), 1 otherwise, from the annotated sizes."""
    return np.asarray([0 if r["width"] > r["height"] else 1 for r in records], dtype=np.int64)


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
