"""DatasetMapper: reading, flip/resize geometry (hand-computed), filtering, test mode."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from detection.config import get_cfg
from detection.data import BadSampleError, DatasetMapper, ResizeShortestEdge, read_image


def _png(tmp_path, name, rgb):
    path = str(tmp_path / name)
    assert cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _record(path, h, w, anns):
    return {"file_name": path, "image_id": 1, "height": h, "width": w, "annotations": anns}


def _ann(box, cat=0, crowd=0, difficult=0):
    return {"bbox": list(box), "category_id": cat, "iscrowd": crowd, "difficult": difficult}


@pytest.fixture
def noise_image(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(100, 150, 3), dtype=np.uint8)
    return _png(tmp_path, "noise.png", rgb), rgb


def test_horizontal_flip_moves_boxes_exactly(noise_image):
    path, rgb = noise_image
    mapper = DatasetMapper(is_train=True, min_size=(100,), max_size=1000, random_flip="horizontal", flip_prob=1.0)
    out = mapper(_record(path, 100, 150, [_ann((10, 20, 50, 60), 2), _ann((0, 0, 150, 100), 1)]))
    # x' = W - x: [10, 20, 50, 60] -> [100, 20, 140, 60]
    expected = torch.tensor([[100.0, 20.0, 140.0, 60.0], [0.0, 0.0, 150.0, 100.0]])
    torch.testing.assert_close(out["instances"]["boxes"], expected, atol=1e-3, rtol=0)
    assert out["instances"]["labels"].tolist() == [2, 1]
    assert out["instances"]["boxes"].dtype == torch.float32 and out["instances"]["labels"].dtype == torch.int64
    # the pixels flip with the boxes (lossless PNG: exact)
    assert torch.equal(out["image"], torch.from_numpy(rgb[:, ::-1].transpose(2, 0, 1).copy()))


def test_vertical_flip_and_no_flip(noise_image):
    path, rgb = noise_image
    rec = _record(path, 100, 150, [_ann((10, 20, 50, 60))])
    out = DatasetMapper(is_train=True, min_size=(100,), max_size=1000, random_flip="vertical", flip_prob=1.0)(rec)
    torch.testing.assert_close(out["instances"]["boxes"], torch.tensor([[10.0, 40.0, 50.0, 80.0]]), atol=1e-3, rtol=0)
    out = DatasetMapper(is_train=True, min_size=(100,), max_size=1000, random_flip="none")(rec)
    torch.testing.assert_close(out["instances"]["boxes"], torch.tensor([[10.0, 20.0, 50.0, 60.0]]), atol=1e-3, rtol=0)
    assert torch.equal(out["image"], torch.from_numpy(rgb.transpose(2, 0, 1).copy()))


def test_resize_scales_boxes_and_caps_long_side(noise_image):
    path, _ = noise_image
    rec = _record(path, 100, 150, [_ann((10, 20, 50, 60))])
    out = DatasetMapper(is_train=True, min_size=(200,), max_size=1000, random_flip="none")(rec)
    assert tuple(out["image"].shape) == (3, 200, 300)
    torch.testing.assert_close(out["instances"]["boxes"], torch.tensor([[20.0, 40.0, 100.0, 120.0]]), atol=1e-3, rtol=0)
    assert (out["height"], out["width"]) == (100, 150)  # original size kept for the evaluator
    # short side 200 would make the long side 300 > 250: scaled to 250 x 166.67 -> 167 x 250
    out = DatasetMapper(is_train=True, min_size=(200,), max_size=250, random_flip="none")(rec)
    assert tuple(out["image"].shape) == (3, 167, 250)
    sx, sy = 250 / 150, 167 / 100
    torch.testing.assert_close(
        out["instances"]["boxes"], torch.tensor([[10 * sx, 20 * sy, 50 * sx, 60 * sy]]), atol=1e-3, rtol=0
    )


def test_crowd_and_difficult_removed_and_empty_image(noise_image):
    path, _ = noise_image
    mapper = DatasetMapper(is_train=True, min_size=(100,), max_size=1000)
    out = mapper(_record(path, 100, 150, [_ann((1, 1, 9, 9), crowd=1), _ann((2, 2, 8, 8), difficult=1), _ann((5, 5, 30, 30), 3)]))
    assert out["instances"]["labels"].tolist() == [3]
    for anns in ([], [_ann((1, 1, 9, 9), crowd=1)]):
        out = mapper(_record(path, 100, 150, anns))
        assert tuple(out["instances"]["boxes"].shape) == (0, 4)
        assert tuple(out["instances"]["labels"].shape) == (0,)


def test_test_mode_resizes_without_instances(noise_image):
    path, _ = noise_image
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 50
    cfg.INPUT.MAX_SIZE_TEST = 1000
    out = DatasetMapper(cfg, is_train=False)(_record(path, 100, 150, [_ann((1, 1, 9, 9))]))
    assert tuple(out["image"].shape) == (3, 50, 75) and out["image"].dtype == torch.uint8
    assert "instances" not in out
    assert (out["height"], out["width"], out["image_id"], out["file_name"]) == (100, 150, 1, path)
    cfg.INPUT.MIN_SIZE_TEST = 0  # detectron2 convention: no resizing at test time
    out = DatasetMapper(cfg, is_train=False)(_record(path, 100, 150, []))
    assert tuple(out["image"].shape) == (3, 100, 150)


def test_config_construction_uses_input_keys(noise_image):
    path, _ = noise_image
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (60,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.AUG.COLOR_JITTER = 0.3
    mapper = DatasetMapper(cfg, is_train=True)
    out = mapper(_record(path, 100, 150, [_ann((10, 20, 50, 60))]))
    assert tuple(out["image"].shape) == (3, 60, 90)
    torch.testing.assert_close(out["instances"]["boxes"], torch.tensor([[6.0, 12.0, 30.0, 36.0]]), atol=1e-3, rtol=0)


def test_seeded_mapper_is_reproducible(noise_image):
    path, _ = noise_image
    rec = _record(path, 100, 150, [_ann((10, 20, 50, 60))])
    kwargs = dict(is_train=True, min_size=(60, 80, 100), max_size=1000, color_jitter=0.4, seed=7)
    a = [DatasetMapper(**kwargs)(rec), DatasetMapper(**kwargs)(rec)]
    assert torch.equal(a[0]["image"], a[1]["image"])
    assert torch.equal(a[0]["instances"]["boxes"], a[1]["instances"]["boxes"])


def test_resize_range_sampling_stays_in_range():
    t = ResizeShortestEdge((40, 60), max_size=0, sample_style="range")
    t.set_random_seed(0)
    img = np.zeros((20, 30, 3), np.uint8)
    sizes = {t(image=img)["image"].shape[0] for _ in range(30)}
    assert sizes and min(sizes) >= 40 and max(sizes) <= 60 and len(sizes) > 1


@pytest.mark.parametrize("kind", ["gray", "rgba", "uint16"])
def test_image_formats_become_uint8_rgb(tmp_path, kind):
    path = str(tmp_path / f"{kind}.png")
    if kind == "gray":
        cv2.imwrite(path, np.full((8, 12), 200, np.uint8))
        expected = [200, 200, 200]
    elif kind == "rgba":  # OpenCV writes BGRA
        cv2.imwrite(path, np.dstack([np.full((8, 12), v, np.uint8) for v in (10, 20, 30, 255)]))
        expected = [30, 20, 10]
    else:
        cv2.imwrite(path, np.full((8, 12, 3), 256 * 100, np.uint16))
        expected = [100, 100, 100]
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (8, 12, 3)
    assert img[0, 0].tolist() == expected


def test_bad_images_raise_naming_the_file(tmp_path, noise_image):
    path, _ = noise_image
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image")
    mapper = DatasetMapper(is_train=True, min_size=(100,), max_size=1000)
    with pytest.raises(BadSampleError, match="junk.jpg"):
        mapper(_record(str(junk), 10, 10, []))
    with pytest.raises(BadSampleError, match="absent.jpg.*not found"):
        mapper(_record(str(tmp_path / "absent.jpg"), 10, 10, []))
    with pytest.raises(BadSampleError, match="swapped"):
        mapper(_record(path, 150, 100, []))
    with pytest.raises(BadSampleError, match="MAX_IMAGE_PIXELS"):
        DatasetMapper(is_train=False, min_size=100, max_size=1000, max_image_pixels=1000)(_record(path, 100, 150, []))
