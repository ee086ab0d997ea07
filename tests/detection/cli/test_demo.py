"""tools/demo.py writes annotated images and reports config errors in one line with exit 2;
DefaultPredictor on the demo's checkpoint."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from detection.cli import demo
from helpers import QUICKSTART_CONFIG, REPO_ROOT as ROOT

pytest.importorskip("detection.modeling")

CONFIG = QUICKSTART_CONFIG
SMALL = ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "200"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A (randomly initialised) detector checkpoint for the quickstart config."""
    from detection.checkpoint import DetectionCheckpointer
    from detection.config import load_config
    from detection.modeling import build_model

    cfg = load_config(CONFIG, SMALL)
    out = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(build_model(cfg), str(out)).save("model_final", iteration=0)
    return str(out / "model_final.pth")


def test_demo_writes_annotated_image(tmp_path, weights):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 150, 3), dtype=np.uint8)
    cv2.rectangle(img, (30, 30), (90, 100), (255, 255, 255), -1)
    src = tmp_path / "in" / "one.jpg"
    src.parent.mkdir()
    cv2.imwrite(str(src), img)
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--config-file", CONFIG,
         "--input", str(tmp_path / "in" / "*.jpg"), "--output", str(out), "--confidence-threshold", "0.0",
         *SMALL, "MODEL.WEIGHTS", weights],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "fps" in res.stdout and str(out) in res.stdout
    written = cv2.imread(str(out / "one.jpg"))
    assert written is not None and written.shape == img.shape


def test_demo_config_error_exit_2(tmp_path, capsys):
    rc = demo.main(["--config-file", CONFIG, "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                    "MODEL.BOGUS", "1"])
    assert rc == 2 and "MODEL.BOGUS" in capsys.readouterr().err


def test_default_predictor_returns_boxes_in_original_coordinates(weights):
    from detection.config import load_config
    from detection.engine import DefaultPredictor

    cfg = load_config(CONFIG, ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "INPUT.MIN_SIZE_TEST", "256",
                               "INPUT.MAX_SIZE_TEST", "400", "MODEL.WEIGHTS", weights,
                               "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    predictor = DefaultPredictor(cfg)
    assert predictor.class_names == ["circle", "square", "triangle", "star", "cross"]
    img = np.random.default_rng(1).integers(0, 255, (90, 130, 3), dtype=np.uint8)
    inp = predictor.preprocess(img)
    assert tuple(inp["image"].shape) == (3, 256, 370) and (inp["height"], inp["width"]) == (90, 130)
    out = predictor(img)
    assert set(out) >= {"boxes", "scores", "labels"} and out["boxes"].device.type == "cpu"
    if len(out["boxes"]):
        assert float(out["boxes"][:, 0::2].max()) <= 130 and float(out["boxes"][:, 1::2].max()) <= 90
    # RGB input gives the same result as the equivalent BGR input
    same = predictor(np.ascontiguousarray(img[:, :, ::-1]), format="RGB")
    assert torch_equal(out["boxes"], same["boxes"])


def torch_equal(a, b):
    import torch

    return a.shape == b.shape and torch.allclose(a, b)


@pytest.mark.parametrize("tool", ["demo", "export"])
def test_unreadable_test_set_annotations_are_one_line_exit_2(tmp_path, capsys, tool):
    # the start-up reads a REGISTER_COCO test set for its class names
    from detection.cli import export

    (tmp_path / "ann.json").write_text("{ not json")
    reg = ["DATASETS.REGISTER_COCO", f"[['bad_{tmp_path.name}', '{tmp_path / 'ann.json'}', '{tmp_path}']]",
           "DATASETS.TEST", f"('bad_{tmp_path.name}',)"]
    if tool == "demo":
        rc = demo.main(["--config-file", CONFIG, "--input", str(tmp_path), "--output", str(tmp_path / "o"), *reg])
    else:
        rc = export.main(["--config-file", CONFIG, "--format", "onnx", "--output", str(tmp_path / "o"), *reg])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"data error: {tmp_path / 'ann.json'}:1:3: invalid JSON" in err and "\n" not in err, err


def test_default_predictor_refuses_weights_of_another_architecture(weights):
    from detection.checkpoint import CheckpointError
    from detection.config import load_config
    from detection.engine import DefaultPredictor

    # the fixture's checkpoint records no architecture: judged by the tensors it fills
    cfg = load_config(CONFIG, ["MODEL.BACKBONE.NAME", "mobilenet_v2_0.5x", "MODEL.BACKBONE.HEAD_FEATURE", "",
                               "MODEL.WEIGHTS", weights])
    with pytest.raises(CheckpointError, match=rf"^{weights} does not fit this model \(its architecture is not recorded; "
                                              r"this config builds LightHeadRCNN \+ mobilenet_v2_0.5x\): only \d+ of"):
        DefaultPredictor(cfg)


@pytest.mark.parametrize("flag", ["--max-image-pixels", "--max-examples", "--workers"])
def test_check_dataset_counts_are_refused_below_zero_by_the_parser(tmp_path, capsys, flag):
    from detection.cli import check_dataset

    with pytest.raises(SystemExit) as stop:
        check_dataset.main(["--coco", str(tmp_path / "a.json"), "--images", str(tmp_path), flag, "-1"])
    assert stop.value.code == 2 and f"argument {flag}: must be >= 0, got '-1'" in capsys.readouterr().err
