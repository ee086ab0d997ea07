"""tools/plot_metrics.py: curves from metrics.json, corrupt lines skipped, clear errors."""
import json

from detection.cli import plot_metrics


def write_run(tmp_path):
    lines = [
        json.dumps({"iteration": i, "loss_classifier": 1.0 / (i + 1), "total_loss": 2.0 / (i + 1), "lr": 0.01})
        for i in range(0, 100, 20)
    ]
    lines.append(json.dumps({"iteration": 99, "total_loss": 0.1, "lr": 0.001,
                             "val/bbox/AP": 41.0, "val/bbox/AP-circle": 40.0, "voc/bbox/AP50_07": 60.0}))
    lines.append('{"iteration": 100, "total_l')  # a run killed mid-write
    (tmp_path / "metrics.json").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_series_split(tmp_path, capsys):
    records = plot_metrics.read_metrics(str(write_run(tmp_path) / "metrics.json"))
    assert len(records) == 6
    assert "metrics.json:7: skipped" in capsys.readouterr().err
    losses, lr, evals = plot_metrics.split_series(records)
    assert set(losses) == {"loss_classifier", "total_loss"} and len(losses["total_loss"]) == 6
    assert lr["lr"][-1] == (99, 0.001)
    # per-class APs stay out of the curve panel
    assert set(evals) == {"val/bbox/AP", "voc/bbox/AP50_07"}


def test_png_written(tmp_path):
    run = write_run(tmp_path)
    assert plot_metrics.main([str(run)]) == 0
    png = run / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_missing_and_empty(tmp_path, capsys):
    assert plot_metrics.main([str(tmp_path / "nope")]) == 2
    assert "no metrics file" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text("")
    assert plot_metrics.main([str(tmp_path)]) == 2
    assert "holds no metrics records" in capsys.readouterr().err


def test_classification_accuracy_is_an_eval_curve(tmp_path):
    (tmp_path / "metrics.json").write_text(
        json.dumps({"iteration": 9, "total_loss": 1.0, "lr": 0.1,
                    "toy_val/accuracy/top1": 80.0, "toy_val/accuracy/top5": 100.0}) + "\n"
    )
    _, _, evals = plot_metrics.split_series(plot_metrics.read_metrics(str(tmp_path / "metrics.json")))
    assert set(evals) == {"toy_val/accuracy/top1", "toy_val/accuracy/top5"}


def test_output_that_cannot_be_written_is_refused_before_reading(tmp_path, capsys):
    run = write_run(tmp_path)
    (tmp_path / "charts").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (tmp_path / "charts", "is a folder; give a file name"),
        (tmp_path / "c.json", "the file name must end in .png, .svg, .pdf, .jpg, .jpeg"),
        (tmp_path / "c.txt", "the file name must end in"),
        (tmp_path / "curves", "the file name must end in"),  # matplotlib would write curves.png, not curves
        (tmp_path / "afile" / "c.png", f"its folder cannot be created, {tmp_path / 'afile'} is a file"),
    ]
    for output, expect in cases:
        assert plot_metrics.main([str(run), "--output", str(output)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: --output {output}: {expect}" or (expect in err and str(output) in err), err
        assert "\n" not in err
    assert not (tmp_path / "curves").exists() and not (tmp_path / "c.json").exists()


def test_the_file_written_is_the_one_named(tmp_path, capsys):
    run = write_run(tmp_path)
    out = tmp_path / "sub" / "loss.svg"
    assert plot_metrics.main([str(run), "--output", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml") and f"wrote {out} (6 records)" in capsys.readouterr().out
