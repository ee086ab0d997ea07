"""Registering into detectron2's registries without failing on a re-import."""
from __future__ import annotations

from typing import Any, TypeVar

from fvcore.common.registry import Registry

__all__ = ["register_once"]

T = TypeVar("T")


def register_once(registry: Registry, obj: T) -> T:
    """Register ``obj`` under its ``__name__``.

    detectron2's registries refuse a second registration of a name. A module imported
    twice (``importlib.reload``, notebooks) re-registers the *same* definition: that one
    replaces the entry; a different object under a taken name still fails.
    """
    name = obj.__name__
    existing: Any = registry._obj_map.get(name)  # fvcore keeps no public "replace"
    if existing is not None and (existing.__module__, existing.__qualname__) == (obj.__module__, obj.__qualname__):
        registry._obj_map[name] = obj
    else:
        registry.register(obj)
    return obj
