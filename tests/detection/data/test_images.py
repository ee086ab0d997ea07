"""Bad and unusual image files: each gives a BadSampleError naming the file and the
problem, or is converted to the uint8 RGB [H, W, 3] the pipeline expects."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from detection.data import BadSampleError, DatasetMapper, read_image
from detection.data.images import inspect_image, read_image_with_info


def _record(path, h, w, boxes=()):
    return {"file_name": str(path), "image_id": 1, "height": h, "width": w,
            "annotations": [{"bbox": list(b), "category_id": 0, "iscrowd": 0} for b in boxes]}


def _write_bad(kind, tmp_path, corpus):
    if kind == "missing":
        return tmp_path / "absent.jpg", r"absent\.jpg: image file not found"
    path = tmp_path / f"{kind}.img"
    if kind == "zero_byte":
        path.write_bytes(b"")
        return path, r"zero_byte\.img: empty image file \(0 bytes\)"
    if kind == "not_an_image":
        path.write_text("name,x,y\nfoo,1,2\n")
        return path, r"not_an_image\.img: not an image \(unrecognised file format\)"
    if kind == "truncated_jpeg":
        data = corpus.jpeg_bytes(64, 64)
        path.write_bytes(data[: len(data) // 2])
        return path, r"truncated_jpeg\.img: corrupt or truncated JPEG data"
    if kind == "truncated_png":
        data = corpus.png_bytes(64, 64)
        path.write_bytes(data[: len(data) // 2])
        return path, r"truncated_png\.img: corrupt or truncated PNG data"
    if kind == "directory":
        path.mkdir()
        return path, r"directory\.img: is a directory"
    raise AssertionError(kind)


#: the problem kind each case is reported under (tools/check_dataset.py, docs/check_dataset.md)
KINDS = {"missing": "missing_image", "zero_byte": "empty_image_file", "not_an_image": "not_an_image",
         "truncated_jpeg": "corrupt_image", "truncated_png": "corrupt_image", "directory": "not_an_image"}


@pytest.mark.parametrize("kind", ["missing", "zero_byte", "not_an_image", "truncated_jpeg", "truncated_png", "directory"])
def test_unreadable_image_names_file_and_problem(kind, tmp_path, corpus):
    path, pattern = _write_bad(kind, tmp_path, corpus)
    with pytest.raises(BadSampleError, match=pattern) as info:
        read_image(str(path))
    assert info.value.file_name == str(path) and "\n" not in str(info.value)
    assert info.value.kind == KINDS[kind]
    error, image_info, _ = inspect_image(str(path))  # what tools/check_dataset.py records
    assert image_info is None and (error.file_name, error.kind) == (str(path), KINDS[kind])
    mapper = DatasetMapper(is_train=True, min_size=(32,), max_size=64)
    with pytest.raises(BadSampleError, match=pattern):
        mapper(_record(path, 64, 64))


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("L", [200, 200, 200]),  # grayscale
        ("LA", [200, 200, 200]),  # grayscale + alpha
        ("RGBA", [30, 20, 10]),  # alpha dropped, colour kept
        ("P", [30, 20, 10]),  # palette
        ("I;16", [100, 100, 100]),  # 16-bit grayscale: most significant byte
        ("CMYK", None),  # JPEG CMYK: converted by Pillow
    ],
)
def test_image_modes_become_uint8_rgb(mode, expected, tmp_path):
    rgb = Image.new("RGB", (12, 8), (30, 20, 10))
    if mode in ("L", "LA"):
        im = Image.new(mode, (12, 8), 200 if mode == "L" else (200, 128))
    elif mode == "RGBA":
        im = rgb.convert("RGBA")
    elif mode == "P":
        im = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    elif mode == "I;16":
        im = Image.fromarray(np.full((8, 12), 256 * 100 + 77, np.uint16))
    else:
        im = rgb.convert("CMYK")
    path = tmp_path / f"img.{'jpg' if mode == 'CMYK' else 'png'}"
    im.save(path)
    img, info = read_image_with_info(str(path))
    assert img.dtype == np.uint8 and img.shape == (8, 12, 3) and img.flags["C_CONTIGUOUS"]
    assert info.mode.startswith(mode.split(";")[0])
    if expected is not None:
        assert img[0, 0].tolist() == expected
    else:
        assert np.abs(img[0, 0].astype(int) - [30, 20, 10]).max() <= 8  # lossy JPEG


def test_16bit_rgb_png(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "rgb16.png"), np.dstack([np.full((8, 12), v * 256 + 255, np.uint16) for v in (10, 20, 30)]))
    img = read_image(str(tmp_path / "rgb16.png"))
    assert img.dtype == np.uint8 and img[0, 0].tolist() == [30, 20, 10]  # BGR on disk -> RGB


def test_bgr_format_flips_channels(tmp_path, corpus):
    arr = corpus.noise(16, 20)
    corpus.save_rgb(tmp_path / "x.png", arr)
    rgb = DatasetMapper(is_train=False, min_size=16, max_size=100)(_record(tmp_path / "x.png", 16, 20))["image"]
    bgr = DatasetMapper(is_train=False, min_size=16, max_size=100, image_format="BGR")(_record(tmp_path / "x.png", 16, 20))["image"]
    assert rgb.permute(1, 2, 0).numpy().tolist() == arr.tolist()
    assert bgr.flip(0).tolist() == rgb.tolist()


def test_exif_orientation_is_applied_and_boxes_are_in_the_displayed_frame(tmp_path, corpus):
    """Stored 20 (w) x 10 (h) with orientation 6 (rotate 90 cw to display): the reader returns
    the displayed 10 x 20 image, and a box annotated on the displayed image stays on the
    same pixels through the mapper."""
    stored = np.zeros((10, 20, 3), np.uint8)
    stored[2:5, 14:18] = 255  # white patch, rows 2-4, columns 14-17 of the stored image
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[corpus.EXIF_ORIENTATION] = 6
    path = tmp_path / "rot.png"
    im.save(path, exif=exif)
    img, info = read_image_with_info(str(path))
    assert info.exif_orientation == 6 and (info.width, info.height) == (20, 10) and info.display_hw == (20, 10)
    assert img.shape == (20, 10, 3)
    np.testing.assert_array_equal(img, np.rot90(stored, k=-1))  # 90 degrees clockwise
    ys, xs = np.nonzero(img[:, :, 0])
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # where an EXIF-aware tool sees the patch
    out = DatasetMapper(is_train=True, min_size=(20,), max_size=100, random_flip="none")(_record(path, 20, 10, [box]))
    x1, y1, x2, y2 = (int(round(v)) for v in out["instances"]["boxes"][0].tolist())
    patch = out["image"][0, y1:y2, x1:x2]
    assert patch.float().mean() > 200  # the box still covers the white patch after resize
    # annotated in the stored (unrotated) frame: the size check names the likely cause
    with pytest.raises(BadSampleError, match=r"rot\.png: decoded size 10x20 differs from the annotated 20x10 \(width and height swapped: EXIF") as info:
        read_image(str(path), expected_hw=(10, 20))
    assert info.value.kind == "size_mismatch"


def test_huge_image_refused_from_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 2000)).save(path)  # 6 Mpx of zeros: a few kB on disk
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self, *a, **k: loads.append(1))
    with pytest.raises(BadSampleError, match=r"big\.png: 3000x2000 exceeds INPUT\.MAX_IMAGE_PIXELS=1000000") as info:
        read_image(str(path), max_pixels=1_000_000)
    assert not loads and info.value.kind == "image_too_large"  # the pixels were never decoded
    with pytest.raises(BadSampleError, match="MAX_IMAGE_PIXELS") as info:  # annotated size alone is enough
        DatasetMapper(is_train=False, min_size=16, max_size=32, max_image_pixels=1_000_000)(_record(path, 2000, 3000))
    assert info.value.kind == "image_too_large"


@pytest.mark.parametrize("h, w", [(1, 1), (2, 3), (5, 1)])
def test_tiny_images_go_through_the_mapper(h, w, tmp_path, corpus):
    corpus.save_rgb(tmp_path / "tiny.png", corpus.noise(h, w))
    out = DatasetMapper(is_train=True, min_size=(32,), max_size=200)(_record(tmp_path / "tiny.png", h, w, [[0, 0, w, h]]))
    assert min(out["image"].shape[1:]) == 32
    assert out["instances"]["boxes"].shape == (1, 4) and out["instances"]["labels"].tolist() == [0]


def test_non_ascii_file_name(tmp_path, corpus):
    path = tmp_path / "café_日本.png"
    corpus.save_rgb(path, corpus.noise(6, 7))
    assert read_image(str(path)).shape == (6, 7, 3)


# ------------------------------------------------------------------ pixel values wider than 8 bits

RAMP = np.tile(np.arange(256, dtype=np.float64), (4, 1))  # every 8-bit level once per row


def _png_with_sbit(path, arr, bits):
    """A 16-bit PNG whose sBIT chunk declares ``bits`` significant bits (OpenCV writes none)."""
    import struct
    import zlib

    import cv2

    data = cv2.imencode(".png", arr)[1].tobytes()
    channels = 1 if arr.ndim == 2 else 3
    body = b"sBIT" + bytes([bits] * channels)
    chunk = struct.pack(">I", channels) + body + struct.pack(">I", zlib.crc32(body))
    end_of_ihdr = 8 + 8 + 13 + 4
    path.write_bytes(data[:end_of_ihdr] + chunk + data[end_of_ihdr:])


def _write_pixels(kind, path):
    import cv2

    if kind == "gray16_full":
        cv2.imwrite(str(path), (RAMP * 257).astype(np.uint16))
    elif kind == "rgb16_full":
        cv2.imwrite(str(path), np.dstack([(RAMP * 257).astype(np.uint16)] * 3))
    elif kind == "rgb16_tiff":
        cv2.imwrite(str(path), np.dstack([(RAMP * 257).astype(np.uint16)] * 3))
    elif kind == "gray16_12bit_declared":
        _png_with_sbit(path, (RAMP * 16).astype(np.uint16), 12)
    elif kind == "rgb16_12bit_declared":
        _png_with_sbit(path, np.dstack([(RAMP * 16).astype(np.uint16)] * 3), 12)
    elif kind == "int32_16bit_range":
        Image.fromarray((RAMP * 257).astype(np.int32)).save(path)
    elif kind == "float_0_1":
        Image.fromarray((RAMP / 255).astype(np.float32)).save(path)
    elif kind == "float_0_255":
        Image.fromarray(RAMP.astype(np.float32)).save(path)
    elif kind == "gray16_12bit":
        cv2.imwrite(str(path), (RAMP * 16).astype(np.uint16))
    elif kind == "gray16_8bit_values":
        cv2.imwrite(str(path), RAMP.astype(np.uint16))
    elif kind == "rgb16_12bit":
        cv2.imwrite(str(path), np.dstack([(RAMP * 16).astype(np.uint16)] * 3))
    elif kind == "int32_8bit_values":
        Image.fromarray(RAMP.astype(np.int32)).save(path)
    elif kind == "int32_negative":
        Image.fromarray((RAMP - 100).astype(np.int32)).save(path)
    elif kind == "float_negative":
        Image.fromarray((RAMP - 100).astype(np.float32)).save(path)
    elif kind == "float_nan":
        Image.fromarray(np.where(RAMP > 200, np.nan, RAMP).astype(np.float32)).save(path)
    elif kind == "float_rgb_tiff":
        cv2.imwrite(str(path), np.dstack([RAMP] * 3).astype(np.float32) / 255)
    else:
        raise AssertionError(kind)


SCALED = {  # file -> the pixel type check_dataset lists; the ramp comes out as 0..255 again
    "gray16_full": ("png", "I;16"),
    "rgb16_full": ("png", "RGB 16-bit"),  # Pillow alone would drop the low byte: decoded at 16 bits
    "rgb16_tiff": ("tif", "RGB 16-bit"),
    "gray16_12bit_declared": ("png", "I;16"),  # sBIT 12: value >> 4
    "rgb16_12bit_declared": ("png", "RGB 16-bit"),
    "int32_16bit_range": ("tif", "I 32-bit"),
    "float_0_1": ("tif", "F 32-bit"),
    "float_0_255": ("tif", "F 32-bit"),
}
REFUSED = {  # file -> the reason (after the file name); kind unsupported_pixel_values
    "gray16_12bit": r"16-bit image whose brightest value is 4080 \(12-bit data\?\): litedet keeps the top 8 of 16 bits "
                    r"\(value >> 8\), which would leave it nearly black; convert it to 8-bit first",
    "gray16_8bit_values": r"16-bit image whose brightest value is 255 \(8-bit values stored as 16-bit\?\)",
    "rgb16_12bit": r"16-bit image whose brightest value is 4080 \(12-bit data\?\)",
    "int32_8bit_values": r"32-bit image whose brightest value is 255 \(8-bit values stored as 32-bit\?\)",
    "int32_negative": r"32-bit integer image with values in -100\.\.155, outside 0\.\.65535",
    "float_negative": r"float image with values in -100\.\.155, outside 0\.\.255",
    "float_nan": r"float image with NaN/inf pixels",
    "float_rgb_tiff": r"TIFF that Pillow cannot decode \(multi-channel float or 32-bit integer samples\?\)",
}


@pytest.mark.parametrize("kind", sorted(SCALED))
def test_wide_pixel_values_are_scaled_by_the_documented_rule(kind, tmp_path):
    ext, pixel_type = SCALED[kind]
    path = tmp_path / f"{kind}.{ext}"
    _write_pixels(kind, path)
    img, info = read_image_with_info(str(path))
    assert img.dtype == np.uint8 and img.shape == (4, 256, 3) and info.pixel_type == pixel_type
    np.testing.assert_array_equal(img[0, :, 0], np.arange(256))
    assert (img == img[:, :, :1]).all()  # gray -> equal channels; the RGB ramps are equal too


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_degenerate_pixel_values_are_refused_naming_the_file(kind, tmp_path, corpus):
    ext = "png" if kind.startswith(("gray16", "rgb16")) else "tif"
    path = tmp_path / f"{kind}.{ext}"
    _write_pixels(kind, path)
    with pytest.raises(BadSampleError, match=rf"{kind}\.{ext}: {REFUSED[kind]}") as info:
        read_image(str(path))
    assert info.value.kind == "unsupported_pixel_values" and "\n" not in str(info.value)
    mapper = DatasetMapper(is_train=True, min_size=(8,), max_size=300)  # training: the same error
    with pytest.raises(BadSampleError, match=rf"{kind}\.{ext}: "):
        mapper(_record(path, 4, 256))


def test_exif_orientation_on_16_bit_images(tmp_path):
    import cv2

    stored = np.zeros((10, 20), np.uint16)
    stored[2:5, 14:18] = 65535
    cv2.imwrite(str(tmp_path / "plain.png"), stored)
    im = Image.open(tmp_path / "plain.png")
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.png", exif=exif)
    img, info = read_image_with_info(str(tmp_path / "rot.png"))
    assert info.exif_orientation == 6 and img.shape == (20, 10, 3)
    np.testing.assert_array_equal(img[:, :, 0], np.rot90(stored >> 8, k=-1))


# ------------------------------------------------------------------ files that are not regular


def _special_file(kind, tmp_path):
    import os
    import socket

    path = tmp_path / f"{kind}.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "dev_zero_link":
        os.symlink("/dev/zero", path)
    elif kind == "symlink_loop":
        os.symlink(path, path)
    elif kind == "huge_sparse":
        with open(path, "wb") as f:
            f.truncate(3 << 30)  # 3 GiB, nothing on disk
    return path


SPECIAL = {
    "fifo": ("not_a_regular_file", r"is a FIFO \(named pipe\), not a regular image file"),
    "socket": ("not_a_regular_file", r"is a socket, not a regular image file"),
    "dev_zero_link": ("not_a_regular_file", r"is a character device, not a regular image file"),
    "symlink_loop": ("unreadable_image", r"cannot read image file \(Too many levels of symbolic links\)"),
    "huge_sparse": ("image_too_large", r"image file of 3\.0 GiB is larger than the 256\.0 MiB litedet reads"),
}


@pytest.mark.parametrize("kind", sorted(SPECIAL))
def test_non_regular_and_huge_files_are_refused_without_reading(kind, tmp_path):
    """Stat first, never block (a FIFO with no writer would hang a plain open)."""
    import signal

    path = _special_file(kind, tmp_path)
    expected_kind, pattern = SPECIAL[kind]

    def hung(*_):
        raise TimeoutError(f"reading {kind} did not return")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        with pytest.raises(BadSampleError, match=rf"{kind}\.png: {pattern}") as info:
            read_image(str(path), max_pixels=1_000_000)
        error, image_info, _ = inspect_image(str(path), max_pixels=1_000_000)  # check_dataset's call
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert info.value.kind == expected_kind and image_info is None and error.kind == expected_kind


def test_backslash_paths_get_a_hint(tmp_path):
    with pytest.raises(BadSampleError, match=r"sub\\0\.png: image file not found \(a backslash in the path: a Windows path\? use '/'\)"):
        read_image(str(tmp_path / "sub\\0.png"))


def test_demo_and_export_decode_like_training(tmp_path, caplog):
    """One decoder: the demo's frames are read_image's pixels in BGR order, and a refused file
    is skipped with training's message."""
    import cv2

    from detection.cli.demo import iter_frames

    _write_pixels("rgb16_full", tmp_path / "ok.png")
    _write_pixels("gray16_12bit", tmp_path / "dark.png")
    with caplog.at_level(logging.WARNING, logger="detection.cli.demo"):
        frames = list(iter_frames([str(tmp_path / "ok.png"), str(tmp_path / "dark.png")]))
    assert [p for p, _ in frames] == [str(tmp_path / "ok.png")]
    np.testing.assert_array_equal(frames[0][1], cv2.cvtColor(read_image(str(tmp_path / "ok.png")), cv2.COLOR_RGB2BGR))
    assert "dark.png: 16-bit image whose brightest value is 4080" in caplog.text and "skipped" in caplog.text
