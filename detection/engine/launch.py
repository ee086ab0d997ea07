"""What the training tools share at the command line: exit codes, and one function that
runs the work and turns every expected failure into one line on stderr and an exit code
(no traceback), so `tools/train_net.py` and `tools/train_classifier.py` behave alike.

Exit status: 0 success, or stopped by SIGTERM after saving a checkpoint; 130 stopped by
SIGINT (Ctrl-C) after saving a checkpoint; 2 invalid config / command line / unusable
weights or checkpoint / bad dataset or sample; 1 training diverged (non-finite loss; the
last good state is saved); 3 cannot write to OUTPUT_DIR (disk full, permissions; earlier
checkpoints are intact).
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
    "print_output_locations",
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


def _fail(prog: str, kind: str, text: str, code: int) -> Tuple[int, None]:
    logger.error("%s", text)
    print(f"{prog}: {kind}: {text}", file=sys.stderr)
    return code, None


def run_reporting_errors(
    prog: str, work: Callable[[], T], input_errors: Sequence[Type[BaseException]] = ()
) -> Tuple[int, Optional[T]]:
    """Run ``work()`` (which returns something other than None); return ``(0, result)``, or
    ``(exit code, None)`` after printing one line for a known failure or the interruption
    notice (SIGTERM's exit code is 0: test ``result is None``). ``input_errors``: the tool's own bad-input exception types
    (reported as data errors, exit 2) besides the detection data errors."""
    from backbones.weights import CheckpointError as BackboneCheckpointError
    from detection.checkpoint import CheckpointError, CheckpointWriteError
    from detection.config import ConfigError
    from detection.data.bad_samples import describe_error
    from detection.data.errors import BadSampleError, DatasetError

    try:
        return 0, work()
    except ConfigError as err:
        return _fail(prog, "config error", str(err), EXIT_CONFIG)
    except (CheckpointError, BackboneCheckpointError) as err:
        return _fail(prog, "error", describe_error(err), EXIT_CONFIG)
    except (DatasetError, BadSampleError, FileNotFoundError, *input_errors) as err:  # file named, one line
        return _fail(prog, "data error", describe_error(err), EXIT_CONFIG)
    except FloatingPointError as err:
        logger.error("Training stopped: %s", err)
        print(f"{prog}: training diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED, None
    except (CheckpointWriteError, OSError) as err:
        # our own write errors carry the path in strerror; others name it in filename
        return _fail(prog, "error", str(err) if err.filename or not err.strerror else err.strerror, EXIT_WRITE_ERROR)
    except Interrupted as stop:
        if comm.is_main_process():
            print(
                f"Interrupted by {signal.Signals(stop.signum).name} after iteration {stop.iteration}; "
                f"checkpoint: {os.path.abspath(stop.checkpoint) if stop.checkpoint else '(none)'}\n"
                f"Continue with: {_resume_command()}",
                flush=True,
            )
        return (EXIT_SIGINT if stop.signum == signal.SIGINT else 0), None


def print_output_locations(output_dir: str, results_file: str, trained: bool, extra: Iterable[str] = ()) -> None:
    """Main process: tell the user where the results, weights, metrics and log are."""
    if not comm.is_main_process():
        return
    out = os.path.abspath(output_dir)
    lines = [f"Results written to {os.path.abspath(results_file)}", *extra]
    if trained:
        lines += [
            f"Final weights: {os.path.join(out, 'model_final.pth')}",
            f"Training metrics: {os.path.join(out, 'metrics.json')} (TensorBoard: tensorboard --logdir {out})",
        ]
    lines.append(f"Log: {os.path.join(out, 'log.txt')}")
    print("\n".join(lines), flush=True)
