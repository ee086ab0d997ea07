"""ImageFolder datasets and loaders for classification pretraining.

Layout (torchvision's ImageFolder): ``DATASETS.ROOT/<split>/<class name>/<image file>``;
class indices are the sorted class-folder names of the *training* split, so every split
labels a class the same way (a test split may hold a subset of the classes).

Images are decoded with PIL and augmented with torchvision transforms; batches carry
``uint8`` RGB images (``N, 3, H, W``, 0-255) and ``int64`` labels. The model normalises
with ``MODEL.PIXEL_MEAN/STD``, as the detectors do, so the exported backbone sees the
inputs it will see in a detector.

Training reuses the detector loader's `TrainingSampler` (infinite, seeded, rank-sharded
index stream); `ClassificationTrainLoader.state_dict` records the number of batches handed
out, so a resumed run continues the same index stream. Each sample's augmentation is seeded
from ``(seed, stream position)``, so a resumed run also sees the same crops and flips, with
any number of workers. Testing uses `InferenceSampler` (each rank one contiguous chunk,
every image exactly once).
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import DataLoader, Dataset

from detection.config_checks import check_choice, require
from detection.data.loaders import ResumableTrainLoader, seed_worker
from detection.data.samplers import InferenceSampler, PositionedBatchSampler, TrainingSampler, sample_seed
from detection.utils import comm

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderError",
    "ImageFolderDataset",
    "ClassificationBatch",
    "ClassificationTrainLoader",
    "collate_classification",
    "list_classes",
    "scan_image_folder",
    "split_dir",
    "train_classes",
    "build_train_transform",
    "build_test_transform",
    "build_classification_train_loader",
    "build_classification_test_loader",
    "iters_per_epoch",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderError(ValueError):
    """A dataset folder is missing, empty, inconsistent, or holds an unreadable image."""


# ----------------------------------------------------------------------------- scanning
def split_dir(cfg, split: str) -> str:
    return os.path.join(cfg.DATASETS.ROOT, split)


def list_classes(folder: str) -> List[str]:
    """Sorted names of the class sub-folders of ``folder``."""
    if not os.path.isdir(folder):
        raise ImageFolderError(
            f"image folder not found: {folder} (expected DATASETS.ROOT/<split>/<class>/<image>)"
        )
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ImageFolderError(f"no class folders in {folder} (expected {folder}/<class>/<image>)")
    return classes


@functools.lru_cache(maxsize=8)
def _scan(folder: str, classes: Tuple[str, ...]) -> Tuple[Tuple[str, int], ...]:
    samples: List[Tuple[str, int]] = []
    for label, name in enumerate(classes):
        class_dir = os.path.join(folder, name)
        if not os.path.isdir(class_dir):
            continue  # a test split may hold a subset of the training classes
        files = sorted(
            os.path.join(class_dir, f)
            for f in os.listdir(class_dir)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
        if not files:
            raise ImageFolderError(f"class folder has no images ({', '.join(IMAGE_EXTENSIONS[:3])}, ...): {class_dir}")
        samples.extend((path, label) for path in files)
    return tuple(samples)


def scan_image_folder(folder: str, classes: Optional[Sequence[str]] = None) -> Tuple[List[str], List[Tuple[str, int]]]:
    """``(classes, [(image path, label), ...])`` for ``folder``.

    ``classes`` (the training split's) fixes the label of each class name; a folder class
    not in it is an error. Without it the folder's own sorted class folders are used.
    """
    own = list_classes(folder)
    if classes is None:
        classes = own
    else:
        unknown = sorted(set(own) - set(classes))
        if unknown:
            raise ImageFolderError(
                f"{folder} has class folders that the training split lacks: {unknown[:5]}"
                + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            )
    samples = _scan(os.path.abspath(folder), tuple(classes))
    return list(classes), list(samples)


def train_classes(cfg) -> Optional[List[str]]:
    """Class names of the training split, or None when that folder does not exist
    (e.g. --eval-only with only a validation split at hand)."""
    folder = split_dir(cfg, _train_split(cfg))
    return list_classes(folder) if os.path.isdir(folder) else None


def _train_split(cfg) -> str:
    splits = [cfg.DATASETS.TRAIN] if isinstance(cfg.DATASETS.TRAIN, str) else list(cfg.DATASETS.TRAIN)
    if len(splits) != 1:
        raise ImageFolderError(f"DATASETS.TRAIN must name exactly one split folder, got {splits}")
    return splits[0]


# ----------------------------------------------------------------------------- dataset
class ImageFolderDataset(Dataset):
    """``(uint8 tensor 3xHxW, label)`` per image, after ``transform`` (PIL image in).

    An ``(index, seed)`` key (from `ClassificationTrainLoader`) runs ``transform`` with the
    CPU torch RNG seeded ``seed`` and restores the RNG afterwards: the augmentation is then
    a function of the sample's stream position only.
    """

    def __init__(self, samples: Sequence[Tuple[str, int]], transform: Callable, classes: Sequence[str]) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: Union[int, Tuple[int, int]]) -> Tuple[torch.Tensor, int]:
        from PIL import Image

        seed: Optional[int] = None
        if isinstance(idx, tuple):
            idx, seed = idx
        path, label = self.samples[idx]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, ValueError) as err:
            raise ImageFolderError(f"cannot read image {path}: {err}") from None
        if seed is None:
            return self.transform(img), label
        # torchvision's random transforms draw from the CPU torch RNG. Forked so that, with
        # num_workers 0, the training process's own stream (dropout, ...) stays untouched;
        # only the CPU generator is seeded (torch.manual_seed would also reseed CUDA).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            return self.transform(img), label


def build_train_transform(cfg) -> Callable:
    """Random-resized crop, flip, optional colour jitter; PIL image -> uint8 tensor."""
    from torchvision import transforms as T

    i = cfg.INPUT
    check_choice("INPUT.RANDOM_FLIP", i.RANDOM_FLIP, ("horizontal", "none"))
    lo, hi = (float(x) for x in i.CROP_SCALE)
    require(0 < lo <= hi <= 1, f"INPUT.CROP_SCALE must satisfy 0 < min <= max <= 1, got {tuple(i.CROP_SCALE)}")
    steps: List[Callable] = [
        T.RandomResizedCrop(int(i.TRAIN_CROP_SIZE), scale=(lo, hi), ratio=tuple(float(x) for x in i.CROP_RATIO))
    ]
    if i.RANDOM_FLIP == "horizontal":
        steps.append(T.RandomHorizontalFlip())
    if i.COLOR_JITTER > 0:
        j = float(i.COLOR_JITTER)
        steps.append(T.ColorJitter(brightness=j, contrast=j, saturation=j))
    steps.append(T.PILToTensor())
    return T.Compose(steps)


def build_test_transform(cfg) -> Callable:
    """Resize (short side, or square) to MIN_SIZE_TEST, centre crop TEST_CROP_SIZE."""
    from torchvision import transforms as T

    size = int(cfg.INPUT.MIN_SIZE_TEST)
    crop = int(cfg.INPUT.TEST_CROP_SIZE)
    require(crop <= size, f"INPUT.TEST_CROP_SIZE ({crop}) must not exceed INPUT.MIN_SIZE_TEST ({size})")
    resize = T.Resize((size, size) if cfg.INPUT.TEST_RESIZE_SQUARE else size)
    return T.Compose([resize, T.CenterCrop(crop), T.PILToTensor()])


# ----------------------------------------------------------------------------- batches
@dataclass
class ClassificationBatch:
    """A batch: ``images`` uint8 ``(N, 3, H, W)`` RGB 0-255, ``labels`` int64 ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def pin_memory(self) -> "ClassificationBatch":
        return ClassificationBatch(self.images.pin_memory(), self.labels.pin_memory())


def collate_classification(samples: Sequence[Tuple[torch.Tensor, int]]) -> ClassificationBatch:
    images = torch.stack([s[0] for s in samples])
    labels = torch.as_tensor([int(s[1]) for s in samples], dtype=torch.int64)
    return ClassificationBatch(images, labels)


class ClassificationTrainLoader(ResumableTrainLoader):
    """Infinite iterator of `ClassificationBatch` for this process.

    Batch ``b`` holds positions ``b * batch_size .. (b + 1) * batch_size - 1`` of this
    rank's `TrainingSampler` stream, so restoring ``num_batches`` (``load_state_dict``) puts
    the stream exactly where it was, without reading any image. Each sample's augmentation
    is seeded from ``(seed, global stream position)``, so the batches are bit-identical
    after a resume, with any number of workers.
    """

    def __init__(
        self, dataset: ImageFolderDataset, sampler: TrainingSampler, batch_size: int, num_workers: int = 0,
        seed: int = 0, pin_memory: bool = False, seed_drawn: bool = False,
    ) -> None:
        super().__init__(sampler, batch_size, num_workers, seed, seed_drawn)
        self.dataset = dataset
        self.pin_memory = bool(pin_memory)

    def _batches(self) -> Iterator[List[Tuple[int, int]]]:
        self.sampler.load_state_dict({"num_yielded": self._num_batches * self.batch_size})
        stream = ((idx, sample_seed(self.seed, pos)) for pos, idx in self.sampler.iter_with_positions())
        while True:
            yield list(itertools.islice(stream, self.batch_size))

    def _make_loader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_sampler=PositionedBatchSampler(self._batches()),
            num_workers=self.num_workers,
            collate_fn=collate_classification,
            worker_init_fn=seed_worker,
            generator=self._worker_generator(),
            pin_memory=self.pin_memory,
            persistent_workers=False,
        )

    def __repr__(self) -> str:
        return (
            f"ClassificationTrainLoader(images={len(self.dataset)}, classes={len(self.dataset.classes)}, "
            f"batch_size={self.batch_size}, num_workers={self.num_workers})"
        )


def iters_per_epoch(num_images: int, total_batch: int) -> int:
    """Iterations that show every training image once: ``ceil(images / total batch)``."""
    return max(1, math.ceil(num_images / max(1, total_batch)))


def build_classification_train_loader(cfg) -> ClassificationTrainLoader:
    """The infinite training loader of ``cfg``: per-process batch
    ``SOLVER.IMS_PER_BATCH // world_size``, seeded by ``SEED``."""
    # First, before anything that can fail on one rank alone (a folder missing on one node):
    # the other ranks must not be left in this collective (see comm.fail_together).
    seed = comm.shared_seed(int(cfg.SEED))
    world, rank = comm.get_world_size(), comm.get_rank()
    total = int(cfg.SOLVER.IMS_PER_BATCH)
    if total <= 0 or total % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={total} must be a positive multiple of the world size {world}")
    folder = split_dir(cfg, _train_split(cfg))
    classes, samples = scan_image_folder(folder)
    logger.info("Training split %s: %d images in %d classes", folder, len(samples), len(classes))
    sampler = TrainingSampler(len(samples), shuffle=True, seed=seed, rank=rank, world_size=world)
    dataset = ImageFolderDataset(samples, build_train_transform(cfg), classes)
    return ClassificationTrainLoader(
        dataset, sampler, total // world, num_workers=int(cfg.DATALOADER.NUM_WORKERS), seed=seed,
        pin_memory=torch.device(cfg.MODEL.DEVICE).type == "cuda", seed_drawn=int(cfg.SEED) < 0,
    )


def build_classification_test_loader(cfg, split: str) -> DataLoader:
    """Loader over ``DATASETS.ROOT/split`` for this rank's contiguous chunk, in order."""
    folder = split_dir(cfg, split)
    classes, samples = scan_image_folder(folder, train_classes(cfg))
    logger.info("Test split %s: %d images", folder, len(samples))
    dataset = ImageFolderDataset(samples, build_test_transform(cfg), classes)
    return DataLoader(
        dataset,
        sampler=InferenceSampler(len(dataset)),
        batch_size=int(cfg.TEST.IMS_PER_BATCH),
        num_workers=int(cfg.DATALOADER.NUM_WORKERS),
        collate_fn=collate_classification,
        pin_memory=torch.device(cfg.MODEL.DEVICE).type == "cuda",
    )
