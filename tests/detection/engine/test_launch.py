"""detection.engine.launch: one exit code and one stderr line per known failure."""
import errno
import signal

import pytest

from backbones.checkpoint_io import CheckpointError
from detection.checkpoint import CheckpointWriteError
from detection.config import ConfigError
from detection.data.errors import DatasetError
from detection.engine.launch import EXIT_CONFIG, EXIT_DIVERGED, EXIT_SIGINT, EXIT_WRITE_ERROR, Interrupted, run_reporting_errors


class ToolInputError(ValueError):
    pass


def _raise(err):
    def work():
        raise err

    return work


@pytest.mark.parametrize(
    "err, code, line",
    [
        (ConfigError("SOLVER.BASE_LR: must be positive"), EXIT_CONFIG, "tool: config error: SOLVER.BASE_LR: must be positive"),
        (CheckpointError("w.pth: truncated"), EXIT_CONFIG, "tool: error: w.pth: truncated"),
        (DatasetError("ann.json:3:5: invalid JSON"), EXIT_CONFIG, "tool: data error: ann.json:3:5: invalid JSON"),
        (ToolInputError("Traceback ...\n  File x\nmy.pkg.ToolInputError: /data/train is empty"), EXIT_CONFIG,
         "tool: data error: /data/train is empty"),
        (FloatingPointError("loss_cls=nan at iteration 3"), EXIT_DIVERGED, "tool: training diverged: loss_cls=nan at iteration 3"),
        (CheckpointWriteError(errno.ENOSPC, "cannot write /out/model.pth: No space left"), EXIT_WRITE_ERROR,
         "tool: error: cannot write /out/model.pth: No space left"),
    ],
)
def test_known_failures_are_one_line(err, code, line, capsys):
    assert run_reporting_errors("tool", _raise(err), input_errors=(ToolInputError,)) == (code, None)
    err_text = capsys.readouterr().err
    assert err_text.strip() == line


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 0), (signal.SIGINT, EXIT_SIGINT)])
def test_interruption_prints_the_resume_command(signum, code, capsys):
    result = run_reporting_errors("tool", _raise(Interrupted(signum, 41, "/out/model_0000041.pth")))
    assert result == (code, None)
    out = capsys.readouterr().out
    assert f"Interrupted by {signal.Signals(signum).name} after iteration 41" in out and "--resume" in out


def test_success_returns_the_result():
    assert run_reporting_errors("tool", lambda: "out/metrics_final.json") == (0, "out/metrics_final.json")


def test_unexpected_errors_propagate():
    with pytest.raises(KeyError):
        run_reporting_errors("tool", _raise(KeyError("bug")))


@pytest.mark.parametrize(
    "err, code, line",
    [
        (DatasetError("ann.json: not found"), EXIT_CONFIG, "tool: stopped because rank 1 failed: data error: ann.json: not found"),
        (CheckpointWriteError(errno.ENOSPC, "cannot write /out/model.pth: No space left"), EXIT_WRITE_ERROR,
         "tool: stopped because rank 1 failed: error: cannot write /out/model.pth: No space left"),
        (KeyError("bug"), 1, "tool: stopped because rank 1 failed: error: KeyError: 'bug'"),  # rank 1 shows the traceback
    ],
)
def test_another_ranks_failure_is_one_line_with_its_exit_code(err, code, line, capsys):
    from detection.utils.comm import PeerFailure

    assert run_reporting_errors("tool", _raise(PeerFailure(1, err))) == (code, None)
    assert capsys.readouterr().err.strip() == line


def test_output_locations_name_only_files_that_exist(tmp_path, capsys):
    from detection.engine.launch import print_output_locations

    (tmp_path / "metrics_final.json").write_text("{}")
    (tmp_path / "log.txt").write_text("")
    print_output_locations(str(tmp_path), str(tmp_path / "metrics_final.json"), trained=True, extra=["Backbone: b.pth"])
    assert capsys.readouterr().out.splitlines() == [
        f"Results written to {tmp_path / 'metrics_final.json'}", "Backbone: b.pth", f"Log: {tmp_path / 'log.txt'}",
    ]  # no model_final.pth / metrics.json were written: not named
    (tmp_path / "model_final.pth").write_bytes(b"")
    print_output_locations(str(tmp_path), str(tmp_path / "metrics_final.json"), trained=True)
    assert f"Final weights: {tmp_path / 'model_final.pth'}" in capsys.readouterr().out
