"""prepare_datasets bccd / verify bccd on a tiny BCCD-shaped folder built here (never BCCD
itself): every annotation quirk is fixed and counted or refused, and the placed copy loads as
the built-in bccd_* datasets."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detection.cli import prepare_datasets as prepare
from detection.data import DatasetCatalog, MetadataCatalog


def _obj(name, box, difficult="0"):
    x1, y1, x2, y2 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def _xml(filename, objects, size=(64, 48)):
    return (f"<annotation><folder>JPEGImages</folder><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{''.join(objects)}</annotation>")


# id -> (objects, <filename>, <size>); images are 64x48
IMAGES = {
    "BloodImage_00000": ([_obj("RBC", (5, 5, 20, 20)), _obj("WBC", (30, 10, 60, 40))], "BloodImage_00000.jpg", (64, 48)),
    # a zero-extent box and a 2-px-shifted copy of a box (BCCD has both)
    "BloodImage_00001": ([_obj("RBC", (10, 10, 10, 10)), _obj("RBC", (4, 4, 44, 44)), _obj("RBC", (5, 5, 45, 45)),
                          _obj("Platelets", (40, 30, 46, 36))], "BloodImage_00001", (64, 48)),
    # odd spellings, a box reaching outside the image, one entirely outside, a wrong <size>
    "BloodImage_00002": ([_obj(" platelet", (1, 1, 8, 8)), _obj("rbc", (50, 30, 70, 50)), _obj("WBC", (80, 10, 90, 20))],
                         "BloodImage_00002.jpg", (640, 480)),
    "BloodImage_00003": ([_obj("WBC", (20, 12, 44, 40)), _obj("Platelets", (2, 2, 9, 9))], "BloodImage_00003.jpg", (64, 48)),
}
SPLITS = {"train": ["BloodImage_00000", "BloodImage_00001"], "val": ["BloodImage_00002"],
          "trainval": ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002"], "test": ["BloodImage_00003"]}


def make_clone(tmp_path: Path, images=IMAGES, splits=SPLITS) -> Path:
    """A folder shaped like a git clone of Shenggan/BCCD_Dataset (BCCD/ inside)."""
    base = tmp_path / "BCCD_Dataset" / "BCCD"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for image_id, (objects, filename, size) in images.items():
        (base / "Annotations" / f"{image_id}.xml").write_text(_xml(filename, objects, size))
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{image_id}.jpg")
    for split, ids in splits.items():
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return base.parent


def test_prepare_fixes_counts_and_places(tmp_path, capsys, monkeypatch):
    clone = make_clone(tmp_path)
    root = tmp_path / "data"
    assert prepare.main(["--root", str(root), "bccd", "--from", str(clone)]) == 0
    out = capsys.readouterr().out
    report = json.loads((root / "BCCD" / "prepare_report.json").read_text())
    counts = {kind: len(items) for kind, items in report["fixes"].items()}
    assert counts == {"box_degenerate": 1, "box_duplicate": 1, "class_renamed": 2, "box_clipped": 1,
                      "box_outside_image": 1, "size_corrected": 2, "filename_corrected": 1}
    assert "fixed box_duplicate: 1" in out and "repeats the box of object #2" in out
    assert report["splits"]["trainval"]["boxes"] == {"RBC": 3, "WBC": 1, "Platelets": 2}
    assert report["splits"]["test"] == {"images": 1, "boxes": {"WBC": 1, "Platelets": 1}}
    # the source is untouched, the copy is fixed
    assert "<xmin>10</xmin>" in (clone / "BCCD" / "Annotations" / "BloodImage_00001.xml").read_text()
    assert prepare.main(["--root", str(root), "verify", "bccd"]) == 0

    monkeypatch.setenv("LITEDET_DATASETS", str(root))
    records = {r["image_id"]: r for r in DatasetCatalog.get("bccd_trainval")}
    assert sorted(records) == SPLITS["trainval"]
    anns = records["BloodImage_00002"]["annotations"]
    assert [a["category_id"] for a in anns] == [2, 0]  # Platelets, RBC
    assert anns[1]["bbox"] == [49.0, 29.0, 64.0, 48.0]  # clipped to 64x48, xmin/ymin 1-based -> 0-based
    assert (records["BloodImage_00002"]["height"], records["BloodImage_00002"]["width"]) == (48, 64)
    assert [len(DatasetCatalog.get(f"bccd_{s}")) for s in ("train", "val", "test")] == [2, 1, 1]
    meta = MetadataCatalog.get("bccd_test")
    assert meta.thing_classes == ["RBC", "WBC", "Platelets"] and meta.evaluator_type == "voc"
    assert meta.dirname == os.path.join(str(root), "BCCD")

    # running again replaces its own earlier copy
    assert prepare.main(["--root", str(root), "bccd", "--from", str(clone / "BCCD")]) == 0


def test_verify_catches_a_copy_edited_afterwards(tmp_path, capsys):
    root = tmp_path / "data"
    assert prepare.main(["--root", str(root), "bccd", "--from", str(make_clone(tmp_path))]) == 0
    xml = root / "BCCD" / "Annotations" / "BloodImage_00003.xml"
    xml.write_text(xml.read_text().replace("<name>WBC</name>", "<name>wbc</name>"))
    assert prepare.main(["--root", str(root), "verify", "bccd"]) == 1
    assert "re-run python datasets/prepare.py bccd" in capsys.readouterr().err


def _with(image_id, objects=None, size=(64, 48)):
    images = dict(IMAGES)
    images[image_id] = (objects if objects is not None else images[image_id][0], f"{image_id}.jpg", size)
    return images


@pytest.mark.parametrize(
    "images, splits, message",
    [
        (_with("BloodImage_00003", [_obj("Neutrophil", (2, 2, 9, 9))]), SPLITS, "class 'Neutrophil' is not one of"),
        (_with("BloodImage_00003", [_obj("RBC", (2, 2, "x", 9))]), SPLITS, "<xmax> is not a number: 'x'"),
        (_with("BloodImage_00003", [_obj("RBC", (2, 2, 9, 9), difficult="2")]), SPLITS, "<difficult> must be 0 or 1"),
        (IMAGES, dict(SPLITS, test=["BloodImage_00003", "BloodImage_00000"]), "in both trainval.txt and test.txt"),
        (IMAGES, dict(SPLITS, trainval=["BloodImage_00000"]), "trainval.txt is not train.txt + val.txt"),
        (IMAGES, dict(SPLITS, test=["BloodImage_00003", "BloodImage_00009"]), "1 missing file(s)"),
    ],
    ids=["unknown-class", "non-numeric", "bad-difficult", "test-leak", "trainval-mismatch", "missing-file"],
)
def test_prepare_refuses_what_it_cannot_fix(tmp_path, capsys, images, splits, message):
    clone = make_clone(tmp_path, images, splits)
    root = tmp_path / "data"
    assert prepare.main(["--root", str(root), "bccd", "--from", str(clone)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (root / "BCCD").exists() and not (root / ".bccd_prepare").exists()


def test_prepare_refuses_layout_problems(tmp_path, capsys):
    clone = make_clone(tmp_path)
    (clone / "BCCD" / "ImageSets" / "Main" / "val.txt").unlink()
    assert prepare.main(["--root", str(tmp_path / "d1"), "bccd", "--from", str(clone)]) == 1
    assert "val.txt: split list missing" in capsys.readouterr().err
    assert prepare.main(["--root", str(tmp_path / "d2"), "bccd", "--from", str(tmp_path / "nowhere")]) == 1
    assert "no Annotations/ folder" in capsys.readouterr().err
    foreign = tmp_path / "d3" / "BCCD"
    foreign.mkdir(parents=True)
    assert prepare.main(["--root", str(tmp_path / "d3"), "bccd", "--from", str(make_clone(tmp_path / "c2"))]) == 1
    assert "was not made by prepare.py" in capsys.readouterr().err and foreign.is_dir()
    assert prepare.main(["--root", str(tmp_path / "d4"), "verify", "bccd"]) == 1
    assert "not found" in capsys.readouterr().err

