"""The backbone registry: every variant (e.g. ``shufflenet_v2_1.0x``) under its own name.

Each entry is a `BackboneVariant`: a callable that builds the `Backbone` with the
variant's architecture arguments fixed, plus the paper's figures for that variant so
the analyzer and the fidelity tests can compare against them.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple, TypeVar

from fvcore.common.registry import Registry

__all__ = [
    "ReimportSafeRegistry",
    "register_once",
    "BACKBONE_REGISTRY",
    "BackboneVariant",
    "PaperFigures",
    "register_variant",
    "build_backbone",
    "list_backbones",
    "get_variant",
]

T = TypeVar("T")


@dataclass(frozen=True)
class PaperFigures:
    """What the paper reports for a variant at 224x224, classifier included."""

    macs: Optional[float] = None  # multiply-adds (the papers' "FLOPs")
    params: Optional[float] = None
    source: str = ""
    top1_error: Optional[float] = None


@dataclass(frozen=True)
class BackboneVariant:
    """A registered variant: ``variant(**kwargs)`` builds the backbone."""

    name: str
    builder: Callable[..., Any]
    arch_kwargs: Tuple[Tuple[str, Any], ...] = ()
    family: str = ""
    paper: PaperFigures = field(default_factory=PaperFigures)
    alias_of: Optional[str] = None

    def __call__(self, **kwargs: Any) -> Any:
        merged = dict(self.arch_kwargs)
        clash = set(merged) & set(kwargs)
        if clash:
            raise TypeError(f"{self.name}: {sorted(clash)} are fixed by the variant and cannot be overridden")
        merged.update(kwargs)
        return self.builder(**merged)

    @property
    def identity(self) -> Tuple[str, str, Tuple[Tuple[str, Any], ...]]:
        return (self.builder.__module__, self.builder.__qualname__, self.arch_kwargs)


def _identity(obj: Any) -> Any:
    """What makes two registrations 'the same' across re-imports of a module."""
    if hasattr(obj, "identity"):
        return obj.identity
    return (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))


def register_once(registry: Registry, obj: T, name: Optional[str] = None) -> T:
    """Register ``obj`` in ``registry`` (any fvcore `Registry`, detectron2's included) under
    ``name`` (default ``obj.__name__``), tolerating a module imported twice.

    fvcore refuses any second registration of a name; importing a module under two names
    (``python -m``, ``importlib.reload``, notebooks) would then crash. A re-registration of
    the *same* definition (same module, qualified name and arguments) replaces the entry; a
    different object under a taken name still fails with a `KeyError`.
    """
    name = obj.__name__ if name is None else name
    existing = registry._obj_map.get(name)  # fvcore keeps no public "replace"
    if existing is not None and _identity(existing) != _identity(obj):
        raise KeyError(f"{name!r} is already registered in {registry._name} by a different object")
    registry._obj_map[name] = obj
    return obj


class ReimportSafeRegistry(Registry):
    """fvcore `Registry` whose registrations follow `register_once`, and whose failed
    lookups name close matches."""

    def _do_register(self, name: str, obj: Any) -> None:  # noqa: D401 - fvcore hook
        register_once(self, obj, name)

    def get(self, name: str) -> Any:
        obj = self._obj_map.get(name)
        if obj is None:
            names = sorted(self._obj_map)
            close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            listing = ", ".join(names) if len(names) <= 12 else f"{len(names)} entries"
            raise KeyError(f"No object named {name!r} in registry {self._name}.{hint} Registered: {listing}.")
        return obj


BACKBONE_REGISTRY = ReimportSafeRegistry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = "Every backbone variant, by name (e.g. 'shufflenet_v2_1.0x')."


def register_variant(
    name: str,
    builder: Callable[..., Any],
    *,
    family: str,
    paper: Optional[PaperFigures] = None,
    alias_of: Optional[str] = None,
    **arch_kwargs: Any,
) -> BackboneVariant:
    """Register ``builder`` with ``arch_kwargs`` fixed under ``name``."""
    variant = BackboneVariant(
        name=name,
        builder=builder,
        arch_kwargs=tuple(sorted(arch_kwargs.items())),
        family=family,
        paper=paper or PaperFigures(),
        alias_of=alias_of,
    )
    BACKBONE_REGISTRY._do_register(name, variant)
    return variant


def get_variant(name: str) -> BackboneVariant:
    return BACKBONE_REGISTRY.get(name)


def build_backbone(name: str, **kwargs: Any) -> Any:
    """Build the registered variant ``name``; ``kwargs`` go to the backbone class
    (``out_features``, ``freeze_at``, ...)."""
    return get_variant(name)(**kwargs)


def list_backbones(family: Optional[str] = None, include_aliases: bool = True) -> List[str]:
    names = []
    for name, variant in BACKBONE_REGISTRY:
        if family is not None and variant.family != family:
            continue
        if not include_aliases and variant.alias_of is not None:
            continue
        names.append(name)
    return sorted(names)


@functools.lru_cache(maxsize=None)
def width_tag(width: float) -> str:
    """1.0 -> '1.0x', 0.25 -> '0.25x' (the registry's width spelling)."""
    return f"{width:g}x" if width != int(width) else f"{width:.1f}x"
