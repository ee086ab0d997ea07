"""Default export / benchmark input size: the test-time resize of a 480x640 photo."""
import pytest

from detection.config import get_cfg
from detection.deploy import default_input_size


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
