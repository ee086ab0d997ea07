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


@pytest.fixture(autouse=True)
def _restore_grad_mode():
    """Tools run in-process (export, benchmark) turn autograd off for their whole process;
    the next test on the same xdist worker must not inherit that."""
    enabled = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(enabled)


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


def _randomize_norms(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    from torchvision.ops import FrozenBatchNorm2d

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


@pytest.fixture(scope="session")
def randomize_norms():
    """``randomize_norms(model)``: non-trivial statistics and affine terms in every
    BatchNorm2d / FrozenBatchNorm2d of ``model`` (returned), so that folding them into the
    convs has something to get wrong."""
    return _randomize_norms


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("speed_inference")``: benchmarks/speed_inference.py as a module."""
    return _script_loader("benchmarks")
