"""Export / benchmark input size (default: the test-time resize of a 480x640 photo) and the
runtimes' thread counts."""
import pytest

from detection.config import get_cfg
from detection.deploy import FORMATS, default_input_size, input_size, runtime_threads


def cfg_with(min_size, max_size):
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = min_size
    cfg.INPUT.MAX_SIZE_TEST = max_size
    return cfg


@pytest.mark.parametrize("min_size,max_size,expected", [
    (800, 1200, (800, 1088)),  # 800x1067, long side under the cap
    (256, 400, (256, 352)),    # the quickstart configs: 256x341
    (600, 1000, (608, 800)),
    (800, 1000, (768, 1024)),  # the cap scales both sides: 750x1000, not 800x1000
    (320, 320, (256, 320)),    # square cap: 240x320
    (800, 0, (800, 1088)),     # MAX_SIZE_TEST 0 = no cap
    (0, 1333, (480, 640)),     # MIN_SIZE_TEST 0 = no resize
])
def test_default_input_size_follows_the_test_time_resize(min_size, max_size, expected):
    assert default_input_size(cfg_with(min_size, max_size), 32) == expected
    h, w = default_input_size(cfg_with(min_size, max_size), 1)
    assert abs(h / w - 0.75) < 0.01  # the photo's aspect ratio is kept


@pytest.mark.parametrize("part,size,expected", [
    ("backbone", "", (256, 352)),        # the config's test size, already a multiple of 32
    ("dense", "64x96", (64, 96)),
    ("detector", "70x97", (70, 97)),     # the whole detector pads inside the graph
    ("backbone", "70x96", "the backbone part needs sides divisible by 32, got 70x96"),
    ("dense", "64xabc", "must be HxW"),
])
def test_input_size_given_or_from_config_and_divisible_for_the_dense_parts(part, size, expected):
    cfg = cfg_with(256, 400)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            input_size(cfg, part, 32, size)
    else:
        assert input_size(cfg, part, 32, size) == expected


def test_runtime_threads_names_each_runtime_default():
    import os

    import torch

    assert [runtime_threads(fmt, 3) for fmt in FORMATS] == [3, 3, 3]
    assert runtime_threads("ncnn") == 1 and runtime_threads("onnx") == (os.cpu_count() or 1)
    assert runtime_threads("torchscript") == torch.get_num_threads()
