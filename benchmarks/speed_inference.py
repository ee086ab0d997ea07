"""Inference speed of litedet's fast path against torchvision, measured interleaved in one process.

Target 1: ShuffleNet v2 1.0x classifier, 224x224, batch 1
  1a eager:      ours (``model.fuse()``) <= 0.80 x torchvision ``shufflenet_v2_x1_0`` eager
  1b deployment: ours exported to ONNX Runtime <= 1.0 x torchvision's exported the same way
                 (``torch.onnx.export(dynamo=False, opset 17)``, 1 intra-op thread)
Target 2: Light-Head R-CNN ShuffleNet v2 1.0x (configs/COCO-LightHead), 800x1200, batch 1
  our best path <= 0.25 x torchvision ``fasterrcnn_mobilenet_v3_large_fpn`` eager
  (weights=None, 1000 proposals, transform sizes set so it runs at 800x1200), and our
  achieved GFLOP/s >= 50% of a single-thread fp32 GEMM measured in the same run.
  Paths timed in the same rounds: fused eager (``model.fuse()``: Winograd RPN conv, box
  deltas for scored pairs only) with its dense part (backbone, neck, RPN head) compiled by
  ``torch.compile`` (inductor, freezing) or not, the fused path with every box delta (the
  backbone-side ``fuse_model`` only), unfused eager, and the whole fused detector exported
  to ONNX Runtime; the best one is the target line. Random weights score no (RoI, class)
  pair above the threshold, so the same best path is also timed with a classifier that
  scores 19 classes of every RoI above it (the most the 0.05 threshold allows): the head's
  work for any weights.
Also: position-sensitive RoIAlign, our regrouped roi_align form vs torchvision's op.

Every round runs each contestant once, in turn (ours, reference, ...), and the medians over
rounds are compared, so slow phases of a shared machine hit all contestants alike. Random
weights, eval mode, ``torch.inference_mode``. The header records the machine and the load
average; a load average above the thread count means the machine was shared.

    .venv/bin/python benchmarks/speed_inference.py                # both targets
    .venv/bin/python benchmarks/speed_inference.py --target 1 --rounds 50
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List

import torch

import backbones
from backbones.fast import fuse_model
from detection.config.config import load_config
from detection.deploy.benchmark import cpu_model
from detection.modeling.fast_heads import class_box_deltas
from detection.modeling.meta_arch import build_model
from detection.modeling.poolers import ps_roi_align_via_roi_align

ROOT = Path(__file__).resolve().parents[1]

GEMM_SIZES = (1024, 2048)
#: classes per RoI above the 0.05 score threshold in the worst-case line (the most possible)
WORST_CASE_CLASSES = 19
LIGHTHEAD_CONFIG = ROOT / "configs/COCO-LightHead/lighthead_shufflenet_v2_1.0x.yaml"


def interleaved(contestants: Dict[str, Callable[[], object]], rounds: int, warmup: int) -> Dict[str, float]:
    """Median seconds per call of each contestant, calls alternating round by round."""
    for _ in range(warmup):
        for fn in contestants.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, fn in contestants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def line(what: str, ours: float, ref: float, target: str, unit: str = "ms", scale: float = 1e3) -> None:
    ratio = ours / ref
    print(f"{what}: ours {ours * scale:.2f} {unit}, reference {ref * scale:.2f} {unit}, ratio {ratio:.3f} ({target})")


def ort_session(model: torch.nn.Module, example: torch.Tensor, path: Path):
    import onnxruntime as ort

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # dynamo=False is what we want here
    torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17, input_names=["x"], output_names=["y"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------- target 1
def target1(rounds: int, onnx: bool) -> None:
    import torchvision

    print("\n== Target 1: ShuffleNet v2 1.0x classification, 224x224, batch 1 ==")
    torch.manual_seed(0)
    reference = torchvision.models.shufflenet_v2_x1_0(weights=None).eval()
    ours = backbones.build_classifier("shufflenet_v2_1.0x").eval()
    fused = ours.fuse()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        err = float((fused(x) - ours(x)).abs().max())
        t = interleaved(
            {
                "ours fused": lambda: fused(x),
                "reference": lambda: reference(x),
                "ours unfused": lambda: ours(x),
            },
            rounds,
            warmup=5,
        )
    print(f"fused vs unfused max |diff| of logits: {err:.2e}")
    line("1a eager, ours fused (BN folded, fused units, channels-last)", t["ours fused"], t["reference"], "target <= 0.80")
    line("   eager, ours unfused (for information)", t["ours unfused"], t["reference"], "information")
    if not onnx:
        return
    try:
        import onnxruntime as ort
    except ImportError:
        print("1b skipped: onnxruntime is not installed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # NCHW fused form for export: ONNX convs are NCHW; ORT folds BN itself for both.
        ours_onnx = ort_session(ours.fuse(channels_last=False), x, Path(tmp) / "ours.onnx")
        ref_onnx = ort_session(reference, x, Path(tmp) / "reference.onnx")
        feed = {"x": x.numpy()}
        out_ours = ours_onnx.run(None, feed)[0]
        err = float(abs(out_ours - ours(x).detach().numpy()).max())
        t = interleaved(
            {"ours": lambda: ours_onnx.run(None, feed), "reference": lambda: ref_onnx.run(None, feed)},
            rounds,
            warmup=5,
        )
    print(f"ONNX Runtime {ort.__version__}, 1 intra-op thread; ours ORT vs PyTorch max |diff|: {err:.2e}")
    line("1b deployment (both ONNX Runtime)", t["ours"], t["reference"], "target <= 1.00")


# ---------------------------------------------------------------------------- target 2
def ort_detector(model: torch.nn.Module, image: torch.Tensor, path: Path):
    """The whole fused detector (NCHW form) exported to ONNX and run by ONNX Runtime
    (default graph optimizations = ORT_ENABLE_ALL, 1 intra-op thread, sequential)."""
    from detection.deploy.exporters import export_onnx
    from detection.deploy.runtime import OnnxRuntimeModel
    from detection.deploy.wrappers import TracingDetector

    export_onnx(TracingDetector(model.fuse(channels_last=False)), image[None], str(path), output_names=["boxes", "scores", "labels"])
    return OnnxRuntimeModel(str(path), threads=torch.get_num_threads())


def compiled_dense(fused: torch.nn.Module) -> torch.nn.Module:
    """A copy of the fused detector whose dense part (backbone, neck, RPN head) is compiled
    by inductor with freezing (weights folded in as constants); anchors, NMS, RoI pooling
    and the heads stay eager. Compiles on the first call."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    model = copy.deepcopy(fused)
    model.backbone = torch.compile(model.backbone)
    model.neck = torch.compile(model.neck)
    model.rpn.head = torch.compile(model.rpn.head)
    return model


def head_inputs(model: torch.nn.Module, image: torch.Tensor):
    """The proposals ``(R, 4)`` that ``model`` (eval mode) makes for one 0-255 ``image``
    and the box head's features ``(R, D)`` of those RoIs."""
    batch = model.transform([image])
    features = model.extract_features(batch.tensors)
    proposals = model.rpn(batch, features)[0][0]
    heads = model.roi_heads
    return proposals, heads.box_head(heads.box_roi_pool(features, [proposals], batch.image_sizes))


def with_scored_pairs(model: torch.nn.Module, classes_per_roi: int, box_features: torch.Tensor) -> torch.nn.Module:
    """``model`` (backbone, neck and RPN shared, compiled or not) with a classifier that
    scores exactly ``classes_per_roi`` classes of every RoI above the score threshold: the
    head's work for that many (RoI, class) pairs (box deltas, decoding, NMS per class over
    every RoI), whatever the features. The biases give each chosen class probability
    ``threshold + 0.002`` and the background the rest; small random weights (logits moved by
    at most 0.004 on ``box_features``, the RoI features of the benchmark image) make the
    scores differ between RoIs, so NMS visits them in a data-dependent order. With
    threshold 0.05 at most 19 classes of an RoI can pass: ``classes_per_roi=19`` is the
    most head work any weights can cause."""
    heads = model.roi_heads
    thresh = heads.score_thresh
    num_classes = heads.box_predictor.cls_score.out_features - 1
    p = thresh + 0.002
    if not 1 <= classes_per_roi <= num_classes or classes_per_roi * p >= 1:
        raise ValueError(f"{classes_per_roi} classes cannot all score above {thresh}")
    loaded = copy.copy(model)  # shallow: the dense part (compiled or not) is shared
    loaded._modules = dict(model._modules)
    loaded.roi_heads = copy.deepcopy(heads)
    cls_score = loaded.roi_heads.box_predictor.cls_score
    logits = torch.full((num_classes + 1,), -30.0)
    logits[0] = math.log((1 - classes_per_roi * p) / p)  # background
    logits[1 : classes_per_roi + 1] = 0.0
    x = box_features.flatten(1)
    weight = torch.randn(cls_score.weight.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cls_score.weight.copy_(weight * (0.004 / float((x @ weight.t()).abs().max())))
        cls_score.bias.copy_(logits)
        scores = torch.softmax(cls_score(x), -1)[:, 1:]
    pairs = int((scores > thresh).sum())
    if pairs != classes_per_roi * len(x):
        raise RuntimeError(f"{pairs} pairs above the threshold, expected {classes_per_roi * len(x)}")
    return loaded


def target2(rounds: int, onnx: bool, compile_dense: bool) -> None:
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.ops import ps_roi_align

    print("\n== Target 2: Light-Head R-CNN ShuffleNet v2 1.0x, 800x1200, batch 1 ==")
    torch.manual_seed(0)
    # At torchvision's score threshold, the reference's: the COCO protocol's 0.0 (docs/protocols.md)
    # puts every (RoI, class) pair through decoding and NMS.
    cfg = load_config(str(LIGHTHEAD_CONFIG), ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"])
    ours = build_model(cfg).eval()
    fused = ours.fuse()
    fused_all_deltas = fuse_model(ours)  # the backbone-side fast paths only: every box delta computed
    reference = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, rpn_post_nms_top_n_test=1000, min_size=800, max_size=1200
    ).eval()
    image = torch.rand(3, 800, 1200)
    ours_input = [{"image": image * 255, "height": 800, "width": 1200}]
    with torch.inference_mode():
        ref_batch = reference.transform([image])[0]
        ours_batch = fused.transform([ours_input[0]["image"]])
        print(
            f"config {LIGHTHEAD_CONFIG.relative_to(ROOT)}: RPN pre-NMS {cfg.MODEL.RPN.PRE_NMS_TOPK_TEST}, "
            f"post-NMS (proposals to the head) {cfg.MODEL.RPN.POST_NMS_TOPK_TEST}; reference: pre-NMS "
            f"{reference.rpn._pre_nms_top_n['testing']}, proposals {reference.rpn._post_nms_top_n['testing']}"
        )
        print(
            f"network input: ours {tuple(ours_batch.tensors.shape)} (image {ours_batch.image_sizes[0]}), "
            f"reference {tuple(ref_batch.tensors.shape)} (image {ref_batch.image_sizes[0]})"
        )
        a, b = ours(ours_input)[0], fused(ours_input)[0]
        same = len(a["boxes"]) == len(b["boxes"]) and (len(a["boxes"]) == 0 or torch.allclose(a["boxes"], b["boxes"], atol=1e-3))
        props, box_features = head_inputs(ours, ours_input[0]["image"])
        heads = ours.roi_heads
        class_scores = torch.softmax(heads.box_predictor.cls_score(box_features), -1)[:, 1:]
        pairs = int((class_scores > heads.score_thresh).sum())
        print(
            f"fused detections equal unfused: {same} ({len(a['boxes'])} detections); proposals reaching the head: "
            f"{len(props)}; (RoI, class) pairs above the score threshold {heads.score_thresh}: {pairs} of "
            f"{class_scores.numel()} (random weights; the fused head computes box deltas for these only)"
        )
        with FlopCounterMode(display=False) as counter:
            fused(ours_input)
        flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            fused_all_deltas(ours_input)
        flops_all_deltas = counter.get_total_flops()
        contestants = {}
        if compile_dense:
            start = time.perf_counter()
            compiled = compiled_dense(fused)
            out = compiled(ours_input)[0]
            seconds = time.perf_counter() - start
            f_eager = fused.extract_features(ours_batch.tensors)
            f_comp = compiled.extract_features(ours_batch.tensors)
            err = max(float((f_comp[k] - f_eager[k]).abs().max() / f_eager[k].abs().max()) for k in f_eager)
            print(
                f"torch.compile (inductor, freezing) of backbone + neck + RPN head: {seconds:.0f} s to compile "
                f"(first call); max relative |diff| of its feature maps vs eager fused {err:.1e}; detections "
                f"equal: {len(out['boxes']) == len(b['boxes'])}"
            )
            contestants["ours fused + compiled dense part"] = lambda: compiled(ours_input)
        best_model = compiled if compile_dense else fused
        worst = with_scored_pairs(best_model, WORST_CASE_CLASSES, box_features)
        worst_out = worst(ours_input)[0]
        worst_name = f"{'ours fused + compiled dense part' if compile_dense else 'ours fused'}, {WORST_CASE_CLASSES} classes/RoI scored"
        print(
            f"worst case for any weights: {WORST_CASE_CLASSES} classes of each of the {len(props)} RoIs above the "
            f"threshold {heads.score_thresh} (at most 19 can be) = {WORST_CASE_CLASSES * len(props)} (RoI, class) "
            f"pairs decoded and put through NMS per class; {len(worst_out['boxes'])} detections kept"
        )
        contestants[worst_name] = lambda: worst(ours_input)
        contestants = {
            **contestants,
            "ours fused": lambda: fused(ours_input),
            "reference": lambda: reference([image]),
            "ours fused, all box deltas": lambda: fused_all_deltas(ours_input),
            "ours unfused": lambda: ours(ours_input),
        }
        tmp = tempfile.TemporaryDirectory()
        if onnx:
            try:
                session = ort_detector(ours, ours_input[0]["image"], Path(tmp.name) / "detector.onnx")
                feed = ours_input[0]["image"][None].numpy()
                contestants["ours ONNX Runtime (whole detector)"] = lambda: session(feed)
            except ImportError:
                print("ONNX Runtime path skipped: onnxruntime is not installed")
        # the machine's practical peak: square fp32 GEMMs, timed in the same rounds
        mats = {n: (torch.randn(n, n), torch.randn(n, n)) for n in GEMM_SIZES}
        t = interleaved(
            {**contestants, **{f"gemm{n}": (lambda ab=ab: torch.mm(*ab)) for n, ab in mats.items()}},
            rounds,
            warmup=1,
        )
        tmp.cleanup()
        peak = max(2 * n**3 / t[f"gemm{n}"] for n in GEMM_SIZES)
    print("paths tried (median ms per image, same rounds):")
    for name in contestants:
        print(f"   {name:48s} {t[name] * 1e3:8.2f} ms   ratio to reference {t[name] / t['reference']:.3f}")
    ours_paths = [n for n in contestants if n not in ("reference", worst_name)]
    best = min(ours_paths, key=lambda n: t[n])
    line(f"2  best path ({best}) vs fasterrcnn_mobilenet_v3_large_fpn eager", t[best], t["reference"], "target <= 0.25")
    line(
        f"2  {worst_name.split(',')[0]}, worst case for any weights ({WORST_CASE_CLASSES * len(props)} scored pairs)",
        t[worst_name],
        t["reference"],
        "target <= 0.25",
    )
    # multiply-adds each path executes (the compiled path runs the same kernels as eager)
    path_flops = {
        "ours fused + compiled dense part": flops,
        "ours fused": flops,
        "ours fused, all box deltas": flops_all_deltas,
    }
    rated = best if best in path_flops else "ours fused"
    achieved = path_flops[rated] / t[rated]
    print(
        f"2  GFLOP/s: {rated} {achieved / 1e9:.1f} ({path_flops[rated] / 2e9:.2f} G multiply-adds executed, counted "
        f"by torch.utils.flop_counter: convs + GEMMs; {flops_all_deltas / 2e9:.2f} G with all box deltas), fp32 "
        f"GEMM peak {peak / 1e9:.1f} (torch.mm {'/'.join(map(str, GEMM_SIZES))} square, "
        f"{torch.get_num_threads()} thread(s)), ratio {achieved / peak:.3f} (target >= 0.50); "
        f"all-box-deltas path {flops_all_deltas / t['ours fused, all box deltas'] / peak:.3f}"
    )
    box_delta_costs(fused, rounds)

    # position-sensitive RoIAlign on the thin map, the proposals of the run above
    k = cfg.MODEL.LIGHT_HEAD.POOLER_RESOLUTION
    thin = torch.randn(1, cfg.MODEL.LIGHT_HEAD.CHANNELS_PER_BIN * k * k, 25, 38)
    rois = torch.cat([torch.zeros(len(props), 1), props], dim=1)
    scale, ratio = 1 / 32, 2
    with torch.inference_mode():
        err = float((ps_roi_align_via_roi_align(thin, rois, k, scale, ratio) - ps_roi_align(thin, rois, k, scale, ratio)).abs().max())
        t = interleaved(
            {
                "ours": lambda: ps_roi_align_via_roi_align(thin, rois, k, scale, ratio),
                "reference": lambda: ps_roi_align(thin, rois, k, scale, ratio),
            },
            max(rounds, 20),
            warmup=2,
        )
    line(
        f"PS RoIAlign {len(rois)} RoIs on {tuple(thin.shape)}: regrouped roi_align vs torchvision ps_roi_align",
        t["ours"],
        t["reference"],
        f"information; max |diff| {err:.1e}",
    )


def box_delta_costs(fused: torch.nn.Module, rounds: int) -> None:
    """What the scored-pair box deltas cost when a trained model lets more pairs through
    the score threshold than random weights do (none): P pairs of 1000 RoIs vs the full
    GEMM."""
    predictor = fused.roi_heads.box_predictor
    num_rois, width = 1000, predictor.bbox_pred.in_features
    num_classes = predictor.cls_score.out_features
    x = torch.rand(num_rois, width)
    g = torch.Generator().manual_seed(0)
    cases = {}
    every = torch.arange(num_rois).repeat_interleave(WORST_CASE_CLASSES)
    worst = (every, torch.arange(1, WORST_CASE_CLASSES + 1).repeat(num_rois))
    for pairs in (500, 5000, WORST_CASE_CLASSES * num_rois):
        if pairs == len(every):
            rows, classes = worst
            name = f"{pairs} pairs ({WORST_CASE_CLASSES} classes x every RoI)"
        else:
            rows = torch.randint(0, num_rois, (pairs,), generator=g).sort().values
            classes = torch.randint(1, num_classes, (pairs,), generator=g)
            name = f"{pairs} random pairs"
        cases[name] = lambda r=rows, c=classes: class_box_deltas(predictor.bbox_pred, x, r, c)
    cases["all deltas (one GEMM)"] = lambda: predictor.bbox_pred(x)
    with torch.inference_mode():
        t = interleaved(cases, max(rounds, 10), warmup=2)
    print(
        "   box deltas of 1000 RoIs (information): "
        + ", ".join(f"{name} {sec * 1e3:.2f} ms" for name, sec in t.items())
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["1", "2", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 50 for target 1, 15 for target 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch (and ONNX Runtime) intra-op threads")
    parser.add_argument(
        "--no-compile", action="store_true", help="skip target 2's torch.compile path (compiling takes 20-90 s)"
    )
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime paths (target 1b, target 2's whole-detector export)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 0:
        parser.error("--threads must be >= 1 and --rounds >= 0")
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    print("== litedet inference speed (benchmarks/speed_inference.py) ==")
    print(f"date (UTC): {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; torch threads {torch.get_num_threads()}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {__import__('torchvision').__version__}")
    print(f"load average at start: {load_start[0]:.2f} (1 min)")
    if args.target in ("1", "all"):
        target1(args.rounds or 50, onnx=not args.no_onnx)
    if args.target in ("2", "all"):
        target2(args.rounds or 15, onnx=not args.no_onnx, compile_dense=not args.no_compile)
    load_end = os.getloadavg()
    shared = max(load_start[0], load_end[0]) > args.threads + 0.5
    print(
        f"\nload average at end: {load_end[0]:.2f} (1 min) -> machine "
        + ("SHARED during the run (other processes competed; ratios are interleaved, absolute times noisy)" if shared else "quiet")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
