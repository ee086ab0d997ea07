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


@pytest.fixture(scope="session")
def corpus():
    """tests/bad_input_corpus.py: generators for the bad-input tests (loaded by path,
    since the suite runs with --import-mode=importlib and tests/ is not a package)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bad_input_corpus.py")
    spec = importlib.util.spec_from_file_location("litedet_bad_input_corpus", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
