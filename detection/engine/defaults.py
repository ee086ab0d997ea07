"""Command-line and run setup shared by the tools: argument parser, logging, seeding and
library settings (`configure_libraries`). The config checks are `detection.config_checks`.

Mirrors detectron2's ``default_argument_parser`` / ``default_setup``. Multi-process runs
use torchrun (one process per GPU), so there is no ``--num-gpus`` flag.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import platform
import random
import subprocess
import sys
import time
from typing import Iterator, List, Optional

import numpy as np
import torch

from ..utils import comm

__all__ = [
    "default_argument_parser",
    "default_setup",
    "setup_logger",
    "hold_log_records",
    "seed_all_rng",
    "collect_env_info",
    "configure_libraries",
]


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """``--config-file``, ``--resume``, ``--eval-only`` and trailing ``KEY VALUE`` overrides."""
    if epilog is None:
        epilog = (
            "Examples:\n"
            "  Train:        python tools/train_net.py --config-file configs/quickstart/lighthead_shufflenet_v2_shapes.yaml\n"
            "  Resume:       python tools/train_net.py --config-file cfg.yaml --resume\n"
            "  Evaluate:     python tools/train_net.py --config-file cfg.yaml --eval-only MODEL.WEIGHTS out/model_final.pth\n"
            "  Override:     ... SOLVER.BASE_LR 0.01 SOLVER.IMS_PER_BATCH 8 MODEL.DEVICE cuda\n"
            "  Multi-GPU:    torchrun --nproc_per_node=8 tools/train_net.py --config-file cfg.yaml"
        )
    parser = argparse.ArgumentParser(epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the config YAML")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in OUTPUT_DIR (last_checkpoint); "
        "without it MODEL.WEIGHTS is loaded and training starts at iteration 0",
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS on DATASETS.TEST, no training")
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        help="config overrides as KEY VALUE pairs at the end of the command, e.g. SOLVER.MAX_ITER 1000",
    )
    return parser


# ------------------------------------------------------------------------------ logging
class _TqdmAwareHandler(logging.StreamHandler):
    """Console handler that prints through ``tqdm.write`` so progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _ColorFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return "\x1b[31m" + text + "\x1b[0m"
        if record.levelno >= logging.WARNING:
            return "\x1b[33m" + text + "\x1b[0m"
        return text


_LOGGER_NAMES = ("detection", "backbones", "fvcore", "__main__")


@functools.lru_cache(maxsize=None)
def _open_log_file(path: str):
    return open(path, "a", encoding="utf-8", buffering=1)


def setup_logger(output: Optional[str] = None, distributed_rank: int = 0, names=_LOGGER_NAMES) -> logging.Logger:
    """Rank 0: console + ``output/log.txt``. Other ranks write no files; their warnings
    and errors go to stderr prefixed with the rank (so a failure on any rank is visible).

    Idempotent: calling it again replaces the handlers it installed before.
    """
    fmt = "[%(asctime)s %(name)s]: %(message)s"
    datefmt = "%m/%d %H:%M:%S"
    handlers: list = []
    if distributed_rank == 0:
        console = _TqdmAwareHandler(stream=sys.stdout)
        color = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
        console.setFormatter((_ColorFormatter if color else logging.Formatter)(fmt, datefmt=datefmt))
        handlers.append(console)
    else:
        errors = logging.StreamHandler(stream=sys.stderr)
        errors.setLevel(logging.WARNING)
        errors.setFormatter(logging.Formatter(f"[rank {distributed_rank} %(asctime)s %(name)s]: %(message)s", datefmt=datefmt))
        handlers.append(errors)
    if output and distributed_rank == 0:
        path = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fh = logging.StreamHandler(_open_log_file(os.path.abspath(path)))
        fh.setFormatter(logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt=datefmt))
        handlers.append(fh)
    for name in names:
        log = logging.getLogger(name)
        for h in list(log.handlers):
            if getattr(h, "_litedet", False):
                log.removeHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False
        for h in handlers:
            h._litedet = True  # type: ignore[attr-defined]
            log.addHandler(h)
    return logging.getLogger("detection")


@contextlib.contextmanager
def hold_log_records(names=_LOGGER_NAMES) -> Iterator[List[logging.LogRecord]]:
    """Keep the records (INFO and up) that litedet's loggers emit inside the block instead
    of emitting them; yields the list. A tool's start-up logs before its logging is set up
    (which needs OUTPUT_DIR from the checked config): it replays the list afterwards with
    ``logging.getLogger(record.name).handle(record)``, or drops it after a failure."""
    held: List[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    keep = _Keep(logging.INFO)
    saved = []
    for name in names:
        log = logging.getLogger(name)
        saved.append((log, log.handlers[:], log.level, log.propagate))
        log.handlers, log.propagate = [keep], False
        log.setLevel(logging.INFO)
    try:
        yield held
    finally:
        for log, handlers, level, propagate in saved:
            log.handlers, log.propagate = handlers, propagate
            log.setLevel(level)


# ------------------------------------------------------------------------------ seeding
def seed_all_rng(seed: Optional[int] = None) -> int:
    """Seed Python, NumPy and torch (all devices). ``None``/negative draws a random seed,
    which is returned (and should be logged) so the run can be reproduced."""
    if seed is None or seed < 0:
        seed = (os.getpid() + int(time.time() * 1e6) + int.from_bytes(os.urandom(2), "big")) % (2**31)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    return seed


# ------------------------------------------------------------------------------ environment
def _git_commit() -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def collect_env_info() -> str:
    rows = [("sys.platform", sys.platform), ("Python", sys.version.replace("\n", " ")), ("platform", platform.platform())]
    rows.append(("litedet commit", _git_commit()))
    rows.append(("numpy", np.__version__))
    rows.append(("torch", f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"))
    rows.append(("torch CUDA build", str(torch.version.cuda)))
    for mod in ("torchvision", "fvcore", "cv2", "tensorboard"):
        try:
            rows.append((mod, getattr(__import__(mod), "__version__", "?")))
        except Exception:  # noqa: BLE001
            rows.append((mod, "not available"))
    cuda = torch.cuda.is_available()
    rows.append(("CUDA available", str(cuda)))
    if cuda:
        for i in range(torch.cuda.device_count()):
            rows.append((f"GPU {i}", torch.cuda.get_device_name(i)))
        rows.append(("cuDNN", str(torch.backends.cudnn.version())))
    rows.append(("CPU threads", str(torch.get_num_threads())))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def configure_libraries() -> None:
    """Process-wide library settings for training with forked data-loader workers.

    OpenCV's own thread pool does not survive ``fork``: once the parent process has used
    it (e.g. generating litedet_shapes on first use, or any cv2 call on a large image),
    data-loader workers that call cv2 can block forever on a copied lock. Single-threaded
    OpenCV (each worker is already a process) avoids that, as mmcv / detectron2 setups do.
    OpenCL is disabled too (it interacts badly with CUDA and forked workers).
    """
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency
        return
    cv2.setNumThreads(0)
    try:
        cv2.ocl.setUseOpenCL(False)
    except AttributeError:  # pragma: no cover
        pass


def default_setup(cfg, args=None) -> int:
    """Create OUTPUT_DIR, set up logging (console + OUTPUT_DIR/log.txt), log the
    environment, the command line and the merged config, save it to
    OUTPUT_DIR/config.yaml, and seed every RNG. Returns the seed used.

    Collective under torchrun: when rank 0 cannot write OUTPUT_DIR it raises its OSError
    and every other rank raises `comm.PeerFailure`."""
    configure_libraries()
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    # Only rank 0 writes here; when it cannot, every rank must stop (not wait for it in
    # DDP's first broadcast), hence fail_together around each write.
    with comm.fail_together():
        if comm.is_main_process() and output_dir:
            os.makedirs(output_dir, exist_ok=True)
        logger = setup_logger(output_dir, distributed_rank=rank)

    logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    logger.info("Environment info:\n%s", collect_env_info())
    logger.info("Command line: %s", " ".join(sys.argv))
    if args is not None:
        logger.info("Command line arguments: %s", args)
        cfg_file = getattr(args, "config_file", "")
        if cfg_file and os.path.isfile(cfg_file):
            with open(cfg_file, encoding="utf-8") as f:
                logger.info("Contents of config file %s:\n%s", cfg_file, f.read())
    logger.info("Running with full config:\n%s", cfg.dump())
    with comm.fail_together():
        if comm.is_main_process() and output_dir:
            path = os.path.join(output_dir, "config.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(cfg.dump())
            logger.info("Full config saved to %s", os.path.abspath(path))

    requested = int(cfg.SEED)
    seed = seed_all_rng(None if requested < 0 else requested + rank)
    logger.info("Using seed %d%s", seed, " (random, SEED < 0)" if requested < 0 else "")

    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    return seed
