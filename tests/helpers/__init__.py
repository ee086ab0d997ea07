"""Code shared by the tests, importable as ``helpers`` (setup.cfg's pytest
``pythonpath = tests``; a child process gets it from `subprocess_env`).

It lives beside the tests rather than in the installed package: nothing here is litedet's
API. Here: the checkout's paths and configs, scripts loaded as modules, child-process
environments. Modules: `bad_input` (corrupt images and datasets, generated), `fakes` (tiny
stand-ins for a detector, its loader and its mapper), `models` (norm statistics that make
equivalence tests meaningful, a backbone's stage-output check), `records` (dataset records
and detections by hand), `weights` (checkpoints of other layouts, the authors' networks
restated), `detectors` (a small randomly initialised detector).
"""
from __future__ import annotations

import glob
import importlib.util
import itertools
import os
from types import ModuleType
from typing import Any, Dict, List

__all__ = [
    "REPO_ROOT", "TESTS_ROOT", "CONFIGS_DIR", "QUICKSTART_CONFIG", "config_path", "shipped_configs", "with_solver",
    "load_script", "subprocess_env",
]

#: The checkout under test (the folder holding tests/), and its tests/ and configs/ folders.
TESTS_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(TESTS_ROOT)
CONFIGS_DIR = os.path.join(REPO_ROOT, "configs")
#: The quickstart detector config the tool tests shrink further.
QUICKSTART_CONFIG = os.path.join(CONFIGS_DIR, "quickstart", "lighthead_shufflenet_v2_shapes.yaml")

_script_counter = itertools.count()


def config_path(*parts: str) -> str:
    """A shipped config: ``config_path("ImageNet", "shufflenet_v2_0.5x.yaml")``."""
    return os.path.join(CONFIGS_DIR, *parts)


def shipped_configs(pattern: str, bases: bool = True) -> List[str]:
    """Sorted paths of the shipped configs matching ``pattern`` under configs/ (e.g.
    ``"ImageNet/*.yaml"``); ``bases=False`` leaves out the ``Base-*.yaml`` files."""
    paths = sorted(glob.glob(os.path.join(CONFIGS_DIR, pattern)))
    return paths if bases else [p for p in paths if not os.path.basename(p).startswith("Base-")]


def with_solver(cfg: Any, **solver: Any) -> Any:
    """``cfg`` with the given ``SOLVER`` keys set (``with_solver(get_cfg(), BASE_LR=0.1)``)."""
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def load_script(relpath: str) -> ModuleType:
    """A freshly executed copy of the script at ``relpath`` (e.g. ``benchmarks/memory.py``),
    a new module on each call: scripts are not in a package, and the suite imports with
    ``--import-mode=importlib``."""
    name = os.path.splitext(relpath.replace("/", "_"))[0]
    spec = importlib.util.spec_from_file_location(f"litedet_{name}_{next(_script_counter)}", os.path.join(REPO_ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subprocess_env(**overrides: str) -> Dict[str, str]:
    """``os.environ`` for a child Python process, with ``overrides``: this checkout and
    the helpers first on PYTHONPATH, so that the child imports this checkout's code (not
    another editable install of litedet) and can import ``helpers``."""
    path = [REPO_ROOT, TESTS_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path), **overrides)
