"""What the training tools share at the command line: exit codes, and one function that
runs the work and turns every expected failure into one line on stderr and an exit code
(no traceback), so `tools/train_net.py` and `tools/train_classifier.py` behave alike.

Exit status: 0 success, or stopped by SIGTERM after saving a checkpoint; 130 stopped by
SIGINT (Ctrl-C) after saving a checkpoint; 2 invalid config / command line / unusable
weights or checkpoint / bad dataset or sample; 1 training diverged (non-finite loss; the
last good state is saved); 3 cannot write to OUTPUT_DIR (disk full, permissions; earlier
checkpoints are intact).

Under torchrun, an error that one process meets where every process checks in
(`comm.fail_together`: start-up, data loaders, checkpoint writes) stops them all; the
others print "stopped because rank N failed: ..." and exit with the same status.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Callable, Iterable, Optional, Sequence, Tuple, Type, TypeVar

from ..utils import comm

__all__ = [
    "EXIT_DIVERGED", "EXIT_CONFIG", "EXIT_WRITE_ERROR", "EXIT_SIGINT", "Interrupted", "run_reporting_errors",
    "print_output_locations", "report_failure",
]

logger = logging.getLogger(__name__)

EXIT_DIVERGED = 1
EXIT_CONFIG = 2
EXIT_WRITE_ERROR = 3
EXIT_SIGINT = 130  # shell convention for Ctrl-C: stops `train && evaluate` chains

T = TypeVar("T")


class Interrupted(Exception):
    """Training stopped by a signal after saving ``checkpoint`` at ``iteration``."""

    def __init__(self, signum: int, iteration: int, checkpoint: str) -> None:
        super().__init__(signum)
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint


def _resume_command() -> str:
    # --resume must come before the trailing KEY VALUE overrides
    rest = [a for a in sys.argv[1:] if a != "--resume"]
    return " ".join([sys.argv[0], "--resume", *rest])


def _known_failure(
    err: BaseException, input_errors: Sequence[Type[BaseException]] = ()
) -> Optional[Tuple[str, str, int]]:
    """``(kind, one-line text, exit code)`` of an expected failure; None for anything else."""
    from detection.checkpoint import CheckpointError, CheckpointWriteError
    from detection.config import ConfigError
    from detection.data.bad_samples import describe_error
    from detection.data.errors import BadSampleError, DatasetError

    if isinstance(err, ConfigError):
        return "config error", str(err), EXIT_CONFIG
    if isinstance(err, CheckpointError):
        return "error", describe_error(err), EXIT_CONFIG
    if isinstance(err, (DatasetError, BadSampleError, FileNotFoundError, *input_errors)):  # file named, one line
        return "data error", describe_error(err), EXIT_CONFIG
    if isinstance(err, FloatingPointError):
        return "training diverged", str(err), EXIT_DIVERGED
    if isinstance(err, (CheckpointWriteError, OSError)):
        # our own write errors carry the path in strerror; others name it in filename
        return "error", str(err) if err.filename or not err.strerror else err.strerror, EXIT_WRITE_ERROR
    return None


def report_failure(
    prog: str, err: BaseException, input_errors: Sequence[Type[BaseException]] = (), *, log: bool = True
) -> Optional[int]:
    """Print the one stderr line for an expected failure and return its exit code; None
    for an unexpected error (the caller re-raises it: a bug deserves its traceback), never
    for `comm.PeerFailure`.

    `comm.PeerFailure` (another rank failed, see `comm.fail_together`) is reported as
    "stopped because rank N failed: ..." with that failure's exit code (1 for an unexpected
    error there). ``log=False`` before logging is set up: the message would reach stderr
    twice through logging's last-resort handler.
    """
    peer = err if isinstance(err, comm.PeerFailure) else None
    known = _known_failure(peer.error if peer is not None else err, input_errors)
    if known is None:
        if peer is None:
            return None
        known = ("error", f"{type(peer.error).__name__}: {peer.error}", 1)  # the failing rank shows its traceback
    kind, text, code = known
    if peer is not None:
        kind, text = f"stopped because rank {peer.rank} failed", f"{kind}: {text}"
        logged = f"{kind}: {text}"
    else:
        logged = f"Training stopped: {text}" if kind == "training diverged" else text
    if log:
        logger.error("%s", logged)
    print(f"{prog}: {kind}: {text}", file=sys.stderr)
    return code


def setup_reporting_errors(
    prog: str, setup: Callable[[], T], args, input_errors: Sequence[Type[BaseException]] = ()
) -> Tuple[int, Optional[T]]:
    """A tool's start-up on every rank together: ``cfg = setup()`` then `default_setup`
    (logging, OUTPUT_DIR, config dump). Returns ``(0, cfg)``, or ``(exit code, None)`` after
    one stderr line: a config error, a data error or one of the tool's ``input_errors`` (exit 2), an
    OUTPUT_DIR that cannot be written (exit 3), or another rank's failure there.

    What ``setup()`` logs (the config checks' notes and warnings) is held until logging is
    set up, then written to the console and OUTPUT_DIR/log.txt; after a failure only the
    one error line is printed."""
    from ..config import ConfigError
    from ..data.errors import DATA_ERRORS
    from .defaults import default_setup, hold_log_records

    try:
        with comm.fail_together(), hold_log_records() as held:  # e.g. the data missing on one node: every node stops
            cfg = setup()
    except ConfigError as err:
        print(f"{prog}: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG, None
    except DATA_ERRORS as err:  # a dataset the config checks read (its class list) is unusable
        print(f"{prog}: data error: {err}", file=sys.stderr)
        return EXIT_CONFIG, None
    except tuple(input_errors) as err:
        print(f"{prog}: dataset error: {err}", file=sys.stderr)
        return EXIT_CONFIG, None
    except comm.PeerFailure as err:
        return report_failure(prog, err, input_errors, log=False), None
    try:
        default_setup(cfg, args)
    except OSError as err:
        print(f"{prog}: error: cannot write to OUTPUT_DIR {cfg.OUTPUT_DIR}: {err}", file=sys.stderr)
        return EXIT_WRITE_ERROR, None
    except comm.PeerFailure as err:  # rank 0 could not write OUTPUT_DIR
        return report_failure(prog, err, log=False), None
    for record in held:
        logging.getLogger(record.name).handle(record)
    return 0, cfg


def run_reporting_errors(
    prog: str, work: Callable[[], T], input_errors: Sequence[Type[BaseException]] = ()
) -> Tuple[int, Optional[T]]:
    """Run ``work()`` (which returns something other than None); return ``(0, result)``, or
    ``(exit code, None)`` after printing one line for a known failure (`report_failure`) or
    the interruption notice (SIGTERM's exit code is 0: test ``result is None``).
    ``input_errors``: the tool's own bad-input exception types (reported as data errors,
    exit 2) besides the detection data errors."""
    try:
        return 0, work()
    except Interrupted as stop:
        if comm.is_main_process():
            print(
                f"Interrupted by {signal.Signals(stop.signum).name} after iteration {stop.iteration}; "
                f"checkpoint: {os.path.abspath(stop.checkpoint) if stop.checkpoint else '(none)'}\n"
                f"Continue with: {_resume_command()}",
                flush=True,
            )
        return (EXIT_SIGINT if stop.signum == signal.SIGINT else 0), None
    except Exception as err:
        code = report_failure(prog, err, input_errors)
        if code is None:
            raise
        return code, None


def print_output_locations(output_dir: str, results_file: str, trained: bool, extra: Iterable[str] = ()) -> None:
    """Main process: tell the user where the results, weights, metrics and log are (only
    files that exist: a line never names a file that was not written)."""
    if not comm.is_main_process():
        return
    out = os.path.abspath(output_dir)
    files = [("Results written to", os.path.abspath(results_file), "")]
    files_after = []
    if trained:
        files_after += [
            ("Final weights:", os.path.join(out, "model_final.pth"), ""),
            ("Training metrics:", os.path.join(out, "metrics.json"), f" (TensorBoard: tensorboard --logdir {out})"),
        ]
    files_after.append(("Log:", os.path.join(out, "log.txt"), ""))

    def existing(entries):
        return [f"{label} {path}{note}" for label, path, note in entries if os.path.isfile(path)]

    print("\n".join([*existing(files), *extra, *existing(files_after)]), flush=True)
