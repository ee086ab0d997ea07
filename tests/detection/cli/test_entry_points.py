"""The console entry points of setup.cfg and the tools/*.py commands run the same
``detection.cli.<tool>.main``; every target imports and answers ``--help``."""
from __future__ import annotations

import ast
import configparser
import glob
import importlib
import os
from typing import Dict, List

import pytest

from helpers import REPO_ROOT as ROOT

WRAPPERS = sorted(glob.glob(os.path.join(ROOT, "tools", "*.py"))) + [os.path.join(ROOT, "datasets", "prepare.py")]
#: Tools without an installed command: gen_configs rewrites the checkout's configs/Misc.
WITHOUT_ENTRY_POINT = {"detection.cli.gen_configs:main"}


def console_scripts() -> Dict[str, str]:
    """``{command: "module:function"}`` from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")
    lines = [line.strip() for line in cfg["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    return dict((part.strip() for part in line.split("=", 1)) for line in lines)


def wrapper_target(path: str) -> str:
    """``"module:main"`` that a tools/*.py wrapper imports and passes to ``sys.exit``
    under ``if __name__ == "__main__"``; fails on anything more than that."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    imports: List[str] = []
    calls: List[str] = []
    body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
    for node in body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("detection.cli."):
            imports += [f"{node.module}:{alias.name}" for alias in node.names]
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            assert test == "__name__ == '__main__'", f"{path}: unexpected block `if {test}`"
            calls += [ast.unparse(stmt) for stmt in node.body]
        elif not (isinstance(node, ast.Import) and [a.name for a in node.names] == ["sys"]):
            pytest.fail(f"{path}: a wrapper holds no logic, found {ast.unparse(node)[:80]!r}")
    assert len(imports) == 1, f"{path}: imports {imports}, expected one detection.cli function"
    name = imports[0].split(":")[1]
    assert calls == [f"sys.exit({name}())"], f"{path}: runs {calls}"
    return imports[0]


def load(target: str):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def test_every_entry_point_is_a_litedet_command_with_a_wrapper():
    scripts = console_scripts()
    assert scripts and all(name.startswith("litedet-") for name in scripts)
    wrapped = {wrapper_target(path) for path in WRAPPERS}
    assert set(scripts.values()) == wrapped - WITHOUT_ENTRY_POINT
    assert len(set(scripts.values())) == len(scripts), "two commands run the same function"
    assert "litedet-train" in scripts and "litedet-demo" in scripts


@pytest.mark.parametrize("path", WRAPPERS, ids=lambda p: os.path.relpath(p, ROOT))
def test_wrapper_calls_the_package_function(path):
    target = wrapper_target(path)
    assert callable(load(target))
    module = target.split(":")[0]
    assert os.path.isfile(os.path.join(ROOT, *module.split(".")) + ".py")  # this checkout's module


@pytest.mark.parametrize("target", sorted(set(console_scripts().values()) | WITHOUT_ENTRY_POINT))
def test_target_answers_help(target, capsys):
    main = load(target)
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")
    assert callable(getattr(importlib.import_module(target.split(":")[0]), "build_parser"))
