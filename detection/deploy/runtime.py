"""Run exported models with their runtimes, numpy in / list of numpy arrays out.

The same wrappers serve the export check (tools/export.py) and the latency benchmark
(tools/benchmark.py), so what is timed is what was checked.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional

import numpy as np

__all__ = ["OnnxRuntimeModel", "NcnnModel", "TorchScriptModel", "ExportedDetector", "runtime_versions"]


class OnnxRuntimeModel:
    """An ONNX file in an onnxruntime session (CPU unless CUDA is asked for and present)."""

    def __init__(self, path: str, threads: int = 0, device: str = "cpu") -> None:
        import onnxruntime as ort

        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model {path} does not exist")
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, *inputs: np.ndarray) -> List[np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"model takes {len(self.input_names)} input(s) {self.input_names}, got {len(inputs)}")
        feed = {n: np.ascontiguousarray(x, dtype=np.float32) for n, x in zip(self.input_names, inputs)}
        return list(self.session.run(None, feed))


class NcnnModel:
    """An ncnn ``.param`` / ``.bin`` pair written by pnnx (blobs ``in0..``, ``out0..``).

    ncnn runs one image at a time: inputs are ``(1, C, H, W)`` or ``(C, H, W)`` arrays,
    outputs come back as ``(1, C, H, W)``.
    """

    def __init__(self, param: str, bin_path: Optional[str] = None, threads: int = 1, fp16: bool = False) -> None:
        import ncnn

        bin_path = bin_path or re.sub(r"\.param$", ".bin", param)
        for p in (param, bin_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"ncnn model file {p} does not exist")
        self._ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.num_threads = max(1, threads)
        self.net.opt.use_fp16_packed = fp16
        self.net.opt.use_fp16_storage = fp16
        self.net.opt.use_fp16_arithmetic = fp16
        self.net.opt.use_vulkan_compute = False
        if self.net.load_param(param) != 0 or self.net.load_model(bin_path) != 0:
            raise RuntimeError(f"ncnn cannot load {param} / {bin_path}")
        names = _blob_names(param)
        self.input_names = sorted((n for n in names if re.fullmatch(r"in\d+", n)), key=lambda n: int(n[2:]))
        self.output_names = sorted((n for n in names if re.fullmatch(r"out\d+", n)), key=lambda n: int(n[3:]))
        self.threads = max(1, threads)

    def __call__(self, *inputs: np.ndarray) -> List[np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"model takes {len(self.input_names)} input(s), got {len(inputs)}")
        with self.net.create_extractor() as ex:
            for name, x in zip(self.input_names, inputs):
                x = np.asarray(x, dtype=np.float32)
                if x.ndim == 4:
                    if x.shape[0] != 1:
                        raise ValueError(f"ncnn runs batch 1; got input shape {x.shape}")
                    x = x[0]
                ex.input(name, self._ncnn.Mat(np.ascontiguousarray(x)).clone())
            outs = []
            for name in self.output_names:
                ret, mat = ex.extract(name)
                if ret != 0:
                    raise RuntimeError(f"ncnn failed to compute blob {name} (code {ret})")
                outs.append(np.array(mat)[None])
        return outs


def _blob_names(param_path: str) -> List[str]:
    names: List[str] = []
    with open(param_path) as f:
        lines = f.read().splitlines()
    for line in lines[2:]:  # magic, then "layer_count blob_count"
        parts = line.split()
        if len(parts) < 4:
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        names.extend(parts[4 : 4 + n_in + n_out])
    return list(dict.fromkeys(names))


class TorchScriptModel:
    """A saved TorchScript module; tensors in and out are converted from/to numpy."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still the portable C++ format
            self.module = torch.jit.load(path, map_location=self.device).eval()

    def __call__(self, *inputs: np.ndarray) -> List[np.ndarray]:
        torch = self._torch
        with torch.no_grad():
            out = self.module(*(torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device) for x in inputs))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in out]


def runtime_versions() -> Dict[str, Optional[str]]:
    """Versions of the libraries a latency depends on (None where not installed)."""
    versions: Dict[str, Optional[str]] = {}
    for name in ("torch", "torchvision", "onnx", "onnxruntime", "ncnn", "numpy", "cv2"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "unknown"))
        except ImportError:
            versions[name] = None
    return versions


class ExportedDetector:
    """An exported whole detector used like `DefaultPredictor`: BGR image of any size in,
    ``{"boxes", "scores", "labels"}`` numpy arrays in that image's pixels out.

    The image is resized to the exported ``height x width`` (aspect ratio not kept, as
    at export) and the boxes are scaled back.

        det = ExportedDetector.from_export_dir("export/")        # reads export/detector.json
        out = det(cv2.imread("photo.jpg"))
    """

    def __init__(
        self, path: str, height: int, width: int, channel_order: str = "RGB",
        class_names: Optional[List[str]] = None, threads: int = 0, device: str = "cpu",
    ) -> None:
        if path.endswith(".onnx"):
            self.runner = OnnxRuntimeModel(path, threads=threads, device=device)
        else:
            self.runner = TorchScriptModel(path, device=device)
        self.height, self.width = int(height), int(width)
        self.channel_order = channel_order
        self.class_names = class_names

    @classmethod
    def from_export_dir(cls, export_dir: str, threads: int = 0, device: str = "cpu") -> "ExportedDetector":
        import json

        info_path = os.path.join(export_dir, "detector.json")
        if not os.path.isfile(info_path):
            raise FileNotFoundError(f"{info_path} does not exist (write it with tools/export.py)")
        with open(info_path) as f:
            info = json.load(f)
        _, _, height, width = info["input"]["shape"]
        return cls(os.path.join(export_dir, info["files"][0]), height, width, info["input"]["channel_order"],
                   info.get("class_names"), threads=threads, device=device)

    def __call__(self, image_bgr: np.ndarray) -> Dict[str, np.ndarray]:
        from .wrappers import detector_input

        h, w = image_bgr.shape[:2]
        x = detector_input(image_bgr, self.height, self.width, self.channel_order).numpy()
        boxes, scores, labels = self.runner(x)
        scale = np.array([w / self.width, h / self.height] * 2, dtype=np.float32)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        return {"boxes": boxes, "scores": np.asarray(scores), "labels": np.asarray(labels).astype(np.int64)}
