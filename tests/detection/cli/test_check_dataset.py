"""tools/check_dataset.py: summary, problems grouped by kind with example files, exit
status (1 errors, 0 warnings only, 2 usage/config) and --json, for --coco, --voc and
--config-file."""
from __future__ import annotations

import json
import os

import pytest

from detection.cli import check_dataset
from helpers import REPO_ROOT as ROOT


@pytest.fixture
def messy_coco(tmp_path, corpus):
    """Valid 4-image dataset, then: a truncated JPEG, a missing file, a text file named
    .png, a clipped box and an annotation of an absent image."""
    path = corpus.valid_coco(tmp_path, n=4)
    data = json.loads(path.read_text())
    (tmp_path / "img" / "t.jpg").write_bytes(corpus.jpeg_bytes(24, 32)[:300])
    (tmp_path / "img" / "0.png").write_text("not an image")
    data["images"] += [{"id": 10, "file_name": "t.jpg", "height": 24, "width": 32},
                       {"id": 11, "file_name": "gone.png", "height": 24, "width": 32}]
    data["annotations"][0]["bbox"] = [25, 2, 20, 5]
    data["annotations"].append({"id": 99, "image_id": 77, "category_id": 1, "bbox": [1, 1, 2, 2]})
    path.write_text(json.dumps(data))
    return path


def test_messy_coco_report_and_exit_1(messy_coco, tmp_path, capsys):
    rc = check_dataset.main(["--coco", str(messy_coco), "--images", str(tmp_path / "img"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"Dataset {messy_coco}: 6 images (2 without boxes), 8 boxes" in out
    assert "  a        4" in out and "  b        4" in out
    for kind, example in [
        ("corrupt_image x1", "t.jpg: corrupt or truncated image header"),
        ("not_an_image x1", "0.png: not an image"),
        ("missing_image x1", "gone.png: image file not found"),
        ("annotation_unknown_image x1", "annotation 99: image_id 77 is not in 'images'"),
        ("box_clipped x1", "annotation 1: bbox [25, 2, 20, 5] reaches outside the 32x24 image; clipped"),
    ]:
        assert kind in out and example in out, (kind, out)
    assert out.index("ERROR") < out.index("WARNING")  # errors first
    assert out.rstrip().endswith("FAILED: 4 error(s), 1 warning(s)")


def test_json_output(messy_coco, tmp_path, capsys):
    rc = check_dataset.main(["--coco", str(messy_coco), "--images", str(tmp_path / "img"), "--json", "--quiet"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and report["ok"] is False and (report["errors"], report["warnings"]) == (4, 1)
    kinds = {p["kind"]: p for p in report["problems"]}
    assert kinds["missing_image"]["severity"] == "error" and kinds["box_clipped"]["severity"] == "warning"
    assert kinds["missing_image"]["examples"][0]["where"].endswith("gone.png")
    ds = report["datasets"][0]
    assert ds["images"] == 6 and ds["boxes_per_class"]["a"]["boxes"] == 4 and ds["image_modes"] == {"RGB": 3}


def test_warnings_only_exit_0(corpus, tmp_path, capsys):
    path = corpus.valid_coco(tmp_path, n=2)
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"] = [1, 1, 0, 5]  # dropped: a warning
    path.write_text(json.dumps(data))
    assert check_dataset.main(["--coco", str(path), "--images", str(tmp_path / "img"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "WARNING box_empty x1" in out and out.rstrip().endswith("OK: 0 error(s), 1 warning(s)")


def test_shared_file_checked_against_every_entry_size(corpus, tmp_path, capsys):
    """Two image entries naming one file: each annotated size must match the decoded one
    (training reads the file once per entry), not only the first entry's."""
    path = corpus.valid_coco(tmp_path, n=2)
    data = json.loads(path.read_text())
    data["images"].append({"id": 9, "file_name": "0.png", "height": 48, "width": 64})
    path.write_text(json.dumps(data))
    assert check_dataset.main(["--coco", str(path), "--images", str(tmp_path / "img"), "--quiet", "--workers", "0"]) == 1
    out = capsys.readouterr().out
    assert "WARNING duplicate_file_name x1" in out and "ERROR   size_mismatch x1" in out
    assert "0.png: decoded size 32x24 differs from the annotated 64x48" in out


def test_empty_dataset_is_an_error(tmp_path, capsys):
    """Training refuses a dataset without images ("dataset ... is empty"); the check must not
    call it OK. An unreadable file stays one error (no second one for being empty)."""
    (tmp_path / "img").mkdir()
    (tmp_path / "ann.json").write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    assert check_dataset.main(["--coco", str(tmp_path / "ann.json"), "--images", str(tmp_path / "img"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "ERROR   empty_dataset x1" in out and f"{tmp_path / 'ann.json'}: no images" in out
    assert out.rstrip().endswith("FAILED: 1 error(s), 0 warning(s)")
    (tmp_path / "bad.json").write_text('{"images": [}')
    assert check_dataset.main(["--coco", str(tmp_path / "bad.json"), "--images", str(tmp_path / "img"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "ERROR   empty_dataset" not in out and out.rstrip().endswith("FAILED: 1 error(s), 0 warning(s)")


def test_invalid_json_is_one_error(tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"images": [}')
    assert check_dataset.main(["--coco", str(tmp_path / "bad.json"), "--images", str(tmp_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "unreadable_annotations x1" in out and "bad.json:1:13: invalid JSON" in out


def test_voc(corpus, tmp_path, capsys):
    root = corpus.valid_voc(tmp_path / "VOC", n=3)
    assert check_dataset.main(["--voc", str(root), "--split", "train", "--classes", "cat,dog", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 images (0 without boxes), 6 boxes" in out and "dog        3  (3 difficult)" in out
    (root / "JPEGImages" / "im2.jpg").unlink()
    (root / "Annotations" / "im1.xml").write_text("<annotation><object></annotation>")
    assert check_dataset.main(["--voc", str(root), "--split", "train", "--classes", "cat,dog", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "bad_xml x1" in out and "im1.xml:1:23: malformed XML: mismatched tag" in out
    assert "missing_image x1" in out and "im2.jpg: image file not found" in out


def test_config_file_mode(corpus, tmp_path, capsys):
    path = corpus.valid_coco(tmp_path, n=2)
    base = ["--config-file", os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml")]
    reg = ["DATASETS.REGISTER_COCO", f"[['check_ds_mine', '{path}', '{tmp_path / 'img'}']]",
           "DATASETS.TRAIN", "('check_ds_mine',)", "DATASETS.TEST", "('check_ds_mine',)"]
    try:
        assert check_dataset.main(base + reg + ["INPUT.MAX_IMAGE_PIXELS", "100"]) == 1
        captured = capsys.readouterr()
        assert "image_too_large x2" in captured.out and "32x24 exceeds INPUT.MAX_IMAGE_PIXELS=100" in captured.out
        assert "check_ds_mine images: 100%" in captured.err  # the tqdm bar
        assert check_dataset.main(base + reg + ["--quiet"]) == 0  # flags after the overrides still work
        assert "OK: 0 error(s), 0 warning(s)" in capsys.readouterr().out
        assert check_dataset.main(base + ["DATASETS.TRAIN", "('nope_ds',)"]) == 2
        assert capsys.readouterr().err.startswith("check_dataset.py: config error: dataset 'nope_ds' is not registered")
        assert check_dataset.main(base + ["SOLVER.BASE_RL", "1"]) == 2
        assert "unknown config key 'SOLVER.BASE_RL'" in capsys.readouterr().err
    finally:
        from detection.data import DatasetCatalog, MetadataCatalog

        if "check_ds_mine" in DatasetCatalog:
            DatasetCatalog.remove("check_ds_mine")
        MetadataCatalog.remove("check_ds_mine")


def test_allow_paths_outside_root_with_config_file(corpus, tmp_path, capsys):
    """--allow-paths-outside-root is documented for this tool: with --config-file it must act
    like DATASETS.ALLOW_PATHS_OUTSIDE_ROOT True, not be ignored (also after the overrides)."""
    path = corpus.valid_coco(tmp_path, n=2)
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = "../img/0.png"
    path.write_text(json.dumps(data))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "1.png").write_bytes((tmp_path / "img" / "1.png").read_bytes())
    base = ["--config-file", os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml"),
            "--quiet", "--workers", "0"]
    names = []
    try:
        for i, flag_first in enumerate((False, True, False)):
            name = f"check_ds_outside_{i}"
            names.append(name)
            reg = ["DATASETS.REGISTER_COCO", f"[['{name}', '{path}', '{tmp_path / 'sub'}']]",
                   "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()"]
            flag = ["--allow-paths-outside-root"] if i else []
            argv = base + flag + reg if flag_first else base + reg + flag
            rc = check_dataset.main(argv)
            out = capsys.readouterr().out
            if i:
                assert rc == 0 and "path_outside_root" not in out, out
            else:
                assert rc == 1 and "path_outside_root x1" in out
    finally:
        from detection.data import DatasetCatalog, MetadataCatalog

        for name in names:
            if name in DatasetCatalog:
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


@pytest.mark.parametrize(
    "argv, code, stream, text",
    [
        (["--coco", "a.json"], 2, "err", "--coco needs --images DIR"),
        (["--coco", "a.json", "--images", "d", "--split", "val"], 2, "err", "--split and --classes apply to --voc"),
        (["--voc", "v", "--images", "d"], 2, "err", "--images applies to --coco"),
        (["--config-file", "c.yaml", "--classes", "a"], 2, "err", "--split and --classes apply to --voc"),
        (["--images", "x"], 2, "err", "one of the arguments --config-file --coco --voc is required"),
        (["--voc", "v", "--classes", " , "], 2, "err", "--classes: the class list ' , ' names no class"),
        (["--voc", "v", "--classes", "a,a,b"], 2, "err", "--classes: duplicate class names ['a'] in ['a', 'a', 'b']"),
        (["--voc", "v", "--allow-paths-outside-root"], 2, "err", "--allow-paths-outside-root applies to COCO file names"),
        (["--help"], 0, "out", "Exit status: 0 no errors"),
    ],
)
def test_cli_usage_errors_and_help(argv, code, stream, text, capsys):
    with pytest.raises(SystemExit) as info:
        check_dataset.main(argv)
    assert info.value.code == code
    assert text in getattr(capsys.readouterr(), stream)


def test_worker_processes_give_the_same_report(messy_coco, tmp_path):
    source = [{"format": "coco", "json": str(messy_coco), "images": str(tmp_path / "img"), "label": "m"}]
    serial = check_dataset.check_sources(source, progress=False, workers=0)
    parallel = check_dataset.check_sources(source, progress=False, workers=2)
    assert parallel == serial and serial["errors"] == 4


def _coco_with(corpus, tmp_path, mutate):
    path = corpus.valid_coco(tmp_path, n=3)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return ["--coco", str(path), "--images", str(tmp_path / "img"), "--quiet", "--workers", "0"]


def _all(key, value):
    def mutate(d):
        for a in d["annotations"]:
            a[key] = value
    return mutate


@pytest.mark.parametrize("case, kind, example", [
    ("no_categories", "no_categories", "ann.json: 'categories' is empty: a detection dataset needs at least one class"),
    ("no_annotations", "no_usable_boxes", "3 images and 0 boxes, none usable"),
    ("crowd_only", "no_usable_boxes", "3 images and 6 boxes, none usable (every box missing, dropped, or a crowd"),
    ("ignore_only", "no_usable_boxes", "3 images and 6 boxes, none usable"),
    ("all_degenerate", "no_usable_boxes", "3 images and 0 boxes, none usable"),
])
def test_nothing_to_learn_is_an_error(case, kind, example, corpus, tmp_path, capsys):
    mutate = {
        "no_categories": lambda d: d.update(categories=[], annotations=[]),
        "no_annotations": lambda d: d.update(annotations=[]),
        "crowd_only": _all("iscrowd", 1),
        "ignore_only": _all("ignore", 1),
        "all_degenerate": _all("bbox", [1, 1, 0, 0]),
    }[case]
    assert check_dataset.main(_coco_with(corpus, tmp_path, mutate)) == 1
    out = capsys.readouterr().out
    assert f"ERROR   {kind} x1" in out and example in out and "FAILED" in out


def test_ignore_regions_counted_and_classes_without_boxes_warned(corpus, tmp_path, capsys):
    def mutate(d):
        for a in d["annotations"]:
            if a["category_id"] == 2:
                a["ignore"] = 1
    assert check_dataset.main(_coco_with(corpus, tmp_path, mutate) + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["datasets"][0]["boxes_per_class"]["b"] == {"boxes": 3, "usable": 0, "crowd": 0, "difficult": 0, "ignore": 3}
    warnings = {p["kind"]: p for p in report["problems"]}
    assert warnings["class_without_boxes"]["examples"][0]["message"].startswith("class 'b' has no usable box")
    assert check_dataset.main(_coco_with(corpus, tmp_path, mutate)) == 0
    assert "  b        3  (3 ignore)" in capsys.readouterr().out


def test_fifo_image_is_refused_not_waited_for(corpus, tmp_path, capsys):
    import signal

    args = _coco_with(corpus, tmp_path, lambda d: None)
    (tmp_path / "img" / "1.png").unlink()
    os.mkfifo(tmp_path / "img" / "1.png")

    def hung(*_):
        raise TimeoutError("check_dataset blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        assert check_dataset.main(args) == 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out = capsys.readouterr().out
    assert "ERROR   not_a_regular_file x1" in out and "1.png: is a FIFO (named pipe), not a regular image file" in out


def test_image_modes_show_the_real_bit_depth_and_refusals(corpus, tmp_path, capsys):
    import cv2
    import numpy as np

    args = _coco_with(corpus, tmp_path, lambda d: None)
    cv2.imwrite(str(tmp_path / "img" / "1.png"), np.full((24, 32, 3), 40000, np.uint16))
    cv2.imwrite(str(tmp_path / "img" / "2.png"), np.full((24, 32), 4000, np.uint16))  # 12-bit data
    assert check_dataset.main(args) == 1
    out = capsys.readouterr().out
    assert "image modes (all converted to 8-bit RGB): RGB: 1, RGB 16-bit: 1" in out
    assert "ERROR   unsupported_pixel_values x1" in out and "2.png: 16-bit image whose brightest value is 4000" in out


def test_voc_without_classes_says_once_which_classes_the_files_use(corpus, tmp_path, capsys):
    root = corpus.valid_voc(tmp_path / "VOC", n=40)
    for xml in (root / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace(">cat<", ">widget<").replace(">dog<", ">gizmo<"))
    assert check_dataset.main(["--voc", str(root), "--split", "train", "--quiet", "--no-images"]) == 1
    out = capsys.readouterr().out
    assert "ERROR   unknown_class x1" in out and out.count("unknown_class") == 1
    assert "80 object(s) in 40 file(s)" in out and "not in the class list (VOC's 20 classes): 'gizmo' (40), 'widget' (40)" in out
    assert "pass --classes gizmo,widget" in out
    assert check_dataset.main(["--voc", str(root), "--split", "train", "--quiet", "--no-images",
                               "--classes", "gizmo,widget"]) == 0


def test_voc_namespaced_files_are_read(corpus, tmp_path, capsys):
    root = corpus.valid_voc(tmp_path / "VOC", n=3)
    for xml in (root / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<annotation>", '<annotation xmlns="http://example.org/voc">'))
    (root / "ImageSets" / "Main" / "train.txt").write_text("\ufeffim0\nim1\nim2\n", encoding="utf-8")
    assert check_dataset.main(["--voc", str(root), "--split", "train", "--classes", "cat,dog", "--quiet"]) == 0
    assert "3 images (0 without boxes), 6 boxes" in capsys.readouterr().out


# ----------------------------------------------------------------------------- --suggest
SHAPES_CFG = os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml")


def _voc_of_squares(corpus, root, side=32):
    """Four 256x256 VOC images of ``side`` px squares centred on the stride-16 grid points."""
    for sub in ("Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"im{i}" for i in range(4)]
    for image_id in ids:
        objs = [{"name": "cat", "x1": c - side // 2 + 1, "y1": c - side // 2 + 1, "x2": c + side // 2, "y2": c + side // 2}
                for c in (48, 128, 208)]  # VOC: 1-based inclusive
        (root / "Annotations" / f"{image_id}.xml").write_text(corpus.voc_xml(image_id, objs, h=256, w=256))
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    return root


def _overrides(out):
    """The pasted lines after "Suggested overrides": KEY VALUE as a shell splits them."""
    import shlex

    lines = out[out.index("Suggested overrides"):].splitlines()[1:]
    return [word for line in lines for word in shlex.split(line)]


@pytest.mark.parametrize("sizes, current", [("[[32]]", "100.0% at the anchor grid"), ("[[512]]", "0.0% at the anchor grid")])
def test_suggest_on_voc_with_suggest_config(corpus, tmp_path, capsys, sizes, current):
    root = _voc_of_squares(corpus, tmp_path / "VOC")
    argv = ["--voc", str(root), "--split", "train", "--classes", "cat", "--no-images", "--suggest",
            "--suggest-config", SHAPES_CFG, "MODEL.ANCHOR_GENERATOR.SIZES", sizes, "--quiet"]
    assert check_dataset.main(argv) == 0
    out = capsys.readouterr().out
    assert "Training boxes at INPUT.MIN_SIZE_TRAIN (256,), MAX_SIZE_TRAIN 400: 12 (box, input size) pairs" in out
    assert "  sqrt(area)      32.0    32.0" in out and "RPN levels: stage3 (stride 16)" in out
    assert f"ASPECT_RATIOS [[0.5, 1.0, 2.0]]: boxes matched at IoU >= 0.5: {current}" in out
    assert "Suggested overrides (boxes matched at IoU >= 0.5: 100.0% at the anchor grid, 100.0% by shape alone)" in out
    words = _overrides(out)
    assert words[::2] == ["MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"]
    from detection.config import load_config

    cfg = load_config(SHAPES_CFG, words)  # the printed lines parse with merge_from_list
    assert len(cfg.MODEL.ANCHOR_GENERATOR.SIZES[0]) == 1 and cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS == [[0.71, 1.0, 1.41]]


def test_suggest_with_config_file_uses_the_training_sets_only(corpus, tmp_path, capsys):
    """DATASETS.TRAIN's boxes are analysed (the TEST set's 8 px squares are not); 16 px boxes
    at 256 px with a stride-16 RPN: the input size doubles, and --json holds it all."""
    train = _voc_of_squares(corpus, tmp_path / "train", side=16)
    test = _voc_of_squares(corpus, tmp_path / "test", side=8)
    argv = ["--config-file", SHAPES_CFG, "--no-images", "--quiet", "--suggest",
            "DATASETS.REGISTER_VOC", f"[['sg_train', '{train}', 'train', 'cat'], ['sg_test', '{test}', 'train', 'cat']]",
            "DATASETS.TRAIN", "('sg_train',)", "DATASETS.TEST", "('sg_test',)"]
    try:
        assert check_dataset.main(argv) == 0
        out = capsys.readouterr().out
        assert "Input size: the 5% quantile of sqrt(area) is 16.0 px, outside [32, 64] px; at the suggested size it is 32.0 px" in out
        words = _overrides(out)
        assert dict(zip(words[::2], words[1::2]))["INPUT.MIN_SIZE_TRAIN"] == "(512,)"
        assert check_dataset.main(argv[:5] + ["--min-box-size", "8"] + argv[5:] + ["--json"]) == 0
        anchors = json.loads(capsys.readouterr().out)["anchors"]
        assert anchors["boxes"] == 12 and anchors["statistics"]["sqrt_area"]["p50"] == 16.0 and anchors["min_box"] == 8
        assert "INPUT.MIN_SIZE_TRAIN" not in anchors["suggested"]["overrides"]
    finally:
        from detection.data import DatasetCatalog, MetadataCatalog

        for name in ("sg_train", "sg_test"):
            if name in DatasetCatalog:
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_suggest_on_coco(corpus, tmp_path, capsys):
    path = corpus.valid_coco(tmp_path, n=2)
    argv = ["--coco", str(path), "--images", str(tmp_path / "img"), "--quiet", "--suggest", "--suggest-config", SHAPES_CFG]
    assert check_dataset.main(argv) == 0
    out = capsys.readouterr().out
    # 24x32 images resized to 256x341 (x341/32 wide, x256/24 high): the 10x8 and 6x6 boxes
    # become 106.6x85.3 and 63.9x64
    assert "  width           63.9    63.9    63.9    85.2   106.6   106.6   106.6" in out
    assert "  height          64.0    64.0    64.0    74.7    85.3    85.3    85.3" in out and "Suggested overrides" in out


@pytest.mark.parametrize("argv, message", [
    (["--suggest"], "--suggest needs a config"),
    (["--suggest-config", SHAPES_CFG], "--suggest-config goes with --suggest"),
    (["--min-box-size", "8"], "--min-box-size applies to --suggest"),
    (["--suggest", "--suggest-config", SHAPES_CFG, "--min-box-size", "-1"], "must be"),
])
def test_suggest_usage_errors(corpus, tmp_path, capsys, argv, message):
    path = corpus.valid_coco(tmp_path, n=1)
    with pytest.raises(SystemExit) as exc:
        check_dataset.main(["--coco", str(path), "--images", str(tmp_path / "img"), "--no-images"] + argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    (["MODEL.ANCHOR_GENERATOR.SIZES", "[[32], [64]]"], "--suggest: model config (LightHeadRCNN + shufflenet_v2_0.5x): MODEL.ANCHOR_GENERATOR.SIZES has 2 levels, the RPN sees 1"),
    (["INPUT.MIN_SIZE_TRAIN_SAMPLING", "range"], "--suggest: INPUT.MIN_SIZE_TRAIN_SAMPLING 'range' needs two sizes"),
    (["INPUT.MIN_SIZES_TRAIN", "(1,)"], "unknown config key"),
    (["MODEL.BACKBONE.NAME", "nope"], "--suggest: MODEL.BACKBONE.NAME: unknown 'nope'"),
])
def test_suggest_bad_config_is_one_line_exit_2(corpus, tmp_path, capsys, overrides, message):
    path = corpus.valid_coco(tmp_path, n=1)
    argv = ["--coco", str(path), "--images", str(tmp_path / "img"), "--no-images", "--suggest",
            "--suggest-config", SHAPES_CFG] + overrides
    assert check_dataset.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("check_dataset.py: config error: ") and message in err and err.count("\n") == 1
    missing = ["--coco", str(path), "--images", str(tmp_path / "img"), "--suggest", "--suggest-config", str(tmp_path / "no.yaml")]
    assert check_dataset.main(missing) == 2
    assert capsys.readouterr().err.count("\n") == 1
