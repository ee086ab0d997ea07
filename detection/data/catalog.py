"""Dataset and metadata catalogs, and user-dataset registration.

Mirrors detectron2: a dataset is a *name* bound to a zero-argument function returning
records (see `detection.data` for the record format), plus a `Metadata` object holding
what evaluators and visualisers need (class names, annotation file, ...). Registration is
cheap and lazy: nothing is read until ``DatasetCatalog.get(name)`` is called, so importing
this module never touches the disk. The built-in datasets are registered by
`detection.data.builtin`.

The data root is ``$LITEDET_DATASETS`` (default ``datasets``, relative to the working
directory, like detectron2's ``DETECTRON2_DATASETS``). It is resolved when a built-in
dataset is *loaded*, not when it is registered, so the variable can be changed at any time
before loading (tests rely on that).
"""
from __future__ import annotations

import difflib
import functools
import logging
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .voc import VOC_CLASSES

__all__ = [
    "DatasetCatalog",
    "MetadataCatalog",
    "Metadata",
    "DATA_ROOT_ENV",
    "get_data_root",
    "register_coco_instances",
    "register_pascal_voc",
    "register_from_cfg",
    "parse_class_list",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable naming the data root; mirrors detectron2's DETECTRON2_DATASETS.
DATA_ROOT_ENV = "LITEDET_DATASETS"


def get_data_root() -> str:
    """The directory built-in datasets live under: ``$LITEDET_DATASETS`` or ``datasets``.

    Read on every call (not cached at import) so that changing the variable, e.g. in a
    test, takes effect for the next load.
    """
    return os.path.expanduser(os.environ.get(DATA_ROOT_ENV, "datasets"))


def _close_matches(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _normalise(value: Any) -> Any:
    """Make tuples and lists compare equal (YAML gives lists, code often tuples)."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _spec(func: Any) -> Any:
    """What makes two registered loader functions 'the same'.

    Registration is usually done with ``functools.partial`` objects, which compare by
    identity; comparing their function and arguments instead lets code that registers the
    same dataset twice (a config merged twice, a module imported under two names) proceed,
    while a genuinely different dataset under a taken name is still refused.
    """
    if isinstance(func, functools.partial):
        return (
            "partial",
            _spec(func.func),
            _normalise(tuple(func.args)),
            _normalise(dict(sorted(func.keywords.items()))),
        )
    if hasattr(func, "__func__") and hasattr(func, "__self__"):  # bound method
        return ("method", func.__func__, id(func.__self__))
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if qualname and module and "<lambda>" not in qualname and "<locals>" not in qualname:
        return ("function", module, qualname)
    return ("object", func)


# ---------------------------------------------------------------------------- datasets


class _DatasetCatalog:
    """Global map from dataset name to a function returning that dataset's records.

    A name maps to a *function* rather than to data so that registering every built-in
    dataset costs nothing; data is read only by `get`.
    """

    def __init__(self) -> None:
        self._funcs: Dict[str, Callable[[], List[Dict[str, Any]]]] = {}

    def register(self, name: str, func: Callable[[], List[Dict[str, Any]]]) -> None:
        """Bind ``name`` to ``func`` (called with no arguments, returns ``list[dict]``).

        Re-registering a name with an equal spec (the same function, or a
        ``functools.partial`` of the same function with equal arguments) is a no-op; a
        different spec raises ``ValueError`` — call `remove` first to replace a dataset.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"dataset name must be a non-empty string, got {name!r}")
        if not callable(func):
            raise TypeError(f"dataset {name!r}: loader must be callable, got {type(func).__name__}")
        existing = self._funcs.get(name)
        if existing is not None:
            if existing is func or _spec(existing) == _spec(func):
                return
            raise ValueError(
                f"dataset {name!r} is already registered with a different loader "
                f"({_describe(existing)} vs {_describe(func)}); use another name or "
                f"DatasetCatalog.remove({name!r}) first"
            )
        self._funcs[name] = func

    def get(self, name: str) -> List[Dict[str, Any]]:
        """Load and return the records of dataset ``name``.

        Raises ``KeyError`` naming the registered datasets and the closest matches when
        ``name`` is unknown.
        """
        try:
            func = self._funcs[name]
        except KeyError:
            raise KeyError(
                f"dataset {name!r} is not registered{_close_matches(name, self._funcs)} "
                f"Registered datasets: {', '.join(sorted(self._funcs))}. Register your own "
                "with register_coco_instances / register_pascal_voc or DATASETS.REGISTER_COCO / "
                "DATASETS.REGISTER_VOC (see datasets/README.md)."
            ) from None
        records = func()
        if not isinstance(records, list):
            raise TypeError(
                f"dataset {name!r}: the registered loader must return a list of dicts, "
                f"got {type(records).__name__}"
            )
        return records

    def list(self) -> List[str]:
        """Names of all registered datasets, sorted."""
        return sorted(self._funcs)

    def remove(self, name: str) -> None:
        """Unregister ``name`` (``KeyError`` when it is not registered)."""
        if name not in self._funcs:
            raise KeyError(f"dataset {name!r} is not registered{_close_matches(name, self._funcs)}")
        del self._funcs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._funcs

    def __repr__(self) -> str:
        return f"DatasetCatalog(registered={self.list()})"


def _describe(func: Any) -> str:
    if isinstance(func, functools.partial):
        args = ", ".join([repr(a) for a in func.args] + [f"{k}={v!r}" for k, v in func.keywords.items()])
        return f"{_describe(func.func)}({args})"
    return getattr(func, "__qualname__", repr(func))


# ---------------------------------------------------------------------------- metadata


class Metadata:
    """Per-dataset attributes that evaluators and visualisers need.

    Known attributes: ``thing_classes``, ``evaluator_type`` ("coco" | "voc"),
    ``json_file``, ``image_root``, ``dirname``, ``split``, ``year``,
    ``thing_dataset_id_to_contiguous_id``. Any other attribute may be set too.

    As in detectron2, an attribute that is set cannot silently change: setting it again
    to a different value raises ``ValueError``. That catches, e.g., two annotation files
    with different class lists registered under one name.
    """

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_values", {})
        # Attributes computed on access (built-in paths depend on $LITEDET_DATASETS).
        object.__setattr__(self, "_lazy", {})

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        values: Dict[str, Any] = self.__dict__["_values"]
        if key in values:
            return values[key]
        lazy: Dict[str, Callable[[], Any]] = self.__dict__["_lazy"]
        if key in lazy:
            return lazy[key]()
        known = sorted(set(values) | set(lazy))
        raise AttributeError(
            f"metadata of dataset {self.name!r} has no attribute {key!r}"
            f"{_close_matches(key, known)} (set: {', '.join(known) or 'nothing'})"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        self.set(**{key: value})

    def set(self, **kwargs: Any) -> "Metadata":
        """Set several attributes at once; returns ``self`` for chaining."""
        for key, value in kwargs.items():
            if key == "name":
                if value != self.name:
                    raise ValueError(f"metadata of {self.name!r}: 'name' cannot be changed to {value!r}")
                continue
            if key in self._values or key in self._lazy:
                old = getattr(self, key)
                if _normalise(old) != _normalise(value):
                    raise ValueError(
                        f"metadata {key!r} of dataset {self.name!r} is already {old!r}; refusing to "
                        f"change it to {value!r} (use MetadataCatalog.remove({self.name!r}) to reset)"
                    )
                if key in self._lazy:
                    continue  # equal to the computed value: keep it lazy
            self._values[key] = value
        return self

    def set_lazy(self, **factories: Callable[[], Any]) -> "Metadata":
        """Attributes whose value is computed at access time (by zero-argument callables)."""
        for key, factory in factories.items():
            if key in self._values:
                raise ValueError(f"metadata {key!r} of dataset {self.name!r} is already set")
            self._lazy[key] = factory
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """``getattr`` with a default, for optional attributes."""
        try:
            return getattr(self, key)
        except AttributeError:
            return default

    def as_dict(self) -> Dict[str, Any]:
        """All attributes, lazy ones resolved."""
        out = {"name": self.name}
        out.update({k: f() for k, f in self._lazy.items()})
        out.update(self._values)
        return out

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items() if k != "name")
        return f"Metadata(name={self.name!r}, {items})"


class _MetadataCatalog:
    """Global map from dataset name to its `Metadata` (created on first access)."""

    def __init__(self) -> None:
        self._metas: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        """The metadata of ``name``, created empty if this is the first access.

        Creating on access (as detectron2 does) lets loaders fill in attributes such as
        ``thing_classes`` while reading the annotation file.
        """
        meta = self._metas.get(name)
        if meta is None:
            meta = self._metas[name] = Metadata(name)
        return meta

    def list(self) -> List[str]:
        return sorted(self._metas)

    def remove(self, name: str) -> None:
        self._metas.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._metas


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()


# ---------------------------------------------------------------------------- user datasets


def _load_coco(json_file: str, image_root: str, name: str, allow_outside_root: bool = False) -> List[Dict[str, Any]]:
    from .coco import load_coco_json

    return load_coco_json(json_file, image_root, dataset_name=name, allow_outside_root=allow_outside_root)


def _load_voc(dirname: str, split: str, class_names: Tuple[str, ...]) -> List[Dict[str, Any]]:
    from .voc import load_voc_instances

    return load_voc_instances(dirname, split, class_names)


def register_coco_instances(
    name: str,
    json_file: PathLike,
    image_root: PathLike,
    metadata: Optional[Mapping[str, Any]] = None,
    allow_outside_root: bool = False,
) -> None:
    """Register a COCO-format detection dataset (``json_file`` + images under ``image_root``).

    Class names and the category-id mapping are read from the json when the dataset is
    first loaded. Registering the same name with the same paths again is a no-op.
    ``allow_outside_root`` lets ``file_name`` entries leave ``image_root`` (absolute
    paths, ``..``); by default such an entry is an error.
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    loader = functools.partial(_load_coco, json_file, image_root, name)
    if allow_outside_root:  # keep the default spec identical to earlier registrations
        loader = functools.partial(_load_coco, json_file, image_root, name, True)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **dict(metadata or {})
    )


def register_pascal_voc(
    name: str,
    dirname: PathLike,
    split: str,
    class_names: Optional[Sequence[str]] = None,
    year: int = 2007,
) -> None:
    """Register a Pascal-VOC-layout dataset (``Annotations/``, ``JPEGImages/``,
    ``ImageSets/Main/<split>.txt`` under ``dirname``).

    ``class_names`` defaults to the 20 VOC classes; its order defines the contiguous ids.
    ``year`` is kept for the evaluator (2007 selects the 11-point AP of the VOC2007 devkit).
    """
    dirname = os.fspath(dirname)
    classes = tuple(VOC_CLASSES if class_names is None else parse_class_list(class_names, f"dataset {name!r}"))
    DatasetCatalog.register(name, functools.partial(_load_voc, dirname, split, classes))
    MetadataCatalog.get(name).set(
        thing_classes=list(classes), dirname=dirname, split=split, year=int(year), evaluator_type="voc"
    )


def parse_class_list(raw: Union[str, Sequence[Any]], where: str) -> List[str]:
    """Class names from ``"a,b,c"`` or a list (names stripped, empty entries skipped): the
    one parser of REGISTER_VOC class strings, `register_pascal_voc` and ``check_dataset
    --classes``. ``ValueError`` naming ``where`` for an empty list or a repeated name (the
    order gives the class ids, so a repeat is always a mistake)."""
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    classes = [str(c).strip() for c in parts if str(c).strip()]
    if not classes:
        raise ValueError(f"{where}: the class list {raw!r} names no class")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"{where}: duplicate class names {repeated} in {classes}")
    return classes


def register_from_cfg(cfg: Any) -> List[str]:
    """Register ``DATASETS.REGISTER_COCO`` and ``DATASETS.REGISTER_VOC`` entries.

    ``REGISTER_COCO``: ``[[name, json_file, image_root], ...]``;
    ``REGISTER_VOC``: ``[[name, voc_root, split, "class1,class2,..."], ...]`` (the class
    string is optional, VOC's 20 classes by default; a list of names works too, and an
    optional fifth element gives the year). Safe to call more than once with the same
    config. Returns the names registered.
    """
    names: List[str] = []
    for i, entry in enumerate(cfg.DATASETS.REGISTER_COCO):
        where = f"DATASETS.REGISTER_COCO[{i}]"
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise ValueError(f"{where} must be [name, json_file, image_root], got {entry!r}")
        name, json_file, image_root = (str(x) for x in entry)
        register_coco_instances(
            name, json_file, image_root, allow_outside_root=bool(cfg.DATASETS.get("ALLOW_PATHS_OUTSIDE_ROOT", False))
        )
        names.append(name)
    for i, entry in enumerate(cfg.DATASETS.REGISTER_VOC):
        where = f"DATASETS.REGISTER_VOC[{i}]"
        if not isinstance(entry, (list, tuple)) or not 3 <= len(entry) <= 5:
            raise ValueError(f"{where} must be [name, voc_root, split, 'class1,class2,...'], got {entry!r}")
        name, root, split = (str(x) for x in entry[:3])
        classes: Optional[List[str]] = None
        if len(entry) >= 4 and entry[3] not in (None, ""):
            classes = parse_class_list(entry[3], f"{where} (dataset {name!r})")
        year = int(entry[4]) if len(entry) == 5 else 2007
        register_pascal_voc(name, root, split, classes, year=year)
        names.append(name)
    return names
