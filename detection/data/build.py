"""Loader builders: the records of DATASETS.TRAIN / DATASETS.TEST, and the train / test
loaders described by a config.

Training (`build_detection_train_loader`): an infinite, seeded, rank-sharded index stream
(`TrainingSampler`), batched per process (``SOLVER.IMS_PER_BATCH // world_size``) with
aspect-ratio grouping, resumable (`TrainLoader`). Testing (`build_detection_test_loader`):
each rank one contiguous chunk of the dataset once (`InferenceSampler`).
"""
from __future__ import annotations

import logging
import os
import stat
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from torch.utils.data import DataLoader

from ..config_checks import check_class_ids, require
from ..utils import comm
from .bad_samples import bad_sample_policy
from .catalog import DatasetCatalog, MetadataCatalog, register_from_cfg
from .common import MapDataset, usable_annotation
from .errors import BadSampleError, DatasetError
from .loaders import TrainLoader, seed_worker, trivial_batch_collator
from .mapper import DatasetMapper
from .samplers import InferenceSampler, TrainingSampler

__all__ = [
    "check_has_usable_boxes",
    "check_image_files",
    "get_detection_dataset_dicts",
    "build_detection_train_loader",
    "build_detection_test_loader",
]

logger = logging.getLogger(__name__)


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
            raise DatasetError(f"dataset {name!r} is empty (no image)", "empty_dataset")
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
        all_records = [r for r in all_records if any(usable_annotation(a) for a in r.get("annotations", []))]
        logger.info("Removed %d images without usable annotations; %d left", before - len(all_records), len(all_records))
        if not all_records:
            raise DatasetError(
                f"no image of {names} has a usable annotation (DATALOADER.FILTER_EMPTY_ANNOTATIONS)", "no_usable_boxes"
            )
    _log_class_histogram(all_records, classes, names)
    return all_records


def check_has_usable_boxes(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> None:
    """`DatasetError` (``no_usable_boxes``) when no record holds a box that is not an ignore
    region: training would run and learn nothing."""
    if not any(usable_annotation(a) for r in records for a in r.get("annotations", [])):
        n_boxes = sum(len(r.get("annotations", [])) for r in records)
        raise DatasetError(
            f"DATASETS.TRAIN {list(names)}: nothing to learn: {len(records)} images and {n_boxes} boxes, none of them "
            "usable (every box missing, dropped as degenerate, or a crowd/ignore/difficult region); "
            "run tools/check_dataset.py on it",
            "no_usable_boxes",
        )


def check_image_files(records: Sequence[Dict[str, Any]], name: str, skip_bad_samples: bool = False) -> int:
    """Stat (do not read) every record's image file, so that a missing test image stops a
    run before inference (and, through the trainer's start-up check, before training)
    rather than after it. A missing or non-regular file raises `BadSampleError` naming it,
    or with ``skip_bad_samples`` is counted in one warning (the test loader leaves such
    images out). Returns the number of such files."""
    bad: List[str] = []
    for path in dict.fromkeys(r["file_name"] for r in records):
        try:
            ok = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            ok = False
        if not ok:
            if not skip_bad_samples:
                reason = "image file not found" if not os.path.lexists(path) else "not a regular, readable image file"
                raise BadSampleError(path, f"{reason} (test set {name!r})", "missing_image")
            bad.append(path)
    if bad:
        logger.warning(
            "dataset %r: %d image file(s) missing or unreadable, e.g. %s; they will be left out "
            "(DATALOADER.BAD_SAMPLE_POLICY skip)", name, len(bad), bad[0],
        )
    return len(bad)


def _log_class_histogram(records: List[Dict[str, Any]], classes: Optional[List[str]], names: List[str]) -> None:
    counts: Dict[int, int] = {}
    for r in records:
        for a in r.get("annotations", []):
            if usable_annotation(a):
                counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
    if classes:
        parts = [f"{c}: {counts.get(i, 0)}" for i, c in enumerate(classes)]
    else:
        parts = [f"{k}: {v}" for k, v in sorted(counts.items())]
    logger.info("%s: %d images, %d boxes (%s)", "+".join(names), len(records), sum(counts.values()), ", ".join(parts))


def build_detection_train_loader(
    cfg: Any, mapper: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
) -> TrainLoader:
    """The training loader described by ``cfg``: infinite, seeded (``SEED``), per-process
    batch ``SOLVER.IMS_PER_BATCH // world_size``, honouring ``DATASETS.TRAIN``,
    ``DATASETS.REGISTER_*`` and ``DATALOADER.*``."""
    # First, before anything that can fail on one rank alone (a file missing on one node):
    # the other ranks must not be left in this collective (see comm.fail_together).
    seed = comm.shared_seed(int(cfg.SEED))
    register_from_cfg(cfg)
    rank, world = comm.get_rank(), comm.get_world_size()
    total = int(cfg.SOLVER.IMS_PER_BATCH)
    require(
        total > 0 and total % world == 0, f"SOLVER.IMS_PER_BATCH={total} must be a positive multiple of the world size {world}"
    )
    names = [cfg.DATASETS.TRAIN] if isinstance(cfg.DATASETS.TRAIN, str) else list(cfg.DATASETS.TRAIN)
    records = get_detection_dataset_dicts(names, filter_empty=bool(cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS))
    check_has_usable_boxes(records, names)
    check_class_ids(cfg, names, records)
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
    each rank gets a contiguous chunk (`InferenceSampler`). Every image file is stat'ed
    first (`check_image_files`): a missing one stops evaluation before inference.

    With ``DATALOADER.BAD_SAMPLE_POLICY skip`` an unreadable image is logged and its batch is an
    empty list, so evaluation loops should skip empty batches.
    """
    register_from_cfg(cfg)
    records = get_detection_dataset_dicts(dataset_name, filter_empty=False)
    skip_bad = bad_sample_policy(cfg)[0]
    check_image_files(records, dataset_name if isinstance(dataset_name, str) else "+".join(dataset_name), skip_bad)
    dataset = MapDataset(
        records,
        mapper if mapper is not None else DatasetMapper(cfg, is_train=False),
        skip_bad_samples=skip_bad,
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
