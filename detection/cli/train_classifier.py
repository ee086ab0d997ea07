"""Pretrain a backbone's classification form on ImageFolder data (ImageNet layout), or
evaluate one, with the detector's training machinery (tools/train_net.py UX).

    python tools/train_classifier.py --config-file configs/ImageNet/shufflenet_v2_1.0x.yaml
    python tools/train_classifier.py --config-file CFG --resume                # continue in OUTPUT_DIR
    python tools/train_classifier.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_classifier.py --config-file CFG DATASETS.ROOT /data/imagenet SOLVER.IMS_PER_BATCH 256
    torchrun --nproc_per_node=8 tools/train_classifier.py --config-file CFG MODEL.DEVICE cuda

Data: DATASETS.ROOT/<split>/<class>/<image> (splits DATASETS.TRAIN / DATASETS.TEST,
default "train" / "val"). OUTPUT_DIR receives config.yaml, log.txt, metrics.json,
TensorBoard events, model_XXXXXXX.pth / model_final.pth / last_checkpoint,
metrics_final.json (top-1 / top-5 accuracy) and backbone_final.pth: the trained backbone
for a detector's MODEL.BACKBONE.WEIGHTS (--export-backbone PATH writes it to PATH instead;
with --eval-only it exports the evaluated MODEL.WEIGHTS).

Exit status (as tools/train_net.py, detection/engine/launch.py): 0 success, or stopped by
SIGTERM after saving a checkpoint; 130 stopped by Ctrl-C after saving a checkpoint; 2
invalid config / command line / dataset folder / checkpoint (one line on stderr, no
traceback); 1 training diverged (non-finite loss); 3 cannot write to OUTPUT_DIR.
"""
from __future__ import annotations

import logging
import os
import sys

from detection.classification import (
    ClassificationTrainer,
    ImageFolderError,
    export_backbone,
    load_classification_config,
    resolve_config,
)
from detection.classification.data import train_classes
from detection.config import ConfigError
from detection.config_checks import check_weights_input_format
from detection.engine import comm, default_argument_parser
from detection.engine.launch import (
    Interrupted,
    print_output_locations,
    run_reporting_errors,
    setup_reporting_errors,
)

from .common import OutputPathError, check_output_file, load_evaluation_weights, write_results_file

logger = logging.getLogger(__name__)

BACKBONE_FILE = "backbone_final.pth"

EPILOG = """Examples:
  Train:      python tools/train_classifier.py --config-file configs/ImageNet/shufflenet_v2_1.0x.yaml DATASETS.ROOT /data/imagenet
  Resume:     python tools/train_classifier.py --config-file CFG --resume
  Evaluate:   python tools/train_classifier.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
  Export:     python tools/train_classifier.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth --export-backbone bb.pth
  Multi-GPU:  torchrun --nproc_per_node=8 tools/train_classifier.py --config-file CFG MODEL.DEVICE cuda
Then fine-tune a detector from it: tools/train_net.py --config-file DET.yaml MODEL.BACKBONE.WEIGHTS out/backbone_final.pth"""


def build_parser():
    parser = default_argument_parser(epilog=EPILOG)
    parser.description = "Pretrain or evaluate a backbone's classifier on ImageFolder data (see docs/classification.md)."
    parser.add_argument(
        "--export-backbone",
        default="",
        metavar="PATH",
        help=f"write the backbone checkpoint (for a detector's MODEL.BACKBONE.WEIGHTS) to PATH; "
        f"default after training: OUTPUT_DIR/{BACKBONE_FILE}",
    )
    parser.add_argument(
        "--precise-bn", action="store_true",
        help="after training, re-estimate the BN statistics on TEST.PRECISE_BN.NUM_ITER training batches "
        "(0 = one epoch), as the ShuffleNet-Series recipe; sets TEST.PRECISE_BN.ENABLED True",
    )
    return parser


def setup(args):
    """Merged, resolved, validated config (raises ConfigError / ImageFolderError)."""
    opts = list(args.opts or [])
    if args.precise_bn:
        if args.eval_only:
            raise ConfigError("--precise-bn recalibrates after training; it does nothing with --eval-only")
        opts += ["TEST.PRECISE_BN.ENABLED", "True"]
    if args.export_backbone:
        try:
            check_output_file(args.export_backbone, "--export-backbone")
        except OutputPathError as err:
            raise ConfigError(str(err)) from None
    cfg = load_classification_config(args.config_file, opts)
    cfg = resolve_config(cfg, train=not args.eval_only)
    weights = cfg.MODEL.WEIGHTS
    resuming = args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    if weights and not resuming and not os.path.isfile(weights):
        raise ConfigError(f"MODEL.WEIGHTS: checkpoint file not found: {weights}")
    return cfg


def write_results(cfg, results, *, weights: str, iteration, eval_only: bool, backbone_file: str = "") -> str:
    record = {
        "eval_only": eval_only,
        "weights": weights,
        "backbone_checkpoint": backbone_file or None,
        "iteration": iteration,
        "datasets": [os.path.join(cfg.DATASETS.ROOT, s) for s in cfg.DATASETS.TEST],
        "results": results,
    }
    return write_results_file(cfg.OUTPUT_DIR, record)


def _export(cfg, model, path: str, iteration) -> str:
    with comm.fail_together():  # also the barrier: the file exists on return; a write error stops every rank
        if comm.is_main_process():
            export_backbone(
                model, path, classes=train_classes(cfg),
                extra={"backbone": cfg.MODEL.BACKBONE.NAME, "num_classes": int(cfg.MODEL.NUM_CLASSES),
                       "iteration": -1 if iteration is None else int(iteration)},
            )
    return path


def _print_results(results) -> None:
    for name, res in (results or {}).items():
        if isinstance(res, dict) and "top1" in res:
            print(f"{name}: top1 {res['top1']:.2f}%  top5 {res.get('top5', float('nan')):.2f}%", flush=True)
        elif isinstance(res, dict):
            for sub, r in res.items():
                if isinstance(r, dict) and "top1" in r:
                    print(f"{name} {sub}: top1 {r['top1']:.2f}%  top5 {r.get('top5', float('nan')):.2f}%", flush=True)


def evaluate(cfg, args):
    model = ClassificationTrainer.build_model(cfg)
    model.to(cfg.MODEL.DEVICE)
    weights, extra, _ = load_evaluation_weights(model, cfg, args.resume, ClassificationTrainer.build_model_info(cfg))
    check_weights_input_format(cfg, model.backbone.input_format, cfg.MODEL.WEIGHTS)
    results = ClassificationTrainer.test(cfg, model) if len(cfg.DATASETS.TEST) else {}
    _print_results(results)
    exported = _export(cfg, model, args.export_backbone, extra.get("iteration")) if args.export_backbone else ""
    path = write_results(cfg, results, weights=weights, iteration=extra.get("iteration"), eval_only=True,
                         backbone_file=exported)
    return path, exported


def train(cfg, args):
    trainer = ClassificationTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    check_weights_input_format(cfg, trainer.unwrapped_model.backbone.input_format, cfg.MODEL.WEIGHTS)
    results = trainer.train()
    if trainer.interrupted is not None:  # SIGTERM / Ctrl-C: a checkpoint was saved, the run is not finished
        raise Interrupted(trainer.interrupted, trainer.iter, trainer.checkpointer.get_checkpoint_file())
    _print_results(results)
    exported = _export(cfg, trainer.unwrapped_model, args.export_backbone or os.path.join(cfg.OUTPUT_DIR, BACKBONE_FILE),
                       trainer.iter)
    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    path = write_results(cfg, results, weights=final, iteration=trainer.iter, eval_only=False, backbone_file=exported)
    return path, exported


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = os.path.basename(sys.argv[0]) or "train_classifier.py"
    # argparse.REMAINDER hands a flag written after the KEY VALUE overrides to opts.
    if args.opts and "--export-backbone" in args.opts:
        i = args.opts.index("--export-backbone")
        if i + 1 >= len(args.opts):
            print(f"{prog}: error: --export-backbone needs a PATH", file=sys.stderr)
            return 2
        args.export_backbone = args.opts[i + 1]
        args.opts = args.opts[:i] + args.opts[i + 2:]
    comm.init_distributed_from_env()
    try:
        return _main(args, prog)
    finally:
        comm.destroy_process_group()


def _main(args, prog: str) -> int:
    code, cfg = setup_reporting_errors(prog, lambda: setup(args), args, input_errors=(ImageFolderError,))
    if cfg is None:
        return code
    code, done = run_reporting_errors(
        prog, lambda: evaluate(cfg, args) if args.eval_only else train(cfg, args), input_errors=(ImageFolderError,)
    )
    if done is None:  # failed (one line printed) or interrupted after a checkpoint
        return code
    path, exported = done
    backbone_line = [f"Backbone checkpoint (MODEL.BACKBONE.WEIGHTS): {os.path.abspath(exported)}"] if exported else []
    print_output_locations(cfg.OUTPUT_DIR, path, trained=not args.eval_only, extra=backbone_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
