"""Reading input files without surprises: only regular files, and never more than a cap.

A FIFO, socket or device named as an image or annotation file would block a reader
forever or stream without end (``/dev/zero``); a multi-gigabyte file would be read whole
before anyone looks at it. `read_regular_file` checks the file's type and size with
``stat`` first, opens it without blocking, checks again on the open descriptor (the path
may have changed in between) and reads at most the cap.
"""
from __future__ import annotations

import os
import stat
from typing import Optional

from .errors import DatasetError

__all__ = ["FileProblem", "read_regular_file", "read_annotation_file", "describe_size"]

_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class FileProblem(OSError):
    """The file exists but is not one litedet reads: not a regular file (``kind``
    ``"not_a_regular_file"``; ``file_type`` says what it is, e.g. ``"a directory"``) or
    larger than the cap (``"file_too_large"``). ``reason`` is the phrase after the file name."""

    def __init__(self, path: str, reason: str, kind: str, file_type: str = "a regular file") -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.kind, self.file_type = path, reason, kind, file_type


def describe_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _check(path: str, st: os.stat_result, max_bytes: Optional[int], what: str) -> None:
    for test, name in _NOT_REGULAR:
        if test(st.st_mode):
            raise FileProblem(path, f"is {name}, not a regular {what} file", "not_a_regular_file", name)
    if not stat.S_ISREG(st.st_mode):
        raise FileProblem(path, f"is not a regular {what} file", "not_a_regular_file", "not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise FileProblem(
            path,
            f"{what} file of {describe_size(st.st_size)} is larger than the {describe_size(max_bytes)} litedet reads",
            "file_too_large",
        )


def read_regular_file(path: str, max_bytes: Optional[int], what: str = "input", head: Optional[int] = None) -> bytes:
    """The bytes of ``path`` (only its first ``head`` bytes when given). Raises
    `FileProblem` for a non-regular or too large file, ``FileNotFoundError`` when it is
    absent, another ``OSError`` when it cannot be read (permissions, a symlink loop, an I/O
    error). ``what`` names the file's role in messages ("image", "annotation")."""
    _check(path, os.stat(path), max_bytes, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        _check(path, os.fstat(fd), max_bytes, what)  # the path may have been replaced since the stat
        chunks = []
        remaining = head if head is not None else (max_bytes + 1 if max_bytes is not None else -1)
        while remaining != 0:
            chunk = os.read(fd, min(remaining, 1 << 24) if remaining > 0 else 1 << 24)
            if not chunk:
                break
            chunks.append(chunk)
            if remaining > 0:
                remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if head is None and max_bytes is not None and len(data) > max_bytes:  # grew while being read
        raise FileProblem(path, f"{what} file is larger than the {describe_size(max_bytes)} litedet reads", "file_too_large")
    return data


def read_annotation_file(
    path: str, max_bytes: int, missing: Optional[str], kind: str = "unreadable_annotations", head: Optional[int] = None
) -> bytes:
    """`read_regular_file` for an annotation file (COCO json, VOC xml, split list): an absent
    file raises ``FileNotFoundError("<missing>: <path>")`` (with ``missing`` None, a
    `DatasetError` like any other read problem), a non-regular or too large one a
    `DatasetError` of kind ``not_a_regular_file`` / ``file_too_large``, an unreadable one a
    `DatasetError` of ``kind``; every message names the file."""
    try:
        return read_regular_file(path, max_bytes, "annotation", head=head)
    except FileNotFoundError:
        if missing is None:
            raise DatasetError(f"{path}: cannot read (file not found)", kind) from None
        raise FileNotFoundError(f"{missing}: {path}") from None
    except FileProblem as err:
        raise DatasetError(str(err), err.kind) from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror or err})", kind) from None
