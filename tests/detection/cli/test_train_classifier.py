"""End to end on CPU: tools/train_classifier.py trains a width-0.5x ShuffleNet v2 classifier
for a few iterations on a generated ImageFolder, exports the backbone, which a detector then
loads through MODEL.BACKBONE.WEIGHTS; --resume continues; --eval-only reproduces the final
accuracy; a bad dataset path is a one-line error with exit status 2."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from detection.classification.toy import make_toy_image_folder
from detection.cli import train_classifier
from helpers import REPO_ROOT as ROOT, subprocess_env

TOOL = os.path.join(ROOT, "tools", "train_classifier.py")
CONFIG = os.path.join(ROOT, "configs", "ImageNet", "shufflenet_v2_0.5x.yaml")
TINY = [
    "MODEL.NUM_CLASSES", "0", "INPUT.TRAIN_CROP_SIZE", "32", "INPUT.MIN_SIZE_TEST", "40",
    "INPUT.TEST_CROP_SIZE", "32", "SOLVER.IMS_PER_BATCH", "6", "SOLVER.BASE_LR", "0.05",
    "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0",
    "MODEL.DEVICE", "cpu", "SEED", "0",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagefolder")
    make_toy_image_folder(str(root), num_classes=3, train_per_class=8, val_per_class=4, size=48, seed=0)
    return root


def _run(args, cwd, timeout=180):
    env = subprocess_env(OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, env=env, cwd=str(cwd),
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cls_run") / "out"
    res = _run(["--config-file", CONFIG, "DATASETS.ROOT", str(data_root), *TINY, "SOLVER.MAX_ITER", "4",
                "OUTPUT_DIR", str(out)], data_root)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out, res


def test_training_outputs(trained):
    out, res = trained
    assert f"Backbone checkpoint (MODEL.BACKBONE.WEIGHTS): {out / 'backbone_final.pth'}" in res.stdout
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    last = lines[-1]
    assert last["iteration"] == 3 and last["loss_cls"] > 0
    assert last["lr"] == pytest.approx(0.05 * (1 - 3 / 4))  # LinearDecayLR of the ShuffleNet recipe
    assert 0 <= last["accuracy/top1"] <= last["accuracy/top5"] == 100.0  # 3 classes: top-5 is everything
    final = json.loads((out / "metrics_final.json").read_text())
    assert final["results"]["accuracy"]["top1"] == pytest.approx(last["accuracy/top1"])
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 3 and ckpt["data_loader"]["num_batches"] == 4
    # the recipe's TEST.PRECISE_BN pass: one epoch (24 images / 6) after the last iteration
    assert "NUM_ITER: 4" in (out / "config.yaml").read_text()
    assert "Recalibrating BatchNorm statistics on 4 training batches" in (out / "log.txt").read_text()
    assert (out / "model_0000001.pth").is_file() and any(f.startswith("events.out") for f in os.listdir(out))
    assert "NUM_CLASSES: 3" in (out / "config.yaml").read_text()


def test_exported_backbone_loads_into_a_detector(trained):
    from detection.config import get_cfg
    from detection.modeling import build_model

    out, _ = trained
    exported = torch.load(out / "backbone_final.pth", map_location="cpu", weights_only=True)
    assert exported["backbone"] == "shufflenet_v2_0.5x" and exported["classes"] == ["circle", "square", "triangle"]
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "shufflenet_v2_0.5x"
    torch.manual_seed(0)
    fresh = build_model(cfg).backbone.state_dict()
    cfg.MODEL.BACKBONE.WEIGHTS = str(out / "backbone_final.pth")
    torch.manual_seed(0)
    loaded = build_model(cfg).backbone.state_dict()
    compared = 0
    for key, value in loaded.items():
        src = exported["model"].get("backbone." + key)
        if src is None or not value.is_floating_point():
            continue
        assert torch.equal(value, src), key
        compared += 1
    assert compared > 50
    key = "stages.stem.conv1.0.weight"
    assert torch.equal(loaded[key], exported["model"]["backbone." + key])
    assert not torch.equal(loaded[key], fresh[key])  # training moved it: the weights really came from the file


def test_resume_continues(trained, tmp_path, data_root):
    src, _ = trained
    out = tmp_path / "out"
    shutil.copytree(src, out)
    res = _run(["--config-file", CONFIG, "--resume", "DATASETS.ROOT", str(data_root), *TINY, "SOLVER.MAX_ITER", "6",
                "OUTPUT_DIR", str(out)], data_root)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "training continues at iteration 4" in log and "Train loader continues after batch 4" in log
    iters = [json.loads(x)["iteration"] for x in (out / "metrics.json").read_text().splitlines()]
    assert iters[0] == 3 and iters[-1] == 5  # appended to the first run's lines
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 5 and ckpt["data_loader"]["num_batches"] == 6


def test_resume_from_a_middle_checkpoint_is_bit_exact(trained, tmp_path, data_root):
    """Restart after iteration 1 (model_0000001.pth) and finish: the weights equal the
    uninterrupted run's, so the resumed loader repeated the same crops and flips."""
    src, _ = trained
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(src / "model_0000001.pth", out)
    (out / "last_checkpoint").write_text("model_0000001.pth")
    res = _run(["--config-file", CONFIG, "--resume", "DATASETS.ROOT", str(data_root), *TINY, "SOLVER.MAX_ITER", "4",
                "OUTPUT_DIR", str(out)], data_root)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "training continues at iteration 2" in (out / "log.txt").read_text()
    want = torch.load(src / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    got = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert want.keys() == got.keys()
    assert [k for k in want if not torch.equal(want[k], got[k])] == []


def test_eval_only_reproduces_the_final_accuracy_and_exports(trained, tmp_path, data_root):
    out, _ = trained
    export = tmp_path / "bb.pth"
    args = train_classifier.build_parser().parse_args(
        ["--config-file", CONFIG, "--eval-only", "--export-backbone", str(export), "DATASETS.ROOT", str(data_root),
         *TINY, "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval")]
    )
    cfg = train_classifier.setup(args)
    path, exported = train_classifier.evaluate(cfg, args)
    got = json.loads(open(path).read())
    want = json.loads((out / "metrics_final.json").read_text())
    assert got["eval_only"] and got["results"] == want["results"]
    a = torch.load(export, map_location="cpu", weights_only=True)["model"]
    b = torch.load(out / "backbone_final.pth", map_location="cpu", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["DATASETS.ROOT", "{missing}"], "dataset error: image folder not found: {missing}/train"),
        (["DATASETS.ROOT", "{data}", "MODEL.NUM_CLASSES", "0", "SOLVER.LR_SCHEDULER_NAME", "Nope"],
         "config error: unknown SOLVER.LR_SCHEDULER_NAME"),
        (["DATASETS.ROOT", "{data}"], "config error: MODEL.NUM_CLASSES is 1000 but {data}/train has 3 class folders"),
        (["DATASETS.ROOT", "{data}", "SOLVER.BASE_LRR", "0.1"], "config error: command line: unknown config key"),
        (["--precise-bn", "--eval-only", "DATASETS.ROOT", "{data}"], "config error: --precise-bn recalibrates after training"),
        (["--export-backbone", "{data}", "DATASETS.ROOT", "{data}"],
         "config error: --export-backbone {data}: is a folder; give a file name"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(extra, message, tmp_path, data_root, capsys):
    fill = dict(missing=str(tmp_path / "missing"), data=str(data_root))
    rc = train_classifier.main(["--config-file", CONFIG, *[x.format(**fill) for x in extra],
                                "OUTPUT_DIR", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and message.format(**fill) in err, err
    assert not (tmp_path / "o").exists()  # nothing written before the config is valid


def test_training_needs_an_output_dir(data_root, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = train_classifier.main(["--config-file", CONFIG, "DATASETS.ROOT", str(data_root), "MODEL.NUM_CLASSES", "0",
                                "OUTPUT_DIR", ""])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "config error: OUTPUT_DIR is empty: training writes checkpoints" in err
    assert os.listdir(tmp_path) == []


def test_help_names_every_flag():
    text = train_classifier.build_parser().format_help()
    for flag in ("--config-file", "--resume", "--eval-only", "--export-backbone", "--precise-bn", "KEY VALUE",
                 "docs/classification.md"):
        assert flag in text


@pytest.mark.slow
def test_two_process_ddp_gathers_every_image(data_root, tmp_path):
    """torchrun, 2 CPU processes (gloo): training runs under DDP and the evaluator sums the
    two ranks' shards (12 validation images in all)."""
    import signal

    out = tmp_path / "ddp"
    env = subprocess_env(OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", TOOL,
         "--config-file", CONFIG, "DATASETS.ROOT", str(data_root), *TINY, "SOLVER.MAX_ITER", "2",
         "TEST.IMS_PER_BATCH", "5", "OUTPUT_DIR", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path),
        start_new_session=True,  # so a timeout can stop the workers too
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "World size: 2" in log and "Accuracy on 12 images of val" in log
    assert (out / "backbone_final.pth").is_file()
    assert not (out / "log.txt.rank1").exists()  # only rank 0 writes files (others: warnings to stderr)
