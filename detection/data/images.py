"""Reading images safely: every failure is a `BadSampleError` naming the file.

Decoding uses Pillow (``Image.load()`` detects truncated JPEG/PNG files instead of
returning a half-grey picture) on bytes read by Python (non-ASCII paths work everywhere).

Conventions, shared with ``tools/check_dataset.py``:

- Output is ``uint8`` RGB ``[H, W, 3]``. Grayscale/palette/CMYK become RGB; RGBA/LA drop
  alpha (as detectron2 does, no compositing); 16-bit files keep their most significant
  byte (``value >> 8``).
- **EXIF orientation is applied** (as detectron2's ``read_image`` and every photo viewer
  do), so the pixels are what an annotation tool that honours EXIF showed. Annotations
  must therefore be in the displayed frame; the annotated ``width``/``height`` are checked
  against the decoded (rotated) size, so a 90-degree EXIF rotation the annotation tool did
  not apply is caught as a size mismatch with a hint. ``check_dataset`` additionally
  warns for every image carrying a non-identity EXIF orientation, since a 180-degree one
  cannot be detected from the size alone.
- The pixel limit (``INPUT.MAX_IMAGE_PIXELS``) is checked from the header *before*
  decoding, so a decompression bomb costs nothing.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadSampleError

__all__ = [
    "ImageInfo", "inspect_image", "read_image", "read_image_with_info", "check_decoded_size", "join_under_root",
    "EXIF_ORIENTATION_TAG",
]

EXIF_ORIENTATION_TAG = 0x0112


@dataclass
class ImageInfo:
    """What the header says: stored size (before EXIF rotation), format, mode, orientation."""

    width: int
    height: int
    format: str
    mode: str
    exif_orientation: int  # 1 = none; 2..8 = flipped/rotated

    @property
    def display_hw(self) -> Tuple[int, int]:
        """(height, width) after applying the EXIF orientation (5..8 swap the axes)."""
        return (self.width, self.height) if self.exif_orientation in (5, 6, 7, 8) else (self.height, self.width)


def _read_bytes(file_name: str) -> bytes:
    try:
        with open(file_name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadSampleError(file_name, "image file not found", "missing_image") from None
    except IsADirectoryError:
        raise BadSampleError(file_name, "is a directory, not an image file", "not_an_image") from None
    except OSError as err:
        raise BadSampleError(file_name, f"cannot read image file ({err.strerror or err})", "corrupt_image") from None
    if not data:
        raise BadSampleError(file_name, "empty image file (0 bytes)", "empty_image_file")
    return data


def _to_rgb_uint8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16/32-bit grayscale
        arr = np.asarray(im).astype(np.int64)
        gray = np.clip(arr >> 8, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode == "F":  # float grayscale (some TIFFs): assume 0..255
        gray = np.clip(np.asarray(im), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # avoids Pillow's palette-transparency warning
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def read_image_with_info(file_name: str, max_pixels: Optional[int] = None) -> Tuple[np.ndarray, ImageInfo]:
    """Decode ``file_name`` (see the module docstring) and return it with its `ImageInfo`."""
    data = _read_bytes(file_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise BadSampleError(file_name, "not an image (unrecognised file format)", "not_an_image") from None
        except Image.DecompressionBombError as err:
            raise BadSampleError(file_name, f"image too large ({err})", "image_too_large") from None
        except Exception as err:  # noqa: BLE001 - malformed headers raise many types in Pillow
            raise BadSampleError(
                file_name, f"corrupt or truncated image header ({type(err).__name__}: {err})", "corrupt_image"
            ) from None
        width, height = im.size
        if width <= 0 or height <= 0:
            raise BadSampleError(file_name, f"image has zero size {width}x{height}", "corrupt_image")
        if max_pixels and width * height > max_pixels:
            raise BadSampleError(
                file_name, f"{width}x{height} exceeds INPUT.MAX_IMAGE_PIXELS={max_pixels}", "image_too_large"
            )
        try:
            orientation = int(im.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
        except Exception:  # noqa: BLE001 - a broken EXIF block is not worth failing the image for
            orientation = 1
        info = ImageInfo(width, height, str(im.format or "?"), str(im.mode), orientation)
        try:
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            arr = _to_rgb_uint8(im)
        except OSError as err:  # "image file is truncated", broken data streams
            reason = f"corrupt or truncated {info.format} data ({err})"
            raise BadSampleError(file_name, reason, "corrupt_image") from None
        except (ValueError, SyntaxError, IndexError, TypeError, EOFError, MemoryError) as err:
            raise BadSampleError(
                file_name, f"cannot decode {info.format} data ({type(err).__name__}: {err})", "corrupt_image"
            ) from None
    if arr.ndim != 3 or arr.shape[2] != 3:  # pragma: no cover - exotic modes
        raise BadSampleError(file_name, f"unsupported image mode {info.mode!r}", "corrupt_image")
    return np.ascontiguousarray(arr), info


def read_image(
    file_name: str,
    max_pixels: Optional[int] = None,
    expected_hw: Optional[Tuple[int, int]] = None,
) -> np.ndarray:
    """Read an image as ``uint8`` RGB ``[H, W, 3]`` (EXIF orientation applied).

    ``max_pixels`` guards against decompression bombs (checked on the annotated size when
    ``expected_hw`` is given, and on the header before decoding); ``expected_hw`` must
    match the decoded size because boxes are in the annotated frame. Every failure raises
    `BadSampleError` naming the file.
    """
    file_name = os.fspath(file_name)
    if expected_hw is not None and max_pixels and expected_hw[0] * expected_hw[1] > max_pixels:
        reason = f"{expected_hw[1]}x{expected_hw[0]} exceeds INPUT.MAX_IMAGE_PIXELS={max_pixels}"
        raise BadSampleError(file_name, reason, "image_too_large")
    img, _ = read_image_with_info(file_name, max_pixels)
    if expected_hw is not None:
        check_decoded_size(file_name, img.shape[:2], expected_hw)
    return img


def check_decoded_size(file_name: str, decoded_hw: Tuple[int, int], expected_hw: Tuple[int, int]) -> None:
    """`BadSampleError` (kind ``size_mismatch``) when the decoded ``(h, w)`` is not the
    annotated one: the boxes are in the annotated frame."""
    (h, w), expected_hw = tuple(decoded_hw), tuple(expected_hw)
    if (h, w) != expected_hw:
        hint = " (width and height swapped: EXIF orientation?)" if (w, h) == expected_hw else ""
        raise BadSampleError(
            file_name, f"decoded size {w}x{h} differs from the annotated {expected_hw[1]}x{expected_hw[0]}{hint}",
            "size_mismatch",
        )


def join_under_root(root: str, relative: str, allow_outside: bool = False) -> str:
    """``root/relative``, refusing (``ValueError``) a path that leaves ``root``.

    Annotation files are data from elsewhere; an entry such as ``../../home/me/.ssh/id``
    or ``/etc/passwd`` must not make the loader read arbitrary files unless the user
    allows it (``DATASETS.ALLOW_PATHS_OUTSIDE_ROOT``). Only the spelling is checked, not
    symlinks: a symlinked image folder under the root is a legitimate layout.
    """
    path = os.path.join(root, relative)
    if allow_outside:
        return path
    base = os.path.abspath(root)
    target = os.path.abspath(path)
    if os.path.isabs(relative) or os.path.commonpath([base, target]) != base:
        raise ValueError(
            f"path {relative!r} points outside the image root {root!r} "
            "(set DATASETS.ALLOW_PATHS_OUTSIDE_ROOT True to allow)"
        )
    return path


def inspect_image(
    file_name: str, max_pixels: Optional[int] = None
) -> Tuple[Optional[BadSampleError], Optional[ImageInfo], Tuple[int, int]]:
    """Decode ``file_name`` fully and return ``(error, info, (h, w))`` without the pixels:
    small to send back from a worker process (``tools/check_dataset.py``)."""
    try:
        img, info = read_image_with_info(file_name, max_pixels)
    except BadSampleError as err:
        return err, None, (0, 0)
    return None, info, (int(img.shape[0]), int(img.shape[1]))
