"""tools/demo.py on videos (frames, fps, size, per-frame JSON), mixed inputs, vtest.avi,
and its one-line errors."""
import json
import os

import cv2
import numpy as np
import pytest

from detection.cli import demo
from helpers import QUICKSTART_CONFIG

pytest.importorskip("detection.modeling")

CONFIG = QUICKSTART_CONFIG
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


def _frames_decodable(path):
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_truncated_video_reports_the_frames_read_against_the_header(weights, tmp_path, capsys):
    write_video(tmp_path / "full.avi", frames=20, fps=10.0)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])  # the header still announces 20 frames
    readable = _frames_decodable(tmp_path / "cut.avi")
    assert 0 < readable < 20
    out = tmp_path / "out"
    rc, cap = run(demo, capsys, "--input", str(tmp_path / "cut.avi"), str(tmp_path / "full.avi"), "--output", str(out),
                  weights=weights)
    assert rc == 0, cap.err  # the frames read are valid output
    printed = cap.out + cap.err
    assert f"cut.avi: read {readable} of the 20 frames its header announces (truncated or corrupt video?)" in printed
    assert "full.avi: read" not in printed
    cut = json.loads((out / "cut.json").read_text())
    assert (cut["num_frames"], cut["header_frame_count"], cut["complete"], cut["fps_assumed"]) == (readable, 20, False, False)
    full = json.loads((out / "full.json").read_text())
    assert (full["num_frames"], full["header_frame_count"], full["complete"]) == (20, 20, True)
    # --max-frames stopping early is not an incomplete video
    rc, cap = run(demo, capsys, "--input", str(tmp_path / "full.avi"), "--output", str(tmp_path / "o2"),
                  "--max-frames", "3", weights=weights)
    assert rc == 0 and json.loads((tmp_path / "o2" / "full.json").read_text())["complete"] is True
    assert "header announces" not in cap.out + cap.err


class _Capture:
    def __init__(self, fps):
        self.fps = fps

    def get(self, prop):
        assert prop == cv2.CAP_PROP_FPS
        return self.fps


@pytest.mark.parametrize("reported, expected, assumed", [
    (12.0, 12.0, False), (0.0, demo.DEFAULT_FPS, True), (float("nan"), demo.DEFAULT_FPS, True),
    (-1.0, demo.DEFAULT_FPS, True), (float("inf"), demo.DEFAULT_FPS, True),
])
def test_a_header_without_a_frame_rate_gets_a_stated_one(caplog, reported, expected, assumed):
    # OpenCV's FFmpeg reader fills in 25 fps itself for AVI headers of rate 0, so such a file
    # cannot be written here; cameras and some containers do report 0 / NaN
    with caplog.at_level("WARNING", logger="detection.cli.demo"):
        assert demo.video_fps(_Capture(reported), "cam.mp4") == (expected, assumed)
    assert (f"cam.mp4: the header gives no frame rate ({reported}); assuming 30 fps" in caplog.text) == assumed


@pytest.mark.parametrize("args, expect", [
    (["--confidence-threshold", "2"], "argument --confidence-threshold: must be in [0, 1], got '2'"),
    (["--confidence-threshold", "nan"], "argument --confidence-threshold: must be in [0, 1], got 'nan'"),
    (["--confidence-threshold", "-1"], "argument --confidence-threshold: must be in [0, 1], got '-1'"),
    (["--confidence-threshold", "high"], "argument --confidence-threshold: expected a number in [0, 1], got 'high'"),
    (["--max-frames", "-1"], "argument --max-frames: must be >= 0, got '-1'"),
    (["--webcam", "-1"], "argument --webcam: must be >= 0, got '-1'"),
])
def test_flag_values_outside_their_domain_are_refused_by_the_parser(tmp_path, capsys, args, expect):
    with pytest.raises(SystemExit) as stop:
        demo.main(["--config-file", CONFIG, "--input", str(tmp_path), "--output", str(tmp_path / "o"), *args])
    assert stop.value.code == 2 and expect in capsys.readouterr().err


def test_output_that_is_a_file_is_refused_before_the_model_is_built(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("keep me")
    rc, cap = run(demo, capsys, "--input", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                  "--output", str(tmp_path / "notes.txt"))
    err = cap.err.strip()
    assert rc == 2 and err.endswith(f"error: --output {tmp_path / 'notes.txt'}: is a file, not a folder"), err
    assert "\n" not in err
    assert (tmp_path / "notes.txt").read_text() == "keep me"
