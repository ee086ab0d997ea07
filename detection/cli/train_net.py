"""Train a detector, or evaluate one, from a config (detectron2's tools/train_net.py UX).

    python tools/train_net.py --config-file configs/quickstart/lighthead_shufflenet_v2_shapes.yaml
    python tools/train_net.py --config-file CFG --resume                 # continue in OUTPUT_DIR
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file CFG SOLVER.BASE_LR 0.01 OUTPUT_DIR out/run2
    torchrun --nproc_per_node=8 tools/train_net.py --config-file CFG      # multi-GPU
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST0 --master_port=29500 \
        tools/train_net.py --config-file CFG                              # multi-node (run on each node)

OUTPUT_DIR receives config.yaml, log.txt, metrics.json (one line per logging period),
TensorBoard events, model_XXXXXXX.pth / model_final.pth / last_checkpoint, evaluator
files under inference/, and metrics_final.json with the final evaluation results.
See docs/training.md.

SIGTERM / SIGINT (Ctrl-C): the current iteration finishes, a checkpoint is saved and the
run stops; ``--resume`` continues it exactly. A second Ctrl-C aborts at once.

Exit status: 0 success, or stopped by SIGTERM after saving a checkpoint; 130 stopped by
SIGINT (Ctrl-C) after saving a checkpoint; 2 invalid config / command line / unusable
MODEL.WEIGHTS or checkpoint / bad dataset or sample (one line on stderr naming the
file, no traceback); 1 training diverged (non-finite loss; the last good state is
saved); 3 cannot write to OUTPUT_DIR (disk full, permissions; the message names the
file, earlier checkpoints are intact).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from detection.config import ConfigError, load_config
from detection.engine import Trainer, check_config, comm, default_argument_parser
from detection.engine.launch import (
    Interrupted,
    print_output_locations,
    run_reporting_errors,
    setup_reporting_errors,
)

from .common import load_evaluation_weights, write_results_file

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser``: ``--config-file``, ``--resume``, ``--eval-only``
    and the trailing ``KEY VALUE`` overrides."""
    parser = default_argument_parser()
    parser.description = "Train a detector, or evaluate one, from a config (see docs/training.md)."
    return parser


def setup(args):
    """Merged, validated config (raises ConfigError)."""
    cfg = load_config(args.config_file, args.opts or [])
    check_config(cfg, train=not args.eval_only, test=True)
    weights = cfg.MODEL.WEIGHTS
    resuming = args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    if weights and not resuming and not os.path.isfile(weights):
        raise ConfigError(f"MODEL.WEIGHTS: checkpoint file not found: {weights}")
    return cfg


def write_results(cfg, results, *, weights: str, iteration, eval_only: bool) -> str:
    record = {
        "eval_only": eval_only,
        "weights": weights,
        "iteration": iteration,
        "datasets": list(cfg.DATASETS.TEST),
        "results": results,
    }
    return write_results_file(cfg.OUTPUT_DIR, record)


def _print_results(results) -> None:
    try:
        from detection.evaluation import print_csv_format
    except ImportError:
        return
    if results and all(isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()) for v in results.values()):
        for name, res in results.items():  # several test sets: {name: {task: {...}}}
            logger.info("Results on %s:", name)
            print_csv_format(res)
    elif results:
        print_csv_format(results)


def evaluate(cfg, args) -> str:
    model = Trainer.build_model(cfg)
    weights, extra, info = load_evaluation_weights(model, cfg, args.resume, Trainer.build_model_info(cfg))
    results = Trainer.test(cfg, model, model_classes=info.thing_classes if info else None)
    _print_results(results)
    return write_results(cfg, results, weights=weights, iteration=extra.get("iteration"), eval_only=True)


def train(cfg, args) -> str:
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if trainer.interrupted is not None:
        raise Interrupted(trainer.interrupted, trainer.iter, trainer.checkpointer.get_checkpoint_file())
    _print_results(results)
    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    return write_results(cfg, results, weights=final, iteration=trainer.iter, eval_only=False)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = os.path.basename(sys.argv[0]) or "train_net.py"
    comm.init_distributed_from_env()
    try:
        return _main(args, prog)
    finally:
        if comm.is_dist_initialized():
            comm.destroy_process_group()


def _main(args, prog: str) -> int:
    code, cfg = setup_reporting_errors(prog, lambda: setup(args), args)
    if cfg is None:
        return code
    code, path = run_reporting_errors(prog, lambda: evaluate(cfg, args) if args.eval_only else train(cfg, args))
    if path is None:  # failed (one line printed) or interrupted after a checkpoint
        return code
    print_output_locations(cfg.OUTPUT_DIR, path, trained=not args.eval_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
