"""Timing statistics, the machine record, result files, accuracy lookup, the chart."""
import csv
import json
import re

import pytest

from detection.deploy.benchmark import (
    PRESETS, append_results, machine_info, plot_speed_accuracy, read_accuracy, summarize, time_callable,
)


def test_summarize_statistics():
    s = summarize([0.010, 0.020, 0.030, 0.040, 0.050], batch=4)
    assert s["median_ms"] == pytest.approx(30.0) and s["iters"] == 5
    assert s["p10_ms"] == pytest.approx(14.0) and s["p90_ms"] == pytest.approx(46.0)
    assert s["images_per_s"] == pytest.approx(4 / 0.030)


def test_time_callable_counts_warmup_and_iterations():
    calls, synced = [], []
    times = time_callable(lambda: calls.append(1), warmup=3, iters=4, synchronize=lambda: synced.append(1))
    assert len(times) == 4 and len(calls) == 7 and len(synced) == 5 and min(times) >= 0
    with pytest.raises(ValueError):
        time_callable(lambda: None, 0, 0)


def test_machine_info_records_hardware_and_versions():
    info = machine_info("cpu", threads=1)
    assert info["cpu_cores"] >= 1 and info["threads"] == 1 and info["cpu_model"]
    assert info["torch_version"] and "onnxruntime_version" in info and "ncnn_version" in info
    assert info["gpu"] is None


def test_append_results_json_and_csv(tmp_path):
    j, c = tmp_path / "r.json", tmp_path / "r.csv"
    append_results({"name": "a", "median_ms": 1.5}, str(j), str(c))
    append_results({"name": "b", "median_ms": 2.5, "accuracy": 30.0}, str(j), str(c))
    assert [r["name"] for r in json.loads(j.read_text())] == ["a", "b"]
    rows = list(csv.DictReader(c.open()))
    assert [r["name"] for r in rows] == ["a", "b"] and rows[0]["accuracy"] == "" and rows[1]["accuracy"] == "30.0"


def test_read_accuracy_from_metrics_final(tmp_path):
    (tmp_path / "metrics_final.json").write_text(json.dumps(
        {"results": {"val": {"bbox": {"AP": 12.5}}, "voc": {"bbox": {"AP50": 40.0}}}}))
    assert read_accuracy(str(tmp_path)) == 12.5
    assert read_accuracy(str(tmp_path / "metrics_final.json"), "voc/bbox/AP50") == 40.0
    with pytest.raises(ValueError, match="AP75"):
        read_accuracy(str(tmp_path), "bbox/AP75")


def test_speed_accuracy_chart_is_png(tmp_path):
    path = plot_speed_accuracy([{"name": "a", "images_per_s": 10, "accuracy": 20},
                                {"name": "b", "images_per_s": 30, "accuracy": 15}], str(tmp_path / "c.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_presets_follow_the_papers_protocols():
    assert PRESETS["gpu-detector"]["batch"] == 4 and PRESETS["gpu-detector"]["input"] == "800x1200"
    assert PRESETS["gpu-classification"]["batch"] == 8
    arm = [p for n, p in PRESETS.items() if n.startswith("arm-")]
    assert {p["input"] for p in arm} == {"224x224", "480x640", "720x1280"}
    assert all(p["threads"] == 1 and p["batch"] == 1 and p["backend"] in ("ncnn", "onnxruntime") for p in arm)


@pytest.mark.parametrize("name, content, expect", [
    ("r.json", '{"results": {}}', "is a JSON dict, not a benchmark log"),
    ("r.json", '[{"name": "x"}]', "is a JSON list of other records, not a benchmark log"),
    ("r.csv", "name,age\nbob,3\n", "is a CSV with columns ['name', 'age'], not a benchmark log"),
])
def test_append_results_never_rewrites_a_file_of_another_kind(tmp_path, name, content, expect):
    from detection.deploy.benchmark import ResultsFileError, check_results_file

    path = tmp_path / name
    path.write_text(content)
    kind = name.rsplit(".", 1)[1]
    with pytest.raises(ResultsFileError, match=re.escape(expect)):
        check_results_file(str(path), kind)
    with pytest.raises(ResultsFileError, match=re.escape(expect)):
        append_results({"name": "a", "median_ms": 1.0}, **{f"{kind}_path": str(path)})
    assert path.read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left behind
