"""Suite-wide settings and fixtures; the helpers themselves are in tests/helpers
(importable as ``helpers``).

pytest-xdist runs one worker per core; letting each worker's torch also start one
thread per core oversubscribes the machine and makes every test several times slower.
"""
import os

import pytest
import torch

from helpers import bad_input, load_script
from helpers.models import randomize_norms as _randomize_norms

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_torch_state():
    """Every test starts from seed 0 and leaves autograd and torch's thread count as it found
    them: a tool's ``main`` run in-process (benchmark, export, real_data) sets them for the rest
    of its process, and two threads in each of two xdist workers on two cores make every later
    test of the worker many times slower."""
    torch.manual_seed(0)
    grad_enabled = torch.is_grad_enabled()
    threads = torch.get_num_threads()
    yield
    torch.set_grad_enabled(grad_enabled)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def corpus():
    """`helpers.bad_input`: generators for the bad-input tests."""
    return bad_input


@pytest.fixture(scope="session")
def randomize_norms():
    """`helpers.models.randomize_norms`."""
    return _randomize_norms


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("speed_inference")``: benchmarks/speed_inference.py as a fresh module."""
    return lambda name: load_script(f"benchmarks/{name}.py")
