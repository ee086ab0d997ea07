"""Deployment: export (ONNX, TorchScript, ncnn), runtime wrappers and parity checks.

    from detection.deploy import TracingDetector, export_onnx, OnnxRuntimeModel, match_detections
    wrapper = TracingDetector(model)                 # fixed-size image tensor -> boxes, scores, labels
    export_onnx(wrapper, image, "model.onnx")
    boxes, scores, labels = OnnxRuntimeModel("model.onnx")(image.numpy())

Used by tools/export.py (export + check) and tools/benchmark.py (timing each backend).
"""
from .builders import (
    PARTS,
    DenseDetector,
    default_input_size,
    deployable,
    example_tensor,
    fuse_for_deploy,
    input_size,
    load_detector,
    load_trained_detector,
    parse_size,
    sample_image,
)
from .exporters import ExportError, export_ncnn, export_onnx, export_torchscript
from .pipeline import FORMATS, CheckResult, check_export, export_module, load_runtime, runtime_threads
from .parity import DetectionMatch, compare_tensors, match_detections
from .runtime import ExportedDetector, NcnnModel, OnnxRuntimeModel, TorchScriptModel, runtime_versions
from .wrappers import BackboneFeatures, TracingDetector, detector_input

__all__ = [
    "FORMATS",
    "CheckResult",
    "check_export",
    "export_module",
    "load_runtime",
    "runtime_threads",
    "PARTS",
    "DenseDetector",
    "default_input_size",
    "deployable",
    "example_tensor",
    "fuse_for_deploy",
    "input_size",
    "load_detector",
    "load_trained_detector",
    "parse_size",
    "sample_image",
    "ExportError",
    "export_onnx",
    "export_torchscript",
    "export_ncnn",
    "DetectionMatch",
    "match_detections",
    "compare_tensors",
    "ExportedDetector",
    "OnnxRuntimeModel",
    "NcnnModel",
    "TorchScriptModel",
    "runtime_versions",
    "TracingDetector",
    "BackboneFeatures",
    "detector_input",
]
