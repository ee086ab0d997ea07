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
