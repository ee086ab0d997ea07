"""Suite-wide settings.

pytest-xdist runs one worker per core; letting each worker's torch also start one
thread per core oversubscribes the machine and makes every test several times slower.
"""
import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
