"""tools/demo.py on videos (frames, fps, size, per-frame JSON), mixed inputs, vtest.avi,
and its one-line errors."""
import json
import os

import cv2
import numpy as np
import pytest

from detection.cli import demo
from detection.cli.common import REPO_ROOT as ROOT

pytest.importorskip("detection.modeling")

CONFIG = os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml")
SMALL = ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "200",
         "MODEL.RPN.POST_NMS_TOPK_TEST", "30"]
VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from detection.checkpoint import DetectionCheckpointer
    from detection.config import load_config
    from detection.modeling import build_model

    out = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(build_model(load_config(CONFIG, SMALL)), str(out)).save("model_final", iteration=0)
    return str(out / "model_final.pth")


def write_video(path, frames=6, fps=12.0, size=(96, 72)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(frames):
        img = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        cv2.rectangle(img, (5 + 5 * i, 10), (40 + 5 * i, 50), (255, 255, 255), -1)
        writer.write(img)
    writer.release()


def run(demo, capsys, *args, weights=None):
    extra = ["MODEL.WEIGHTS", weights] if weights else []
    rc = demo.main(["--config-file", CONFIG, *args, *SMALL, *extra])
    return rc, capsys.readouterr()


def test_video_and_image_annotated_with_per_frame_json(weights, tmp_path, capsys):
    write_video(tmp_path / "clip.avi", frames=6, fps=12.0, size=(96, 72))
    cv2.imwrite(str(tmp_path / "still.png"), np.full((60, 80, 3), 128, np.uint8))
    out = tmp_path / "out"
    rc, cap = run(demo, capsys, "--input", str(tmp_path / "clip.avi"), str(tmp_path / "still.png"),
                  "--output", str(out), "--confidence-threshold", "0.0", weights=weights)
    assert rc == 0, cap.err
    assert "fps" in cap.out and "clip.avi" in cap.out
    assert cv2.imread(str(out / "still.png")).shape == (60, 80, 3)
    video = cv2.VideoCapture(str(out / "clip.avi"))
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (96, 72)
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    video.release()
    record = json.loads((out / "clip.json").read_text())
    assert record["fps"] == pytest.approx(12.0) and (record["width"], record["height"]) == (96, 72)
    assert [f["index"] for f in record["frames"]] == list(range(6))
    assert record["frames"][3]["time"] == pytest.approx(3 / 12.0, abs=1e-3)
    assert record["class_names"] == ["circle", "square", "triangle", "star", "cross"]
    some = next(f for f in record["frames"] if f["boxes"])  # threshold 0: every proposal survives scoring
    assert len(some["boxes"]) == len(some["scores"]) == len(some["labels"]) == len(some["class_names"])
    assert some["scores"] == sorted(some["scores"], reverse=True)
    assert all(0 <= b[0] <= b[2] <= 96 and 0 <= b[1] <= b[3] <= 72 for b in some["boxes"])
    assert some["class_names"][0] == record["class_names"][some["labels"][0]]


def test_vtest_first_frames(weights, tmp_path, capsys):
    if not os.path.isfile(VTEST):
        pytest.skip(f"{VTEST} not installed (Debian package opencv-doc; tools/setup_env.sh installs it as root)")
    rc, cap = run(demo, capsys, "--input", VTEST, "--output", str(tmp_path), "--max-frames", "10", weights=weights)
    assert rc == 0, cap.err
    record = json.loads((tmp_path / "vtest.json").read_text())
    assert len(record["frames"]) == 10 and (record["width"], record["height"]) == (768, 576)
    video = cv2.VideoCapture(str(tmp_path / "vtest.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 10 and video.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)


@pytest.mark.parametrize("case", ["bad_video", "empty_dir", "glob", "unwritable", "webcam"])
def test_demo_errors_are_one_line(tmp_path, capsys, case):
    out = tmp_path / "out"
    if case == "bad_video":
        (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
        args, expect = ["--input", str(tmp_path / "broken.mp4")], "cannot read video"
    elif case == "empty_dir":
        (tmp_path / "empty").mkdir()
        args, expect = ["--input", str(tmp_path / "empty")], "folder has no images or videos"
    elif case == "glob":
        args, expect = ["--input", str(tmp_path / "*.jpg")], "pattern matches no images"
    elif case == "unwritable":
        cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "sub"  # a folder below a regular file cannot exist (even for root)
        args, expect = ["--input", str(tmp_path / "a.png")], f"--output {out}: cannot be created: {tmp_path / 'file'} is a file"
    else:
        args, expect = ["--webcam", "57"], "no camera could be opened"
    rc, cap = run(demo, capsys, *args, "--output", str(out))
    err = cap.err.strip()
    assert rc == 2 and expect in err and "\n" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("kind", ["video", "image"])
def test_demo_refuses_to_overwrite_its_input(tmp_path, capsys, kind):
    # --output is the folder holding the input: the writer would truncate the video
    # while it is being read (and the annotated image would replace the original)
    if kind == "video":
        src = tmp_path / "clip.avi"
        write_video(src, frames=4)
    else:
        src = tmp_path / "photo.png"
        cv2.imwrite(str(src), np.full((40, 50, 3), 77, np.uint8))
    before = src.read_bytes()
    rc, cap = run(demo, capsys, "--input", str(src), "--output", str(tmp_path))
    err = cap.err.strip()
    assert rc == 2 and "would overwrite the input" in err and str(src) in err and "\n" not in err, err
    assert src.read_bytes() == before
