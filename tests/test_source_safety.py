"""Scan litedet's own Python source for ways to execute code from data files:
``torch.load`` without ``weights_only=True``, unsafe YAML loading, ``eval``/``exec``,
unpickling files. A new call of any of these fails here with file:line."""
from __future__ import annotations

import ast
import os
from typing import Iterator, List, Tuple

from helpers import REPO_ROOT as ROOT

SCANNED = ("backbones", "detection", "tools", "benchmarks", "datasets", "tests")
#: (file, call) pairs reviewed as safe: pickle of the loader's own in-memory records; the
#: test proving that fvcore's allow_unsafe switch is ignored.
ALLOWED = {("detection/data/common.py", "pickle.loads"), ("tests/detection/config/test_config.py", "cfg.merge_from_file")}


def _python_files() -> Iterator[str]:
    for top in SCANNED:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
            for name in filenames:
                if name.endswith(".py"):
                    yield os.path.join(dirpath, name)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _violations(path: str) -> List[Tuple[int, str]]:
    rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if (rel, name) in ALLOWED:
            continue
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        if name.endswith("torch.load"):
            wo = kwargs.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                found.append((node.lineno, "torch.load without weights_only=True"))
        elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
            found.append((node.lineno, f"{name} (use yaml.safe_load)"))
        elif name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            found.append((node.lineno, f"{name}()"))
        elif name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "marshal.load", "marshal.loads"):
            found.append((node.lineno, f"{name} on data"))
        elif name.endswith("merge_from_file") or name.endswith("load_yaml_with_base"):
            unsafe = kwargs.get("allow_unsafe")
            if isinstance(unsafe, ast.Constant) and unsafe.value:
                found.append((node.lineno, f"{name}(allow_unsafe=True)"))
        elif name == "torch.jit.load" or name.endswith("np.load") or name == "numpy.load":
            ap = kwargs.get("allow_pickle")
            if name != "torch.jit.load" and isinstance(ap, ast.Constant) and ap.value:
                found.append((node.lineno, f"{name}(allow_pickle=True)"))
    return [(line, f"{rel}:{line}: {what}") for line, what in found]


def test_no_unsafe_deserialisation_in_the_source():
    problems = [msg for path in _python_files() for _, msg in _violations(path)]
    assert not problems, "unsafe calls found:\n" + "\n".join(problems)


def test_the_scan_catches_what_it_claims(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch, yaml, pickle\n"
        "torch.load('a')\n"
        "torch.load('a', weights_only=False)\n"
        "yaml.load(open('x'))\n"
        "eval('1')\n"
        "pickle.load(open('p', 'rb'))\n"
        "cfg.merge_from_file('c.yaml', allow_unsafe=True)\n"
        "torch.load('ok', map_location='cpu', weights_only=True)\n"
    )
    found = _violations(str(bad))
    assert [line for line, _ in found] == [2, 3, 4, 5, 6, 7]
