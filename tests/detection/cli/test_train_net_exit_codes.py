"""tools/train_net.py maps config errors and training outcomes to documented exit codes with
one clear line (for the outcomes the Trainer is replaced by a stub: only the tool's handling
is under test there)."""
import errno
import os
import signal
import sys

import pytest

from detection.checkpoint import CheckpointWriteError
from helpers import QUICKSTART_CONFIG

pytest.importorskip("detection.modeling")

CONFIG = QUICKSTART_CONFIG


def test_train_net_config_errors_exit_2(train_net, tmp_path, capsys):
    assert train_net.main(["--config-file", CONFIG, "SOLVER.BASE_LRR", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SOLVER.BASE_LRR" in err and "did you mean SOLVER.BASE_LR" in err
    assert "Traceback" not in err

    assert train_net.main(["--config-file", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err

    assert train_net.main(["--config-file", CONFIG, "DATASETS.TEST", "('litedet_shapes_vall',)"]) == 2
    assert "is not registered; did you mean litedet_shapes_val" in capsys.readouterr().err

    assert train_net.main(["--config-file", CONFIG, "MODEL.BACKBONE.NAME", "shufflenet_v2_1.0"]) == 2
    assert "did you mean shufflenet_v2_1.0x" in capsys.readouterr().err

    assert train_net.main(["--config-file", CONFIG, "SOLVER.MAX_ITER"]) == 2  # odd number of overrides
    assert "KEY VALUE" in capsys.readouterr().err


def test_train_net_missing_weights_exit_2(train_net, tmp_path, capsys):
    rc = train_net.main(["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", str(tmp_path / "nope.pth"),
                         "OUTPUT_DIR", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "checkpoint file not found" in err and "nope.pth" in err and "\n" not in err


def _stub(outcome):
    class StubCheckpointer:
        def get_checkpoint_file(self):
            return "/out/model_0000007.pth"

    class StubTrainer:
        def __init__(self, cfg):
            self.interrupted, self.iter, self.checkpointer = None, 0, StubCheckpointer()

        def resume_or_load(self, resume):
            pass

        def train(self):
            if isinstance(outcome, BaseException):
                raise outcome
            self.interrupted, self.iter = outcome, 7
            return {}

    return StubTrainer


@pytest.mark.parametrize(
    "outcome, code, message",
    [
        (CheckpointWriteError(errno.ENOSPC, "cannot write checkpoint /out/model_0000009.pth: No space left"), 3,
         "error: cannot write checkpoint /out/model_0000009.pth"),
        (FloatingPointError("Loss became non-finite at iteration 4: loss_cls=nan"), 1,
         "training diverged: Loss became non-finite at iteration 4"),
        (signal.SIGTERM, 0, None),
        (signal.SIGINT, 130, None),
    ],
)
def test_exit_codes(train_net, monkeypatch, tmp_path, capsys, outcome, code, message):
    monkeypatch.setattr(train_net, "Trainer", _stub(outcome))
    argv = ["--config-file", CONFIG, "OUTPUT_DIR", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["tools/train_net.py", *argv])
    assert train_net.main(argv) == code
    out, err = capsys.readouterr()
    if message:
        assert message in err and "Traceback" not in err
    else:
        name = signal.Signals(outcome).name
        assert f"Interrupted by {name} after iteration 7; checkpoint: /out/model_0000007.pth" in out
        # --resume goes before the trailing KEY VALUE overrides
        assert f"Continue with: tools/train_net.py --resume --config-file {CONFIG} OUTPUT_DIR {tmp_path}" in out
        assert not (tmp_path / "metrics_final.json").exists()


@pytest.mark.parametrize("freeze_at, weights, warned", [(2, "", True), (0, "", False), (2, "w.pth", False)])
def test_freezing_random_layers_is_warned(train_net, monkeypatch, tmp_path, freeze_at, weights, warned):
    monkeypatch.setattr(train_net, "Trainer", _stub(signal.SIGTERM))
    argv = ["--config-file", CONFIG, "OUTPUT_DIR", str(tmp_path), "MODEL.BACKBONE.FREEZE_AT", str(freeze_at)]
    if weights:  # the config check wants the file to exist; the stub trainer never opens it
        (tmp_path / weights).write_bytes(b"")
        argv += ["MODEL.WEIGHTS", str(tmp_path / weights)]
    monkeypatch.setattr(sys, "argv", ["tools/train_net.py", *argv])
    assert train_net.main(argv) == 0
    log = (tmp_path / "log.txt").read_text()
    assert ("freezes randomly initialised layers" in log) == warned


def test_empty_output_dir_is_refused_for_training(train_net, monkeypatch, tmp_path, capsys):
    # "" would mean "no checkpoints" to the checkpointer but "the cwd" to the results file
    monkeypatch.setattr(train_net, "Trainer", _stub(signal.SIGTERM))
    monkeypatch.chdir(tmp_path)
    argv = ["--config-file", CONFIG, "OUTPUT_DIR", ""]
    monkeypatch.setattr(sys, "argv", ["tools/train_net.py", *argv])
    assert train_net.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("train_net.py: config error: OUTPUT_DIR is empty: training writes checkpoints") and err.count("\n") == 1
    assert os.listdir(tmp_path) == []
