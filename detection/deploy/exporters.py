"""Export a traceable module (see `wrappers`) to ONNX, TorchScript or ncnn.

ONNX uses the legacy TorchScript-based exporter (``dynamo=False``, opset 17): the dynamo
exporter fails on torchvision's NMS in torch 2.14. ncnn goes through pnnx, which traces
the module and writes ``<name>.ncnn.param`` / ``<name>.ncnn.bin`` (the format the ncnn
runtime loads on ARM boards); pnnx handles convolutional graphs (backbones, dense
heads), not the detectors' NMS / RoIAlign.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from typing import Iterator, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["ExportError", "export_onnx", "export_torchscript", "export_ncnn", "ONNX_OPSET"]

logger = logging.getLogger(__name__)

ONNX_OPSET = 17


class ExportError(RuntimeError):
    """An export step failed; the message names the format and the cause."""


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """Send what native code prints on fd 1/2 (pnnx's pass log) to a temp file so tools
    keep a clean stdout; the text is logged at debug level."""
    with tempfile.TemporaryFile(mode="w+") as sink:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            logger.debug("native output:\n%s", sink.read()[-4000:])


def _inputs(example: Tensor | Sequence[Tensor]) -> Tuple[Tensor, ...]:
    return (example,) if isinstance(example, Tensor) else tuple(example)


def export_onnx(
    module: nn.Module,
    example: Tensor | Sequence[Tensor],
    path: str,
    input_names: Sequence[str] = ("image",),
    output_names: Sequence[str] = (),
    opset_version: int = ONNX_OPSET,
) -> str:
    """Trace ``module`` on ``example`` and write an ONNX file at ``path`` (fixed shapes)."""
    module.eval()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python ints: shapes are fixed on purpose
            torch.onnx.export(
                module, _inputs(example), path, dynamo=False, opset_version=opset_version,
                input_names=list(input_names), output_names=list(output_names) or None,
            )
    except Exception as err:  # the exporter raises many types; name the format and keep the cause
        raise ExportError(f"ONNX export failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    return path


def export_torchscript(module: nn.Module, example: Tensor | Sequence[Tensor], path: str) -> str:
    """Trace ``module`` with `torch.jit.trace` and save it (load with ``torch.jit.load``)."""
    module.eval()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, _inputs(example), check_trace=False)
        traced.save(path)
    except Exception as err:
        raise ExportError(f"TorchScript export failed: {type(err).__name__}: {err}") from err
    return path


def export_ncnn(
    module: nn.Module, example: Tensor | Sequence[Tensor], output_dir: str, name: str = "model", fp16: bool = False
) -> Tuple[str, str]:
    """Convert ``module`` with pnnx; returns the ``(param, bin)`` paths in ``output_dir``.

    Weights are stored in fp32 unless ``fp16`` (pnnx's own default is fp16, which costs
    about 1e-3 relative accuracy: half the file size for ARM deployment).

    ncnn blobs are named ``in0, in1, ...`` and ``out0, out1, ...`` in argument / output order.
    """
    try:
        import pnnx
    except ImportError as err:
        raise ExportError("ncnn export needs the pnnx package (pip install pnnx)") from err
    module.eval()
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="litedet_pnnx_") as work:
        traced_path = os.path.join(work, f"{name}.pt")
        try:
            with torch.no_grad(), warnings.catch_warnings(), _quiet_native_output():
                warnings.simplefilter("ignore")
                pnnx.export(module, traced_path, _inputs(example), fp16=fp16)
        except Exception as err:
            raise ExportError(f"ncnn (pnnx) export failed: {type(err).__name__}: {err}") from err
        outputs = []
        for ext in ("ncnn.param", "ncnn.bin"):
            src = os.path.join(work, f"{name}.{ext}")
            if not os.path.isfile(src):
                raise ExportError(f"ncnn (pnnx) export wrote no {name}.{ext}: the graph has ops pnnx cannot convert")
            dst = os.path.join(output_dir, f"{name}.{ext}")
            shutil.move(src, dst)
            outputs.append(dst)
    return outputs[0], outputs[1]
