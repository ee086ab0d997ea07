"""docs/tutorial_custom_data.md, run: every fenced block after ``<!-- tutorial-test: run -->``
is run command by command through the tools' ``main(argv)`` (in this process), every block
after ``<!-- tutorial-test: file NAME -->`` written to NAME, on a tiny VOC folder of
litedet_shapes images built here, with the tutorial's "What the test changes" substitutions
(`SUBSTITUTIONS`). Then the outputs are checked: the check's verdict and anchor report, the
metrics file and curves, the evaluation's mAP, the demo images and the exported model."""
from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from helpers import REPO_ROOT

TUTORIAL = Path(REPO_ROOT) / "docs" / "tutorial_custom_data.md"
CLASSES = "circle,square,triangle,star,cross"
MARKER = re.compile(r"<!-- tutorial-test: (run|file (\S+)) -->\n```\w*\n(.*?)```", re.S)
TOOLS = {"tools/check_dataset.py": "check_dataset", "tools/train_net.py": "train_net", "tools/plot_metrics.py": "plot_metrics",
         "tools/demo.py": "demo", "tools/export.py": "export", "tools/benchmark.py": "benchmark"}

# A Light-Head config for a CPU run of seconds (64 px inputs, 4 iterations, small budgets),
# on the Base config as a user's would be: MODEL.ROI_HEADS.NUM_CLASSES is not set anywhere.
TINY_BASE = """_BASE_: "{base}"
MODEL:
  BACKBONE:
    NAME: "shufflenet_v2_0.5x"
    NORM: "BN"
    FREEZE_AT: 0
    HEAD_FEATURE: "stage3"
  ANCHOR_GENERATOR:
    SIZES: [[16, 32, 64]]
  RPN:
    PRE_NMS_TOPK_TRAIN: 200
    POST_NMS_TOPK_TRAIN: 50
    PRE_NMS_TOPK_TEST: 100
    POST_NMS_TOPK_TEST: 20
  ROI_HEADS:
    BATCH_SIZE_PER_IMAGE: 32
    SCORE_THRESH_TEST: 0.05
  LIGHT_HEAD:
    FC_DIM: 64
    OHEM_TOPK: 16
INPUT:
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 80
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 80
DATALOADER:
  NUM_WORKERS: 0
  FILTER_EMPTY_ANNOTATIONS: False
SOLVER:
  OPTIMIZER: "AdamW"
  BASE_LR: 0.001
  IMS_PER_BATCH: 2
  MAX_ITER: 4
  STEPS: (3,)
  WARMUP_ITERS: 1
  CHECKPOINT_PERIOD: 100
TEST:
  DETECTIONS_PER_IMAGE: 20
SEED: 0
"""


def substitutions(tmp: Path, voc_root: Path, base: Path) -> List[Tuple[str, str]]:
    """The tutorial's "What the test changes", in the order applied."""
    return [
        ("BCCD_Dataset/BCCD", str(voc_root)),
        ("RBC,WBC,Platelets", CLASSES),
        ("configs/BCCD/lighthead_shufflenet_v2_bccd.yaml", str(base)),
        ("output/my_bccd", str(tmp / "output")),
        ("my_bccd.yaml", str(tmp / "my_bccd.yaml")),
        ("--iters 50", "--iters 1 --warmup 0"),
    ]


def tutorial_blocks() -> List[Tuple[str, str, str]]:
    """``(kind, file name or "", text)`` of each marked block, in document order."""
    return [(m.group(1).split()[0], m.group(2) or "", m.group(3)) for m in MARKER.finditer(TUTORIAL.read_text())]


def commands(block: str) -> List[List[str]]:
    """The block's commands as argv lists (``\\`` continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


def test_tutorial_marks_every_step():
    """The markers are where the test expects them: the parse itself can fail silently."""
    blocks = tutorial_blocks()
    assert [(k, f) for k, f, _ in blocks] == [("run", ""), ("file", "my_bccd.yaml")] + [("run", "")] * 6
    tools = [cmd[1] for k, _, text in blocks if k == "run" for cmd in commands(text)]
    assert tools == ["tools/check_dataset.py"] * 3 + ["tools/train_net.py", "tools/plot_metrics.py", "tools/train_net.py",
                                                      "tools/demo.py", "tools/export.py", "tools/benchmark.py"]


@pytest.fixture
def workspace(tmp_path):
    from detection.data.shapes import generate_shapes_dataset

    generate_shapes_dataset(str(tmp_path / "data"), num_train=6, num_val=3, image_size=(64, 80), seed=0)
    voc = tmp_path / "data" / "litedet_shapes" / "VOC"
    # the tutorial's split names: trainval to train on, test to evaluate
    (voc / "ImageSets" / "Main" / "test.txt").write_text((voc / "ImageSets" / "Main" / "val.txt").read_text())
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text((voc / "ImageSets" / "Main" / "train.txt").read_text())
    base = tmp_path / "tiny_base.yaml"
    base.write_text(TINY_BASE.format(base=Path(REPO_ROOT) / "configs" / "Base-LightHead-RCNN.yaml"))
    return tmp_path, voc, base


def _substitute(text: str, table: List[Tuple[str, str]]) -> str:
    for old, new in table:
        text = text.replace(old, new)
    return text


def run_tutorial(tmp: Path, voc: Path, base: Path, capsys) -> Dict[str, str]:
    """Run every marked block; returns each tool's stdout (the last run of it), keyed
    ``"tool"`` and ``"tool#n"`` for its n-th run."""
    import importlib

    table = substitutions(tmp, voc, base)
    outputs: Dict[str, str] = {}
    runs: Dict[str, int] = {}
    for kind, name, text in tutorial_blocks():
        text = _substitute(text, table)
        if kind == "file":
            Path(_substitute(name, table)).write_text(text)
            continue
        for argv in commands(text):
            assert argv[0] == ".venv/bin/python" and argv[1] in TOOLS, argv
            tool = TOOLS[argv[1]]
            main = importlib.import_module(f"detection.cli.{tool}").main
            try:
                rc = main(argv[2:])
            except SystemExit as exc:  # argparse
                rc = exc.code
            captured = capsys.readouterr()
            assert rc in (0, None), f"{' '.join(argv)} -> {rc}\n{captured.out[-3000:]}\n{captured.err[-3000:]}"
            runs[tool] = runs.get(tool, 0) + 1
            outputs[tool] = outputs[f"{tool}#{runs[tool]}"] = captured.out
    return outputs


def test_tutorial_commands_run_on_a_tiny_voc_folder(workspace, capsys, monkeypatch):
    tmp, voc, base = workspace
    monkeypatch.chdir(REPO_ROOT)  # the tutorial's commands run from the repository root
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = run_tutorial(tmp, voc, base, capsys)
    output = tmp / "output"

    # 2. the check, both splits
    assert "6 images" in out["check_dataset#1"] and "OK: 0 error(s)" in out["check_dataset#1"]
    assert "3 images" in out["check_dataset#2"] and "OK: 0 error(s)" in out["check_dataset#2"]
    # 4. --suggest on the config's training set, at its 64 px input
    suggest = out["check_dataset#3"]
    assert "Training boxes at INPUT.MIN_SIZE_TRAIN (64,), MAX_SIZE_TRAIN 80:" in suggest
    coverage = re.search(r"IoU >= 0.5: ([\d.]+)% at the anchor grid", suggest)
    assert coverage and 0 <= float(coverage.group(1)) <= 100
    assert "MODEL.ANCHOR_GENERATOR.SIZES '[[" in suggest
    # 5. training: the metrics file, the final weights, the class count from the data
    lines = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines() if line.strip()]
    losses = [r["total_loss"] for r in lines if "total_loss" in r]
    assert losses and all(l == l and 0 < l < 100 for l in losses)  # finite, positive
    assert (output / "model_final.pth").is_file()
    assert "NUM_CLASSES: 5" in (output / "config.yaml").read_text()  # from the data: no config sets it
    assert "NUM_CLASSES: 5, the number of classes in DATASETS.TRAIN" in (output / "log.txt").read_text()
    # 6. curves
    assert (output / "curves.png").stat().st_size > 1000
    # 7. evaluation: an mAP number in [0, 100]
    assert "AP50" in out["train_net#2"]
    final = json.loads((output / "metrics_final.json").read_text())
    assert final["eval_only"] is True and final["datasets"] == ["my_bccd_test"]
    ap50 = [v for k, v in _flatten(final).items() if k.endswith("AP50")]
    assert ap50 and all(0 <= v <= 100 for v in ap50), final
    # 8. demo: one annotated image per input image
    demo = sorted(p.name for p in (output / "demo").iterdir())
    assert demo == sorted(p.name for p in (voc / "JPEGImages").iterdir())
    from PIL import Image

    assert Image.open(output / "demo" / demo[0]).size == (80, 64)
    # 9. export: the ONNX file and its description; the benchmark's latency
    assert sorted(p.name for p in (output / "export").iterdir()) == ["detector.json", "detector.onnx"]
    assert (output / "export" / "detector.onnx").stat().st_size > 100_000
    info = json.loads((output / "export" / "detector.json").read_text())
    assert info["class_names"] == CLASSES.split(",") and info["check"]["ok"] is True
    latency = re.search(r"my_bccd \[detector, torch\] batch 1 at 64x96 on cpu: median ([\d.]+) ms", out["benchmark"])
    assert latency and float(latency.group(1)) > 0, out["benchmark"]


def _flatten(tree, prefix: str = "") -> Dict[str, float]:
    flat: Dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)):
            flat[f"{prefix}{key}"] = float(value)
    return flat
