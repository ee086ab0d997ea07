"""Reading images safely: every failure is a `BadSampleError` naming the file.

Decoding uses Pillow (``Image.load()`` detects truncated JPEG/PNG files instead of
returning a half-grey picture) on bytes read by Python (non-ASCII paths work everywhere).
Every tool reads images through `read_image` (training, evaluation, ``check_dataset``,
the demo and ``export --sample-image``), so they all see the same pixels.

Conventions (docs/check_dataset.md, "Conventions"):

- Only regular files are read (a FIFO or device is refused before it is opened for
  reading), and none larger than `image_byte_limit` of the pixel limit.
- Output is ``uint8`` RGB ``[H, W, 3]``. Grayscale/palette/CMYK become RGB; RGBA/LA drop
  alpha (as detectron2 does, no compositing).
- **Pixel values wider than 8 bits** (16-bit PNG/TIFF, gray or colour; 32-bit integer
  TIFF holding values up to 65535) keep their top 8 significant bits:
  ``value >> (bits - 8)``, where ``bits`` is 16 unless the file declares fewer (a PNG
  ``sBIT`` chunk, a TIFF ``MaxSampleValue``), so declared 12-bit data is scaled by
  ``>> 4``. When that would leave a non-black image nearly black (brightest value below
  16 of 255: e.g. undeclared 12-bit data, or 8-bit values stored in 16 bits), the image
  is refused (``unsupported_pixel_values``) rather than trained on as black. Float images
  (TIFF mode ``F``) with values in 0..1 are scaled by 255, values in 0..255 are kept;
  negative, larger or non-finite values are refused.
- **EXIF orientation is applied** (as detectron2's ``read_image`` and every photo viewer
  do), so the pixels are what an annotation tool that honours EXIF showed. Annotations
  must therefore be in the displayed frame; the annotated ``width``/``height`` are checked
  against the decoded (rotated) size, so a 90-degree EXIF rotation the annotation tool did
  not apply is caught as a size mismatch with a hint. ``check_dataset`` warns for every
  image carrying a non-identity EXIF orientation and training logs a counted warning
  (`detection.data.bad_samples.ExifOrientationCounter`), since a 180-degree rotation
  cannot be detected from the size alone.
- The pixel limit (``INPUT.MAX_IMAGE_PIXELS``) is checked from the header *before*
  decoding, so a decompression bomb costs nothing.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadSampleError
from .files import FileProblem, read_regular_file

__all__ = [
    "ImageInfo", "inspect_image", "read_image", "read_image_with_info", "read_image_info", "check_decoded_size",
    "join_under_root", "image_byte_limit", "EXIF_ORIENTATION_TAG",
]

EXIF_ORIENTATION_TAG = 0x0112
_TIFF_MAX_SAMPLE_VALUE = 281
#: Below this brightest 8-bit value a converted wide image is refused as nearly black.
MIN_CONVERTED_MAX = 16
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def image_byte_limit(max_pixels: Optional[int]) -> int:
    """Largest image file read: 16 bytes per allowed pixel (uncompressed float RGBA), at
    least 256 MiB; 2 GiB without a pixel limit."""
    if not max_pixels or max_pixels <= 0:
        return 1 << 31
    return max(256 << 20, 16 * int(max_pixels))


@dataclass
class ImageInfo:
    """What the header says: stored size (before EXIF rotation), format, mode, orientation,
    and the bits per sample (8; 16 for 16-bit files, also colour ones that Pillow reports as
    ``RGB``; 32 for integer or float 32-bit samples)."""

    width: int
    height: int
    format: str
    mode: str
    exif_orientation: int  # 1 = none; 2..8 = flipped/rotated
    bits: int = 8

    @property
    def display_hw(self) -> Tuple[int, int]:
        """(height, width) after applying the EXIF orientation (5..8 swap the axes)."""
        return (self.width, self.height) if self.exif_orientation in (5, 6, 7, 8) else (self.height, self.width)

    @property
    def pixel_type(self) -> str:
        """The mode with its real sample depth, e.g. ``RGB`` or ``RGB 16-bit`` (what
        ``check_dataset`` lists under "image modes")."""
        if self.bits == 8 or self.mode.startswith("I;16"):
            return self.mode
        return f"{self.mode} {self.bits}-bit"


_OTHER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def _missing_hint(file_name: str) -> str:
    """Why an image may be missing, when the name says so: a Windows path, or the same image
    under another extension (PNG files in a VOC ``JPEGImages/`` folder)."""
    if "\\" in file_name and os.sep != "\\":
        return " (a backslash in the path: a Windows path? use '/')"
    stem, ext = os.path.splitext(file_name)
    for other in _OTHER_EXTENSIONS + tuple(e.upper() for e in _OTHER_EXTENSIONS):
        if other != ext and os.path.isfile(stem + other):
            voc = os.path.basename(os.path.dirname(file_name)) == "JPEGImages"
            where = "; the VOC layout names images JPEGImages/<id>.jpg" if voc else ""
            return f" (but {os.path.basename(stem + other)} exists: another extension{where})"
    return ""


def _read_bytes(file_name: str, max_pixels: Optional[int]) -> bytes:
    try:
        data = read_regular_file(file_name, image_byte_limit(max_pixels), "image")
    except FileNotFoundError:
        raise BadSampleError(file_name, f"image file not found{_missing_hint(file_name)}", "missing_image") from None
    except FileProblem as err:
        if err.file_type == "a directory":
            kind = "not_an_image"
        else:
            kind = "image_too_large" if err.kind == "file_too_large" else err.kind
        raise BadSampleError(file_name, err.reason, kind) from None
    except OSError as err:
        raise BadSampleError(file_name, f"cannot read image file ({err.strerror or err})", "unreadable_image") from None
    if not data:
        raise BadSampleError(file_name, "empty image file (0 bytes)", "empty_image_file")
    return data


def _rawmode(im: Image.Image) -> str:
    """The decoder's raw mode (``"RGB;16B"``, ``"I;16N"``, ...), which tells the sample depth
    even where Pillow's mode does not (16-bit colour loads as 8-bit ``RGB``)."""
    try:
        args = im.tile[0][3]
    except (IndexError, TypeError, AttributeError):
        return ""
    return str(args[0] if isinstance(args, tuple) and args else args)


def _sample_bits(im: Image.Image) -> int:
    if im.mode.startswith("I;16"):
        return 16
    if im.mode in ("I", "F"):
        return 16 if ";16" in _rawmode(im) else 32
    return 16 if ";16" in _rawmode(im) else 8


def _png_significant_bits(data: bytes) -> Optional[int]:
    """The colour channels' significant bits from a PNG ``sBIT`` chunk (before the image data)."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        if kind == b"sBIT" and 1 <= length <= 4:
            chunk = data[pos + 8: pos + 8 + length]
            colour = chunk[:3] if length >= 3 else chunk[:1]  # RGB(A): 3 (+alpha); gray(+alpha): 1 (+alpha)
            return max(colour) if colour else None
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _declared_bits(im: Image.Image, data: bytes) -> Optional[int]:
    """Significant bits per sample the file declares (PNG sBIT, TIFF MaxSampleValue)."""
    if im.format == "PNG":
        return _png_significant_bits(data)
    if im.format == "TIFF":
        value = getattr(im, "tag_v2", {}).get(_TIFF_MAX_SAMPLE_VALUE)
        if isinstance(value, (tuple, list)):
            value = max(value) if value else None
        if isinstance(value, int) and value > 0:
            return value.bit_length()
    return None


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an ``[H, W(, C)]`` array (what ``ImageOps.exif_transpose``
    does to a Pillow image)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return arr[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr


def _wide_samples(im: Image.Image, data: bytes) -> np.ndarray:
    """The full-precision samples of a > 8-bit image, ``[H, W]`` or ``[H, W, 3]`` RGB."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return np.asarray(im)
    import cv2  # Pillow keeps only the high byte of 16-bit colour

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        raise ValueError(f"OpenCV cannot decode its {_rawmode(im)} samples")
    if arr.ndim == 3:
        arr = arr[:, :, 0] if arr.shape[2] <= 2 else arr[:, :, 2::-1]  # gray(+alpha) / BGR(A) -> RGB
    return arr


def _wide_to_uint8(file_name: str, arr: np.ndarray, info: ImageInfo, declared: Optional[int]) -> np.ndarray:
    """The documented conversion of wide samples to 8 bits (module docstring), or
    `BadSampleError` (``unsupported_pixel_values``) where it would be degenerate."""

    def refuse(reason: str) -> BadSampleError:
        reason += "; convert it to 8-bit first (docs/check_dataset.md, pixel values)"
        return BadSampleError(file_name, reason, "unsupported_pixel_values")

    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise refuse("float image with NaN/inf pixels")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise refuse(f"float image with values in {lo:g}..{hi:g}, outside 0..255")
        scaled = arr * 255.0 if hi <= 1.0 else arr
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:
        raise refuse(f"{info.bits}-bit integer image with values in {lo}..{hi}, outside 0..65535")
    bits = declared if declared is not None and 8 < declared <= 16 else 16
    shift = bits - 8
    if hi > 0 and (hi >> shift) < MIN_CONVERTED_MAX:
        guess = f"8-bit values stored as {info.bits}-bit?" if hi < 256 else f"{hi.bit_length()}-bit data?"
        raise refuse(
            f"{info.bits}-bit image whose brightest value is {hi} ({guess}): litedet keeps the top 8 of {bits} bits "
            f"(value >> {shift}), which would leave it nearly black"
        )
    return np.clip(arr >> shift, 0, 255).astype(np.uint8)


def _to_rgb_uint8(im: Image.Image) -> np.ndarray:
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # avoids Pillow's palette-transparency warning
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def _open(file_name: str, data: bytes, max_pixels: Optional[int]) -> Tuple[Image.Image, ImageInfo]:
    """Open the header (no pixel decoded) and check the pixel limit."""
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if data[:4] in _TIFF_MAGIC:
            reason = "TIFF that Pillow cannot decode (multi-channel float or 32-bit integer samples?)"
            raise BadSampleError(file_name, f"{reason}; convert it to 8-bit first", "unsupported_pixel_values") from None
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
        raise BadSampleError(file_name, f"{width}x{height} exceeds INPUT.MAX_IMAGE_PIXELS={max_pixels}", "image_too_large")
    bits = _sample_bits(im)  # before getexif(), which may decode a PNG (and drop its tile list)
    try:
        orientation = int(im.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not worth failing the image for
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    return im, ImageInfo(width, height, str(im.format or "?"), str(im.mode), orientation, bits)


def read_image_info(file_name: str, max_pixels: Optional[int] = None) -> ImageInfo:
    """The header facts of ``file_name`` (`ImageInfo`) without decoding its pixels;
    `BadSampleError` as `read_image`."""
    file_name = os.fspath(file_name)
    data = _read_bytes(file_name, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _open(file_name, data, max_pixels)[1]


def read_image_with_info(
    file_name: str, max_pixels: Optional[int] = None, expected_hw: Optional[Tuple[int, int]] = None
) -> Tuple[np.ndarray, ImageInfo]:
    """Decode ``file_name`` (see the module docstring) and return it with its `ImageInfo`;
    ``max_pixels`` and ``expected_hw`` as in `read_image`."""
    file_name = os.fspath(file_name)
    if expected_hw is not None and max_pixels and expected_hw[0] * expected_hw[1] > max_pixels:
        reason = f"{expected_hw[1]}x{expected_hw[0]} exceeds INPUT.MAX_IMAGE_PIXELS={max_pixels}"
        raise BadSampleError(file_name, reason, "image_too_large")
    data = _read_bytes(file_name, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im, info = _open(file_name, data, max_pixels)
        try:
            im.load()
            if info.bits > 8:
                arr = _orient(_wide_samples(im, data), info.exif_orientation)
                arr = _wide_to_uint8(file_name, arr, info, _declared_bits(im, data))
                arr = np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr
            else:
                if info.exif_orientation != 1:
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
    if expected_hw is not None:
        check_decoded_size(file_name, arr.shape[:2], expected_hw)
    return np.ascontiguousarray(arr), info


def read_image(
    file_name: str,
    max_pixels: Optional[int] = None,
    expected_hw: Optional[Tuple[int, int]] = None,
    format: str = "RGB",
) -> np.ndarray:
    """Read an image as ``uint8`` ``[H, W, 3]`` (EXIF orientation applied), RGB or, with
    ``format="BGR"``, BGR (OpenCV's order, for the demo and export).

    ``max_pixels`` guards against decompression bombs (checked on the annotated size when
    ``expected_hw`` is given, and on the header before decoding); ``expected_hw`` must
    match the decoded size because boxes are in the annotated frame. Every failure raises
    `BadSampleError` naming the file.
    """
    if format not in ("RGB", "BGR"):
        raise ValueError(f"format must be 'RGB' or 'BGR', got {format!r}")
    img = read_image_with_info(file_name, max_pixels, expected_hw)[0]
    return np.ascontiguousarray(img[:, :, ::-1]) if format == "BGR" else img


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


#: What a path outside the root can do about it, where the setting applies (COCO file names).
OUTSIDE_ROOT_HINT = "set DATASETS.ALLOW_PATHS_OUTSIDE_ROOT True to allow"


def join_under_root(root: str, relative: str, allow_outside: bool = False, hint: str = OUTSIDE_ROOT_HINT) -> str:
    """``root/relative``, refusing (``ValueError``) a path that leaves ``root``.

    Annotation files are data from elsewhere; an entry such as ``../../home/me/.ssh/id``
    or ``/etc/passwd`` must not make the loader read arbitrary files unless the user
    allows it (``DATASETS.ALLOW_PATHS_OUTSIDE_ROOT``). Only the spelling is checked, not
    symlinks: a symlinked image folder under the root is a legitimate layout. ``hint``
    ends the message (the setting does not apply to every caller).
    """
    path = os.path.join(root, relative)
    if allow_outside:
        return path
    base = os.path.abspath(root)
    target = os.path.abspath(path)
    if os.path.isabs(relative) or os.path.commonpath([base, target]) != base:
        raise ValueError(
            f"path {relative!r} points outside the image root {root!r} ({hint})"
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
