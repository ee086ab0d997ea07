"""`backbones.checkpoint_io`: unusable weight files give one clear error naming the file,
a pickle that would run code is refused without running it (backbone loader and detector
checkpointer), and a saved file replaces the old one atomically."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from backbones import build_backbone, build_classifier
from backbones.checkpoint_io import CheckpointError, UnsafeCheckpointError, read_state_dict
from backbones.weights import load_checkpoint, save_backbone_checkpoint
from helpers.weights import mobilenet_v2_checkpoint


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


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    net = build_backbone("mobilenet_v2_0.5x")
    save_backbone_checkpoint(net, path)
    first = path.stat().st_ino
    save_backbone_checkpoint(net, path)
    assert path.stat().st_ino != first  # replaced by a new file, never rewritten in place
    assert os.listdir(tmp_path) == ["m.pth"]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(build_backbone("mobilenet_v2_0.5x"), missing)


def test_truncated_file(tmp_path: Path) -> None:
    src = mobilenet_v2_checkpoint()
    if src is None:  # fall back to a zip-format checkpoint of our own
        src = save_backbone_checkpoint(build_backbone("mobilenet_v2_0.5x"), tmp_path / "full.pth")
    data = Path(src).read_bytes()
    bad = tmp_path / "half.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half.pth"):
        load_checkpoint(build_classifier("mobilenet_v2_1.0x"), bad)
    with pytest.raises((ValueError, RuntimeError)):
        read_state_dict(bad)


class _Malicious:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Malicious(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_checkpoint(build_backbone("mobilenet_v2_0.5x"), path)
    assert not marker.exists()
