"""Every variant with published figures matches its paper: MACs and params at 224x224,
classifier included (1000 classes), within 5%.

The cases are collected from the registry at import time, so a newly registered family
is checked as soon as it gives its variants `PaperFigures`. A variant that cannot match
goes into `KNOWN_DEVIATIONS` with the number we measure and the reason; its test then
pins that number instead of silently skipping. Variants registered to sit at a complexity
level of the ShuffleNet v2 paper's Table 7 carry that level as their figure (their
`PaperFigures.source` says so), so they are held to it the same way.

Figures a paper gives only at another input size are checked at that size: SeesawNet's
CIFAR tables (`backbones.seesaw.CIFAR_FIGURES`, the only figures for Seesaw-shareNet).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple

import pytest

from backbones import build_classifier, get_variant, list_backbones
from backbones.analysis import ModelReport, analyze, analyze_variant
from backbones.seesaw import CIFAR_DOWNSAMPLING, CIFAR_FIGURES, CIFAR_INPUT_SIZE

TOLERANCE = 0.05


@dataclass(frozen=True)
class Deviation:
    """A figure we knowingly do not reproduce: what we measure instead, and why."""

    measured: float
    reason: str


#: (variant, "macs" | "params") -> Deviation. Every published paper figure is matched within
#: 5% (largest gap: shufflenet_v2_0.5x params, 1.367M vs 1.4M, -2.4%); the one entry is a
#: complexity level no width reaches with torchvision's rounding.
KNOWN_DEVIATIONS: Dict[Tuple[str, str], Deviation] = {
    ("mobilenet_v2_0.27x", "macs"): Deviation(
        37.797152e6,
        "ShuffleNet v2 Table 7's 40 MFLOPs level; with torchvision's divisible-by-8 widths 0.27x "
        "(37.8M) is the closest: 0.28x rounds the c=32 row up to 16 channels and measures 55.8M",
    ),
}


def _cases(metric: str) -> Iterator[object]:
    for name in list_backbones():
        paper: Optional[float] = getattr(get_variant(name).paper, metric)
        if paper is None:
            continue
        deviation = KNOWN_DEVIATIONS.get((name, metric))
        case_id = name if deviation is None else f"{name}-known-deviation"
        yield pytest.param(name, paper, deviation, id=case_id)


@functools.lru_cache(maxsize=None)
def _report(name: str) -> ModelReport:
    return analyze_variant(name)  # 224x224, batch 1, 1000 classes: the papers' setting


def _check(name: str, metric: str, ours: float, paper: float, deviation: Optional[Deviation]) -> None:
    rel = ours / paper - 1
    if deviation is None:
        assert abs(rel) <= TOLERANCE, (
            f"{name}: {metric} {ours / 1e6:.3f}M vs paper {paper / 1e6:.3f}M ({100 * rel:+.1f}%, "
            f"tolerance {100 * TOLERANCE:.0f}%); fix the architecture or add a KNOWN_DEVIATIONS entry with the reason"
        )
    else:
        assert ours == pytest.approx(deviation.measured, rel=1e-3), (
            f"{name}: {metric} changed from the documented {deviation.measured / 1e6:.3f}M "
            f"(paper {paper / 1e6:.3f}M; {deviation.reason}) to {ours / 1e6:.3f}M"
        )


@pytest.mark.parametrize("name, paper, deviation", list(_cases("macs")))
def test_macs_match_paper(name: str, paper: float, deviation: Optional[Deviation]) -> None:
    _check(name, "MACs", _report(name).macs, paper, deviation)


@pytest.mark.parametrize("name, paper, deviation", list(_cases("params")))
def test_params_match_paper(name: str, paper: float, deviation: Optional[Deviation]) -> None:
    _check(name, "params", _report(name).params, paper, deviation)


def test_known_deviations_are_current() -> None:
    """A stale entry (renamed variant, figure removed) would pin nothing."""
    for name, metric in KNOWN_DEVIATIONS:
        assert metric in ("macs", "params"), metric
        assert getattr(get_variant(name).paper, metric) is not None, f"{name} has no paper {metric}"


# ------------------------------------------------------------- other input sizes
def _cifar_cases(metric: str) -> Iterator[object]:
    for name, by_classes in CIFAR_FIGURES.items():
        for classes, paper in by_classes.items():
            yield pytest.param(name, classes, getattr(paper, metric), id=f"{name}-cifar{classes}")


@functools.lru_cache(maxsize=None)
def _cifar_report(name: str, classes: int) -> ModelReport:
    model = build_classifier(name, num_classes=classes, downsampling=CIFAR_DOWNSAMPLING)
    return analyze(model, input_size=CIFAR_INPUT_SIZE)


@pytest.mark.parametrize("name, classes, paper", list(_cifar_cases("macs")))
def test_cifar_macs_match_paper(name: str, classes: int, paper: float) -> None:
    _check(f"{name} (CIFAR-{classes})", "MACs", _cifar_report(name, classes).macs, paper, None)


@pytest.mark.parametrize("name, classes, paper", list(_cifar_cases("params")))
def test_cifar_params_match_paper(name: str, classes: int, paper: float) -> None:
    _check(f"{name} (CIFAR-{classes})", "params", _cifar_report(name, classes).params, paper, None)


def test_cifar_figures_name_registered_variants() -> None:
    assert set(CIFAR_FIGURES) <= set(list_backbones("seesaw")) and len(CIFAR_FIGURES) == 4
