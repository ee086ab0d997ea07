"""Suite-wide settings.

pytest-xdist runs one worker per core; letting each worker's torch also start one
thread per core oversubscribes the machine and makes every test several times slower.
"""
import itertools
import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_by_path(path: str, name: str):
    """Import a file as module ``name``: the suite runs with --import-mode=importlib and
    neither tests/ nor benchmarks/ is a package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def corpus():
    """tests/bad_input_corpus.py: generators for the bad-input tests."""
    return _load_by_path(os.path.join(ROOT, "tests", "bad_input_corpus.py"), "litedet_bad_input_corpus")


def _script_loader(folder: str):
    """``load(name)``: a freshly executed copy of ``<folder>/<name>.py`` (a new module each call)."""
    counter = itertools.count()

    def load(name: str):
        return _load_by_path(os.path.join(ROOT, folder, f"{name}.py"), f"litedet_{folder}_{name}_{next(counter)}")

    return load


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("speed_inference")``: benchmarks/speed_inference.py as a module."""
    return _script_loader("benchmarks")
