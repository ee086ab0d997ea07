"""detectron2 stays optional: litedet never imports it on its own, and detection.d2 says
what to install when it is missing. Runs with or without detectron2 installed."""
from __future__ import annotations

import os
import subprocess
import sys

from helpers import REPO_ROOT as ROOT


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_litedet_packages_do_not_import_detectron2():
    # every module of backbones/ and detection/ except detection.d2 itself
    # (pkgutil.walk_packages would import detection.d2 itself to look inside it)
    code = """
import importlib, pkgutil, sys
names = []
def walk(name):
    module = importlib.import_module(name)
    names.append(name)
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if f"{name}.{info.name}" != "detection.d2":
            walk(f"{name}.{info.name}")
walk("backbones")
walk("detection")
assert len(names) > 20, names
leaked = sorted(m for m in sys.modules if m == "detectron2" or m.startswith("detectron2."))
print("LEAKED", leaked)
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert "LEAKED []" in result.stdout, result.stdout


def test_d2_without_detectron2_names_what_to_install():
    # sys.modules[name] = None makes `import name` raise ImportError, as if not installed
    code = """
import sys
sys.modules["detectron2"] = None
try:
    import detection.d2
except ImportError as e:
    print("MESSAGE", e)
else:
    raise SystemExit("import detection.d2 succeeded without detectron2")
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr + result.stdout
    message = result.stdout.split("MESSAGE", 1)[1]
    assert "detectron2" in message and "pip install --no-build-isolation" in message
    assert "docs/detectron2.md" in message
