"""Exports run in their runtimes and match PyTorch: ONNX detectors (Light-Head and
Faster R-CNN, tiny), ncnn and TorchScript backbones, the dense part in ncnn."""
import os

import cv2
import numpy as np
import pytest
import torch

from detection.config import load_config
from detection.deploy import (
    ExportedDetector, check_export, deployable, example_tensor, export_module, load_runtime, match_detections, sample_image,
)
from detection.modeling import build_model
from helpers import REPO_ROOT as ROOT

CONFIGS = {
    "LightHeadRCNN": os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml"),
    "FasterRCNN": os.path.join(ROOT, "configs", "Misc", "fasterrcnn_shufflenet_v2_0.5x.yaml"),
}
TINY = ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "MODEL.RPN.PRE_NMS_TOPK_TEST", "200",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "20", "MODEL.LIGHT_HEAD.FC_DIM", "64", "TEST.DETECTIONS_PER_IMAGE", "30",
        "MODEL.ROI_HEADS.NUM_CLASSES", "5", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.02"]
H, W = 128, 160


def tiny_model(arch):
    cfg = load_config(CONFIGS[arch], TINY)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    # Default inits (std 0.01 heads, identity BN statistics) give vanishing activations and
    # near-equal scores, so top-k choices would hinge on float rounding; He-initialised
    # weights keep activations at scale, so the comparison tests the graph, not tie-breaking.
    # The output layers get a tenth of that: on a textured image full He scale saturates the
    # scores and throws the boxes out of the image, leaving nothing to compare.
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight)
            if name.rsplit(".", 1)[-1] in ("cls_logits", "bbox_pred", "cls_score"):
                m.weight.data.mul_(0.1)
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, std=0.1)
    return cfg, model


@pytest.mark.parametrize("arch", ["LightHeadRCNN", "FasterRCNN"])
def test_onnx_detector_matches_pytorch(arch, tmp_path):
    cfg, model = tiny_model(arch)
    module, names = deployable(model, "detector")
    example = example_tensor(sample_image(H, W), H, W, cfg.INPUT.FORMAT)
    paths = export_module(module, example, "onnx", str(tmp_path), "detector", names)
    runner = load_runtime("onnx", paths, threads=1)
    result = check_export("detector", module, example, runner)
    assert result.ok, result.message
    # the same graph on a different image (nothing is baked in from the traced one)
    other = example_tensor(sample_image(H, W, seed=3), H, W, cfg.INPUT.FORMAT)
    reference = module(other)
    assert len(reference[0]) >= 3  # enough detections for the comparison to mean something
    match = match_detections(reference, runner(other.numpy()))
    assert match.ok and match.num_matched >= len(reference[0]) - 1, str(match)
    # and it is the model's own output: TracingDetector == model(list of dicts) on the same tensor
    direct = model([{"image": other[0]}])[0]
    assert match_detections(reference, (direct["boxes"], direct["scores"], direct["labels"])).ok

    # ExportedDetector: any-size BGR image in, boxes in that image's pixels out
    photo = cv2.resize(sample_image(H, W, seed=3), (2 * W, 3 * H // 2))
    deployed = ExportedDetector(paths[0], H, W, cfg.INPUT.FORMAT, threads=1)(photo)
    ref = module(example_tensor(photo, H, W, cfg.INPUT.FORMAT))
    scaled = ref[0] * torch.tensor([2.0, 1.5, 2.0, 1.5])
    assert match_detections((scaled, ref[1], ref[2]), (deployed["boxes"], deployed["scores"], deployed["labels"])).ok
    assert deployed["boxes"][:, 2].max() <= 2 * W and deployed["boxes"][:, 3].max() <= 3 * H // 2


@pytest.mark.parametrize("fmt,part", [("ncnn", "backbone"), ("torchscript", "dense")])
def test_convolutional_parts_match_pytorch(fmt, part, tmp_path):
    pytest.importorskip("pnnx" if fmt == "ncnn" else "torch")
    cfg, model = tiny_model("LightHeadRCNN")
    module, names = deployable(model, part)
    example = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(1))
    paths = export_module(module, example, fmt, str(tmp_path), part, names)
    runner = load_runtime(fmt, paths, threads=1)
    result = check_export(part, module, example, runner, rtol=1e-3, atol=1e-3)
    assert result.ok, result.message
    outputs = runner(example.numpy())
    assert len(outputs) == len(names)
    if part == "backbone":
        assert outputs[0].shape == (1, model.backbone.output_shape()[names[0]].channels, H // 16, W // 16)
    with torch.no_grad():
        changed = module(example * 2 + 1)[0].numpy()
    assert not np.allclose(changed, outputs[0], atol=1e-3)  # the comparison can fail


def test_backbone_part_takes_the_detectors_0_255_input(tmp_path):
    # export.py records every part's input as "0-255, not normalised": the exported
    # backbone must compute the features the detector computes from that image.
    cfg, model = tiny_model("LightHeadRCNN")
    module, names = deployable(model, "backbone")
    image = example_tensor(sample_image(H, W), H, W, cfg.INPUT.FORMAT)
    with torch.no_grad():
        expected = model.extract_features(model.transform([image[0]]).tensors)
        features = module(image)
    assert len(features) == len(names)
    for name, got in zip(names, features):
        torch.testing.assert_close(got, expected[name])
    paths = export_module(module, image, "torchscript", str(tmp_path), "backbone", names)
    exported = load_runtime("torchscript", paths)(image.numpy())
    np.testing.assert_allclose(exported[0], expected[names[0]].numpy(), rtol=1e-4, atol=1e-4)


def test_exported_detector_refuses_a_batch(tmp_path):
    # the graph runs one image; a batch of two must fail, not return the first image's detections
    cfg, model = tiny_model("FasterRCNN")
    module, names = deployable(model, "detector")
    image = example_tensor(sample_image(H, W), H, W, cfg.INPUT.FORMAT)
    batch = torch.cat([image, image.flip(-1)])
    with pytest.raises(ValueError, match=r"one image \(1, 3, H, W\), got shape \(2, 3, 128, 160\)"):
        module(batch)
    paths = export_module(module, image, "torchscript", str(tmp_path), "detector", names)
    runner = load_runtime("torchscript", paths)
    assert len(runner(image.numpy())) == 3
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        runner(batch.numpy())
