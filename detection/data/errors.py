"""The error types of litedet's data layer and a collector for dataset problems.

- `DatasetError`: an annotation file (COCO json, VOC xml, split list) is unusable; the
  message names the file (with line/column where the parser knows them) and the problem.
- `BadSampleError`: one sample (its image) cannot be used; ``DATALOADER.BAD_SAMPLE_POLICY``
  decides whether training stops or skips it.
- `ProblemLog`: loaders report every problem to one; by default errors raise at once and
  warnings (dropped / clipped boxes, ...) are counted and logged once per file, while
  ``tools/check_dataset.py`` collects everything without stopping.

Every problem has a ``kind`` (``"bad_bbox"``, ``"corrupt_image"``, ...; the list is in
docs/check_dataset.md), set where it is detected: the errors carry theirs as ``err.kind``.

Both error types derive from standard ones (``ValueError`` / ``RuntimeError``) so that
callers written against those keep working.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional

__all__ = ["BadSampleError", "DatasetError", "Problem", "ProblemLog", "DATA_ERRORS", "visible"]


def visible(text: str) -> str:
    """``text`` as is when every character is printable, else its ``repr`` (a BOM, a
    zero-width space or a carriage return in an id is invisible in a terminal)."""
    return text if text.isprintable() else repr(text)


class DatasetError(ValueError):
    """An annotation/dataset file is invalid. ``str(err)`` is one line naming the file;
    ``kind`` says what is wrong (by default the whole file is unusable)."""

    def __init__(self, message: str, kind: str = "unreadable_annotations") -> None:
        super().__init__(message)
        self.kind = kind


class BadSampleError(RuntimeError):
    """A sample cannot be used (unreadable image, size mismatch, too many pixels).

    A distinct type so that ``DATALOADER.BAD_SAMPLE_POLICY: skip`` can skip exactly these
    and still let programming errors surface.
    """

    def __init__(self, file_name: str, reason: Optional[str] = None, kind: str = "bad_sample") -> None:
        # One-argument form: torch's DataLoader re-raises worker errors as
        # ``type(err)(message)``, which must keep working for the type to survive.
        super().__init__(file_name if reason is None else f"{visible(file_name)}: {reason}")
        self.file_name = file_name
        self.reason = reason or ""
        self.kind = kind


#: What data-layer code raises for bad input; anything else is a bug.
DATA_ERRORS = (DatasetError, BadSampleError, FileNotFoundError)


@dataclass
class Problem:
    severity: str  # "error" | "warning"
    kind: str  # short machine-readable category, e.g. "box_outside_image"
    where: str  # file (and entry) concerned
    message: str


@dataclass
class ProblemLog:
    """Collects dataset problems by kind.

    ``strict=True`` (what training uses): `error` raises `DatasetError` immediately.
    ``strict=False`` (the check tool): errors are recorded and the caller skips the entry.
    """

    strict: bool = True
    examples_per_kind: int = 5
    counts: Dict[tuple, int] = field(default_factory=OrderedDict)
    examples: Dict[tuple, List[Problem]] = field(default_factory=OrderedDict)

    def _add(self, problem: Problem) -> None:
        key = (problem.severity, problem.kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        bucket = self.examples.setdefault(key, [])
        if len(bucket) < self.examples_per_kind:
            bucket.append(problem)

    def error(self, kind: str, where: str, message: str, exc_type: type = DatasetError) -> None:
        if self.strict:
            text = f"{where}: {message}"
            raise DatasetError(text, kind) if exc_type is DatasetError else exc_type(text)
        self._add(Problem("error", kind, where, message))

    def error_from(self, err: DatasetError) -> None:
        """Record (or, when strict, re-raise) a raised error, under its ``kind``; its text
        is ``"where: what"``."""
        if self.strict:
            raise err
        where, _, message = str(err).partition(": ")
        self._add(Problem("error", err.kind, where, message or where))

    def warn(self, kind: str, where: str, message: str) -> None:
        self._add(Problem("warning", kind, where, message))

    def count(self, severity: str) -> int:
        return sum(n for (sev, _), n in self.counts.items() if sev == severity)

    def log_warnings(
        self,
        logger: logging.Logger,
        source: str,
        since: Optional[Dict[tuple, int]] = None,
        level: int = logging.WARNING,
    ) -> None:
        """One line per warning kind recorded (since the ``since`` snapshot of `counts`),
        with the count and the first example."""
        for (sev, kind), n in self.counts.items():
            n -= (since or {}).get((sev, kind), 0)
            if sev == "warning" and n > 0:
                example = self.examples[(sev, kind)][0]
                logger.log(level, "%s: %d x %s (e.g. %s: %s)", source, n, kind, example.where, example.message)
