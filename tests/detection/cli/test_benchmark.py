"""tools/benchmark.py: result fields on CPU (torch and onnxruntime), presets, sweep chart,
one-line errors; tools/export.py end to end (export + check + metadata) and its errors."""
import json

import pytest

from detection.cli import benchmark, export
from helpers import QUICKSTART_CONFIG

pytest.importorskip("detection.modeling")

CONFIG = QUICKSTART_CONFIG
SMALL = ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x"]
FIELDS = {"median_ms", "p10_ms", "p90_ms", "images_per_s", "iters", "batch", "input", "backend", "device", "part",
          "cpu_model", "cpu_cores", "threads", "torch_version", "onnxruntime_version", "ncnn_version", "gpu"}


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_backbone_benchmark_json_and_csv(tmp_path, capsys, backend):
    j, c = tmp_path / "b.json", tmp_path / "b.csv"
    args = ["--config-file", CONFIG, "--backbone-only", "--backend", backend, "--input", "64x96", "--batch", "2",
            "--threads", "1", "--iters", "3", "--warmup", "1", "--json", str(j), "--csv", str(c), *SMALL]
    assert benchmark.main(args) == 0
    assert benchmark.main(args) == 0  # rows are appended
    rows = json.loads(j.read_text())
    assert len(rows) == 2 and FIELDS <= set(rows[0])
    row = rows[0]
    assert (row["backend"], row["part"], row["batch"], row["input"], row["threads"]) == (backend, "backbone", 2, "64x96", 1)
    assert row["iters"] == 3 and row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
    assert row["images_per_s"] == pytest.approx(2000.0 / row["median_ms"])
    assert len(c.read_text().strip().splitlines()) == 3  # header + 2 rows
    assert "images/s" in capsys.readouterr().out


def test_detector_benchmark_torch(tmp_path, capsys):
    j = tmp_path / "d.json"
    assert benchmark.main(["--config-file", CONFIG, "--input", "96x128", "--iters", "2", "--warmup", "1", "--threads", "1",
                       "--json", str(j), *SMALL, "MODEL.RPN.POST_NMS_TOPK_TEST", "20"]) == 0
    row = json.loads(j.read_text())[0]
    assert row["part"] == "detector" and row["median_ms"] > 0 and row["model"].startswith("LightHeadRCNN")


def test_sweep_draws_chart_from_given_and_metrics_accuracy(tmp_path, capsys):
    out_dir = tmp_path / "trained"
    out_dir.mkdir()
    (out_dir / "metrics_final.json").write_text(json.dumps({"results": {"val": {"bbox": {"AP": 31.0}}}}))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"- config: {CONFIG}\n  name: given\n  accuracy: 20.5\n  opts: [MODEL.BACKBONE.NAME, shufflenet_v2_0.5x]\n"
        f"- config: {CONFIG}\n  name: from_metrics\n  metrics: {out_dir}\n  opts: [MODEL.BACKBONE.NAME, shufflenet_v2_0.5x]\n")
    chart, j = tmp_path / "chart.png", tmp_path / "s.json"
    assert benchmark.main(["--sweep", str(sweep), "--backbone-only", "--input", "64x64", "--iters", "2", "--warmup", "0",
                       "--threads", "1", "--chart", str(chart), "--json", str(j)]) == 0
    rows = json.loads(j.read_text())
    assert [(r["name"], r["accuracy"]) for r in rows] == [("given", 20.5), ("from_metrics", 31.0)]
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_presets_and_classifier_form(tmp_path):
    j = tmp_path / "p.json"
    assert benchmark.main(["--backbone", "shufflenet_v2_0.5x", "--preset", "arm-224-ort", "--input", "64x64",
                       "--iters", "2", "--warmup", "0", "--json", str(j)]) == 0
    row = json.loads(j.read_text())[0]
    assert (row["part"], row["backend"], row["threads"], row["batch"], row["preset"]) == (
        "classifier", "onnxruntime", 1, 1, "arm-224-ort")


@pytest.mark.parametrize("args,expect", [
    (["--preset", "gpu-detector"], "no CUDA device"),
    (["--backend", "ncnn"], "ncnn runs convolutional graphs"),
    (["--backbone-only", "--input", "70x96"], "divisible by 32"),
    # the detector's backbone comes from the config: --backbone would be silently ignored
    (["--backbone-only", "--backbone", "shufflenet_v2_1.0x"], "MODEL.BACKBONE.NAME shufflenet_v2_1.0x"),
    (["--backbone", "shufflenet_v2_1.0x"], "--backbone shufflenet_v2_1.0x times a classifier"),
])
def test_benchmark_errors_one_line(capsys, args, expect):
    import torch

    if "gpu-detector" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the no-GPU error cannot happen")
    assert benchmark.main(["--config-file", CONFIG, *args, *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and "\n" not in err


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_detector_benchmark(tmp_path):
    j = tmp_path / "g.json"
    assert benchmark.main(["--config-file", CONFIG, "--device", "cuda", "--batch", "2", "--input", "128x160",
                       "--iters", "3", "--warmup", "1", "--json", str(j), *SMALL]) == 0
    row = json.loads(j.read_text())[0]
    assert row["gpu"] and row["device"] == "cuda"


def test_export_tool_torchscript_backbone_and_errors(tmp_path, capsys):
    out = tmp_path / "exp"
    assert export.main(["--config-file", CONFIG, "--format", "torchscript", "--backbone-only", "--output", str(out),
                        "--input", "64x96", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "Check torchscript vs PyTorch" in printed and "OK" in printed
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["check"]["ok"] and meta["input"]["shape"] == [1, 3, 64, 96] and (out / meta["files"][0]).is_file()

    assert export.main(["--config-file", CONFIG, "--format", "ncnn", "--output", str(out), *SMALL]) == 2
    assert "--backbone-only or --dense" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert export.main(["--config-file", CONFIG, "--format", "onnx", "--output", str(tmp_path / "f" / "o"), *SMALL]) == 2
    assert f"--output {tmp_path / 'f' / 'o'}: cannot be created: {tmp_path / 'f'} is a file" in capsys.readouterr().err


def test_fuse_option_times_the_fused_model(tmp_path):
    j = tmp_path / "f.json"
    assert benchmark.main(["--backbone", "shufflenet_v2_0.5x", "--classifier", "--fuse", "--input", "64x64",
                       "--iters", "2", "--warmup", "0", "--threads", "1", "--json", str(j)]) == 0
    row = json.loads(j.read_text())[0]
    assert row["fused"] is True and row["part"] == "classifier"
    import backbones
    from backbones.fast import is_fused
    from detection.deploy import fuse_for_deploy

    clf = backbones.build_classifier("shufflenet_v2_0.5x").eval()
    assert is_fused(fuse_for_deploy(clf))  # what --fuse hands to the exporters


@pytest.mark.parametrize(
    "backend",
    ["torchscript", pytest.param("ncnn", marks=pytest.mark.slow), pytest.param("compile", marks=pytest.mark.slow)],
)
def test_backbone_benchmark_other_backends(tmp_path, backend):
    j = tmp_path / "b.json"
    args = ["--config-file", CONFIG, "--backbone-only", "--backend", backend, "--input", "64x96", "--batch", "1",
            "--threads", "1", "--iters", "2", "--warmup", "1", "--json", str(j), *SMALL]
    assert benchmark.main(args) == 0
    row = json.loads(j.read_text())[0]
    assert (row["backend"], row["part"]) == (backend, "backbone")
    assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"] and row["median_ms"] > 0


def test_export_tool_fp16_only_for_ncnn(tmp_path, capsys):
    # --fp16 changes nothing in an ONNX / TorchScript file: refused, not silently ignored
    for fmt in ("onnx", "torchscript"):
        assert export.main(["--config-file", CONFIG, "--format", fmt, "--backbone-only", "--fp16",
                            "--output", str(tmp_path), *SMALL]) == 2
        err = capsys.readouterr().err.strip()
        assert "--fp16" in err and "--format ncnn" in err and "\n" not in err
    assert not list(tmp_path.iterdir())


def test_export_tool_failure_keeps_the_traceback(tmp_path, capsys, monkeypatch):
    import detection.deploy

    def broken_export(*args, **kwargs):
        try:
            raise RuntimeError("first line\nthe detail that explains it")
        except RuntimeError as err:
            raise detection.deploy.ExportError("ONNX export failed: RuntimeError: first line") from err

    monkeypatch.setattr(detection.deploy, "export_module", broken_export)
    assert export.main(["--config-file", CONFIG, "--format", "onnx", "--backbone-only", "--input", "64x64",
                        "--output", str(tmp_path), *SMALL]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.endswith("error: ONNX export failed: RuntimeError: first line") and "\n" not in err  # still one line
    assert "the detail that explains it" in captured.out and "Traceback" in captured.out


# ---------------------------------------------------------------------------- output files, before any timing
def _foreign(tmp_path, case):
    """(extra args, path that must stay untouched or None, expected message part)."""
    if case == "json_object":
        p = tmp_path / "metrics_final.json"
        p.write_text('{"eval_only": false, "results": {"bbox": {"AP": 1.0}}}')
        return ["--json", str(p)], p, f"{p} is a JSON dict, not a benchmark log"
    if case == "json_other_list":
        p = tmp_path / "detections.json"
        p.write_text('[{"image_id": 1, "score": 0.5}]')
        return ["--json", str(p)], p, f"{p} is a JSON list of other records, not a benchmark log"
    if case == "json_not_json":
        p = tmp_path / "notes.json"
        p.write_text("hello\n")
        return ["--json", str(p)], p, f"{p}:1:1: not valid JSON (Expecting value); not a benchmark log"
    if case == "json_folder":
        (tmp_path / "dir.json").mkdir()
        return ["--json", str(tmp_path / "dir.json")], None, f"--json {tmp_path / 'dir.json'}: is a folder; give a file name"
    if case == "csv_other":
        p = tmp_path / "people.csv"
        p.write_text("name,age\nbob,3\n")
        return ["--csv", str(p)], p, f"{p} is a CSV with columns ['name', 'age'], not a benchmark log"
    if case == "csv_binary":
        p = tmp_path / "bin.csv"
        p.write_bytes(bytes(range(256)))
        return ["--csv", str(p)], p, f"{p}: not UTF-8 text (byte 128); not a benchmark log"
    if case == "csv_below_a_file":
        (tmp_path / "people.csv").write_text("name\n")
        path = tmp_path / "people.csv" / "x.csv"
        return ["--csv", str(path)], tmp_path / "people.csv", f"--csv {path}: its folder cannot be created, {tmp_path / 'people.csv'} is a file"
    if case == "chart_folder":
        (tmp_path / "charts").mkdir()
        return ["--sweep", CONFIG, "--chart", str(tmp_path / "charts")], None, f"--chart {tmp_path / 'charts'}: is a folder"
    if case == "chart_json":
        return ["--sweep", CONFIG, "--chart", str(tmp_path / "c.json")], None, \
            f"--chart {tmp_path / 'c.json'}: the file name must end in .png, .svg, .pdf, .jpg, .jpeg"
    if case == "chart_without_sweep":
        return ["--chart", str(tmp_path / "c.png")], None, "--chart draws the speed-vs-accuracy chart of a --sweep"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["json_object", "json_other_list", "json_not_json", "json_folder", "csv_other",
                                  "csv_binary", "csv_below_a_file", "chart_folder", "chart_json", "chart_without_sweep"])
def test_output_files_are_checked_before_anything_is_timed(tmp_path, capsys, monkeypatch, case):
    import detection.deploy.benchmark as lib

    def never(*args, **kwargs):
        raise AssertionError("timing started before the output files were checked")

    monkeypatch.setattr(lib, "time_callable", never)
    extra, untouched, expect = _foreign(tmp_path, case)
    before = untouched.read_bytes() if untouched is not None else None
    config = [] if "--sweep" in extra else ["--config-file", CONFIG]
    rc = benchmark.main([*config, "--backbone-only", "--input", "64x64", "--iters", "1", "--warmup", "0", *extra, *SMALL])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and expect in err and "\n" not in err and "Traceback" not in err, err
    if untouched is not None:
        assert untouched.read_bytes() == before  # never rewritten


def test_json_log_written_by_the_tool_is_appended_to(tmp_path, capsys):
    j = tmp_path / "log.json"
    args = ["--config-file", CONFIG, "--backbone-only", "--input", "64x64", "--iters", "1", "--warmup", "0",
            "--threads", "1", "--json", str(j), *SMALL]
    assert benchmark.main(args) == 0 and benchmark.main(args) == 0
    assert len(json.loads(j.read_text())) == 2
    assert f"Appended to {j}" in capsys.readouterr().out


@pytest.mark.parametrize("args, expect", [
    (["--iters", "0"], "argument --iters: must be >= 1, got '0'"),
    (["--batch", "0"], "argument --batch: must be >= 1, got '0'"),
    (["--threads", "-1"], "argument --threads: must be >= 0, got '-1'"),
    (["--warmup", "-1"], "argument --warmup: must be >= 0, got '-1'"),
    (["--iters", "x"], "argument --iters: expected an integer >= 1, got 'x'"),
])
def test_numeric_flags_are_refused_by_the_parser(capsys, args, expect):
    with pytest.raises(SystemExit) as stop:
        benchmark.main(["--config-file", CONFIG, *args])
    assert stop.value.code == 2 and expect in capsys.readouterr().err


def test_tools_called_in_process_leave_autograd_on(tmp_path):
    import torch

    assert export.main(["--config-file", CONFIG, "--format", "torchscript", "--backbone-only", "--no-check",
                        "--input", "64x64", "--output", str(tmp_path / "e"), *SMALL]) == 0
    assert torch.is_grad_enabled()
    assert benchmark.main(["--config-file", CONFIG, "--backbone-only", "--backend", "torchscript", "--input", "64x64",
                           "--iters", "1", "--warmup", "0", "--threads", "1", *SMALL]) == 0
    assert torch.is_grad_enabled()
