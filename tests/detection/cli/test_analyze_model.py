"""tools/analyze_model.py: one variant as JSON, a close match for an unknown name, the list
of a family (the report itself: tests/backbones/test_analysis.py)."""
import json
from types import SimpleNamespace
from typing import List

import pytest

from backbones.analysis import analyze_variant
from detection.cli import analyze_model


def _cli(capsys: pytest.CaptureFixture, *args: str) -> SimpleNamespace:
    """tools/analyze_model.py's ``main`` in this process (a fresh interpreter would spend
    seconds importing torch; the wrapper script itself: tests/detection/cli/test_entry_points.py)."""
    returncode = analyze_model.main(list(args))  # the thread count it sets: tests/conftest.py restores it
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=returncode, stdout=captured.out, stderr=captured.err)


def test_cli_json_one_name(capsys: pytest.CaptureFixture) -> None:
    result = _cli(capsys, "shufflenet_v2_0.5x", "--input", "64x96", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data["name"] == "shufflenet_v2_0.5x" and data["input_size"] == [64, 96]
    assert set(data) == set(analyze_variant("shufflenet_v2_0.5x", input_size=(64, 96)).to_dict())


def test_cli_unknown_name_exits_2_with_close_match(capsys: pytest.CaptureFixture) -> None:
    result = _cli(capsys, "shufflenet_v2_1.0", "--input", "32")
    assert result.returncode == 2
    assert "shufflenet_v2_1.0x" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_list(capsys: pytest.CaptureFixture) -> None:
    result = _cli(capsys, "--list", "--family", "shufflenet_v2")
    assert result.returncode == 0, result.stderr
    names: List[str] = result.stdout.split()
    assert "shufflenet_v2_1.0x" in names
    assert all(n.startswith("shufflenet_v2") for n in names)
