"""benchmarks/quickstart_map.py reads the quickstart's summary from the folder the quickstart
wrote it to (``--output-dir`` or a fresh one) and judges it against the target. The quickstart
itself (minutes of training) is replaced by a stand-in that writes a summary."""
import json
import os
import subprocess
import tempfile
from types import SimpleNamespace

import pytest


def summary(map50: float) -> dict:
    return {
        "config": "configs/quickstart/lighthead_shufflenet_v2_shapes.yaml",
        "results": {"litedet_shapes_val": {"bbox": {"AP": 51.5, "AP50": 68.1, "AP75": 60.9}},
                    "litedet_shapes_voc_val": {"bbox": {"AP50": map50, "AP50_07": map50 - 1.0}}},
        "train_seconds": 462.0, "total_seconds": 474.0,
        "latency": [{"threads": 1, "input_hw": [256, 320], "median_ms": 25.4}],
    }


@pytest.fixture
def fake_quickstart(monkeypatch):
    """Stands in for tools/quickstart.py: records each command in ``calls`` and writes a
    summary with VOC mAP@0.5 ``map50`` (set it before calling main)."""
    fake = SimpleNamespace(calls=[], map50=68.3)
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if not any(str(c).endswith("quickstart.py") for c in cmd):  # e.g. platform's own probes
            return real_run(cmd, *args, **kwargs)
        out = cmd[cmd.index("--output-dir") + 1]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "quickstart_summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary(fake.map50), f)
        fake.calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", run)
    return fake


@pytest.mark.parametrize("explicit_dir", [True, False])
def test_reads_the_summary_where_the_quickstart_wrote_it(load_benchmark, fake_quickstart, tmp_path, capsys, monkeypatch,
                                                          explicit_dir):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the default fresh folder goes there
    bench = load_benchmark("quickstart_map")
    argv = ["--output-dir", str(tmp_path / "qs")] if explicit_dir else []
    assert bench.main([*argv, "--max-iter", "5"]) == 0
    cmd = fake_quickstart.calls[0]
    assert cmd.count("--output-dir") == 1 and cmd[-2:] == ["--max-iter", "5"]
    written_to = cmd[cmd.index("--output-dir") + 1]
    if explicit_dir:
        assert written_to == str(tmp_path / "qs")
    else:
        assert os.path.dirname(written_to) == str(tmp_path) and os.path.basename(written_to).startswith("litedet_quickstart_")
    out = capsys.readouterr().out
    assert "mAP@0.5 (VOC area): ours 0.683, target 0.60, ratio 1.14" in out
    assert "mAP@0.5 (VOC07 11-point): 0.673" in out and "training wall time: ours 7.7 min" in out


def test_below_target_exits_3(load_benchmark, fake_quickstart, tmp_path, capsys):
    fake_quickstart.map50 = 41.0
    bench = load_benchmark("quickstart_map")
    assert bench.main(["--output-dir", str(tmp_path)]) == 3
    assert "ours 0.410, target 0.60" in capsys.readouterr().out
