"""Unusable weight files give one clear error naming the file, and a pickle that would run
code is refused without running it (backbone loader and detector checkpointer)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from backbones import build_backbone
from backbones.weights import CheckpointError, UnsafeCheckpointError, load_checkpoint, save_backbone_checkpoint


class _CreatesMarker:
    """Unpickling this calls ``open(marker, "w")``: executing the pickle leaves a file behind."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _RunsShell:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_files(tmp_path: Path):
    """(path, marker) for: zip-format torch.save, legacy torch format, raw pickle."""
    out = []
    for i, (payload_cls, kind) in enumerate([(_CreatesMarker, "zip"), (_RunsShell, "legacy"), (_CreatesMarker, "raw")]):
        marker = tmp_path / f"pwned_{i}"
        path = tmp_path / f"evil_{kind}.pth"
        obj = {"state_dict": {"w": torch.zeros(1)}, "payload": payload_cls(str(marker))}
        if kind == "raw":
            path.write_bytes(pickle.dumps(obj))
        else:
            torch.save(obj, path, _use_new_zipfile_serialization=(kind == "zip"))
        out.append((path, marker))
    return out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickles_refused_by_backbone_loader(tmp_path):
    net = build_backbone("mobilenet_v2_0.5x")
    for path, marker in _malicious_files(tmp_path):
        with pytest.raises(CheckpointError, match=path.name) as info:
            load_checkpoint(net, path)
        assert not marker.exists(), f"{path.name} executed code"
        assert "\n" not in str(info.value)
    with pytest.raises(UnsafeCheckpointError, match="nothing was executed"):
        load_checkpoint(net, tmp_path / "evil_zip.pth")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickles_refused_by_detection_checkpointer(tmp_path):
    from detection.checkpoint import CheckpointError as DetectionCheckpointError
    from detection.checkpoint import DetectionCheckpointer

    assert DetectionCheckpointError is CheckpointError  # one error type for every checkpoint problem
    ckpt = DetectionCheckpointer(torch.nn.Linear(2, 2), save_dir=str(tmp_path / "out"))
    for path, marker in _malicious_files(tmp_path):
        with pytest.raises(CheckpointError, match=path.name):
            ckpt.load(str(path))
        assert not marker.exists(), f"{path.name} executed code"


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "truncated", "random_bytes", "text", "not_a_state_dict"])
def test_unreadable_files_name_the_file(kind, tmp_path):
    net = build_backbone("mobilenet_v2_0.5x")
    path = tmp_path / f"{kind}.pth"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        full = save_backbone_checkpoint(net, tmp_path / "full.pth")
        data = Path(full).read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "random_bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "text":
        path.write_text("<html>404 Not Found</html>")
    elif kind == "not_a_state_dict":
        torch.save([1, 2, 3], path)
    expected = {
        "missing": (FileNotFoundError, "checkpoint file not found"),
        "directory": (CheckpointError, "is a directory, not a checkpoint file"),
        "empty": (CheckpointError, r"empty file \(0 bytes"),
        "truncated": (CheckpointError, "truncated or corrupt"),
        "random_bytes": (CheckpointError, "cannot read checkpoint"),
        "text": (CheckpointError, "cannot read checkpoint"),
        "not_a_state_dict": (CheckpointError, "holds no state dict"),
    }[kind]
    with pytest.raises(expected[0], match=expected[1]) as info:
        load_checkpoint(net, path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_wrong_architecture_lists_shape_mismatches(tmp_path):
    path = save_backbone_checkpoint(build_backbone("shufflenet_v2_0.5x"), tmp_path / "snv2_05.pth")
    target = build_backbone("shufflenet_v2_1.0x")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target, path)
    msg = str(info.value)
    assert "snv2_05.pth" in msg and "checkpoint (" in msg and "vs model (" in msg
    assert msg.count("vs model") >= 3  # several keys listed, not just the first
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing loaded
