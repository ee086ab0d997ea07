"""Export one deployable module to a format, load it back in its runtime, check parity.

    paths = export_module(module, example, "onnx", out_dir, "detector", output_names)
    runner = load_runtime("onnx", paths)
    result = check_export("detector", module, example, runner)   # CheckResult, ok / message
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, List, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .exporters import export_ncnn, export_onnx, export_torchscript
from .parity import compare_tensors, match_detections
from .runtime import NcnnModel, OnnxRuntimeModel, TorchScriptModel

__all__ = ["FORMATS", "CheckResult", "export_module", "load_runtime", "runtime_threads", "check_export"]

FORMATS = ("onnx", "torchscript", "ncnn")


@dataclass
class CheckResult:
    ok: bool
    message: str


def export_module(
    module: nn.Module, example: Tensor, fmt: str, output_dir: str, name: str, output_names: Sequence[str] = (),
    fp16: bool = False,
) -> List[str]:
    """Write ``module`` in ``fmt`` under ``output_dir``; returns the written file(s).
    ``fp16``: half-precision weights (ncnn only)."""
    if fmt == "onnx":
        return [export_onnx(module, example, os.path.join(output_dir, f"{name}.onnx"), output_names=output_names)]
    if fmt == "torchscript":
        return [export_torchscript(module, example, os.path.join(output_dir, f"{name}.ts.pt"))]
    if fmt == "ncnn":
        return list(export_ncnn(module, example, output_dir, name, fp16=fp16))
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def load_runtime(fmt: str, paths: Sequence[str], threads: int = 0, device: str = "cpu", fp16: bool = False) -> Callable:
    """A callable ``(*numpy inputs) -> [numpy outputs]`` for the exported files."""
    if fmt == "onnx":
        return OnnxRuntimeModel(paths[0], threads=threads, device=device)
    if fmt == "torchscript":
        return TorchScriptModel(paths[0], device=device)
    if fmt == "ncnn":
        return NcnnModel(paths[0], paths[1], threads=max(1, threads), fp16=fp16)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def runtime_threads(fmt: str, threads: int = 0) -> int:
    """The intra-op threads `load_runtime` (``threads``; 0 = the runtime's default) runs ``fmt`` with."""
    if threads > 0:
        return threads
    if fmt == "ncnn":
        return 1  # NcnnModel's default
    if fmt == "onnx":
        return os.cpu_count() or 1  # ONNX Runtime's default: one intra-op thread per core
    return torch.get_num_threads()


def check_export(
    part: str, module: nn.Module, example: Tensor, runner: Callable, *, rtol: float = 1e-3, atol: float = 1e-3
) -> CheckResult:
    """Run PyTorch and the exported model on ``example``: detections matched by IoU, label
    and score (``part == "detector"``), other outputs by ``allclose``."""
    with torch.no_grad():
        reference = module(example)
    reference = reference if isinstance(reference, (tuple, list)) else (reference,)
    exported = runner(example.detach().cpu().numpy())
    if part == "detector":
        match = match_detections(reference, exported, iou_thresh=0.9, score_tol=max(atol, 1e-3))
        note = ""
        if match.num_reference == 0:  # nothing compared: say so rather than a bare OK
            note = " (PyTorch found no detections on this input: lower MODEL.ROI_HEADS.SCORE_THRESH_TEST or pass a real image)"
        return CheckResult(match.ok, f"detections vs PyTorch: {match}{note}")
    ok, worst = compare_tensors(reference, exported, rtol=rtol, atol=atol)
    shapes = ", ".join("x".join(str(d) for d in np.shape(o)) for o in exported)
    verdict = "OK" if ok else "MISMATCH"
    return CheckResult(ok, f"{verdict}: {len(exported)} output(s) [{shapes}] allclose(rtol={rtol}, atol={atol}) "
                           f"to PyTorch, max |diff| {worst:.2e}")
