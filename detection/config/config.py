"""Configuration access: `get_cfg()` and the detectron2-style merge helpers.

fvcore's `CfgNode` provides the key schema and the merge logic; this module adds error
messages that name the offending key and its closest valid spelling, and replaces the
YAML reading: always ``yaml.safe_load`` (``!!python/...`` tags are refused whatever the
caller asks), a key written twice in one mapping is an error naming the file, line and
key (YAML would silently keep the last value, or drop a whole first section), ``_BASE_``
only names local files (fvcore would also fetch ``http(s)://`` URLs), inheritance cycles
and non-mapping files are reported instead of recursing or failing deep inside fvcore.
"""
from __future__ import annotations

import difflib
import os
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import yaml
from fvcore.common.config import BASE_KEY
from fvcore.common.config import CfgNode as _FvCfgNode

from .defaults import _C

__all__ = ["CfgNode", "ConfigError", "get_cfg", "load_config", "load_yaml_file"]


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, wrong type, bad file)."""


def _all_keys(node: _FvCfgNode, prefix: str = "") -> List[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, _FvCfgNode):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _leaf_keys(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """``A.B.C`` for every value of a nested mapping (what a YAML file sets)."""
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _merge_dicts(src: Dict[str, Any], dst: Dict[str, Any], where: str) -> None:
    """Merge ``src`` into ``dst`` recursively (``src`` wins)."""
    for key, value in src.items():
        if isinstance(value, dict) and key in dst:
            if not isinstance(dst[key], dict):
                raise ConfigError(f"{where}: {key!r} is a section here but a value in its _BASE_")
            _merge_dicts(value, dst[key], where)
        else:
            dst[key] = value


def _check_unique_keys(node: yaml.Node, filename: str, path: Tuple[str, ...] = (), seen_nodes: Optional[set] = None) -> None:
    """`ConfigError` for a key written twice in one mapping, at any depth of ``node``."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # an alias of a node already walked
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: Dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value
            if key in first:
                mark = key_node.start_mark
                raise ConfigError(
                    f"{filename}:{mark.line + 1}:{mark.column + 1}: duplicate key {'.'.join(path + (key,))!r} "
                    f"(first at line {first[key].start_mark.line + 1}); YAML would silently keep only the last one"
                )
            first[key] = key_node
            _check_unique_keys(value_node, filename, path + (key,), seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, filename, path + (f"[{i}]",), seen_nodes)


def load_yaml_file(filename: str) -> Any:
    """The data of YAML file ``filename``, read safely (plain data only) with every key
    unique; a `ConfigError` naming the file (and line) otherwise."""
    if not os.path.isfile(filename):
        raise ConfigError(f"config file not found: {filename}")
    try:
        with open(filename, encoding="utf-8") as f:
            loader = yaml.SafeLoader(f)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None
                _check_unique_keys(node, filename)
                return loader.construct_document(node)
            finally:
                loader.dispose()
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(
            f"{filename}{pos}: refused YAML tag ({err.problem}); configs are plain data, "
            "python object tags are never loaded"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{filename}{pos}: invalid YAML: {problem}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{filename}: not UTF-8 text (byte {err.start})") from None


def _read_yaml_mapping(filename: str) -> Dict[str, Any]:
    data = load_yaml_file(filename)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}: a config must be a mapping of KEY: value, got a {type(data).__name__}")
    return data


def load_yaml_with_base(filename: str, _chain: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """``yaml.safe_load`` of ``filename`` merged over its ``_BASE_`` file(s), which are
    local paths relative to ``filename`` (or absolute, or ``~``-prefixed)."""
    real = os.path.realpath(filename)
    if real in _chain:
        raise ConfigError(f"{filename}: _BASE_ inheritance cycle: {' -> '.join(_chain + (real,))}")
    cfg = _read_yaml_mapping(filename)
    bases = cfg.pop(BASE_KEY, None)
    if bases is None:
        return cfg
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{filename}: {BASE_KEY} must be a file name or a list of file names, got {bases!r}")
    merged: Dict[str, Any] = {}
    for base in bases:
        if "://" in base:
            raise ConfigError(f"{filename}: {BASE_KEY} {base!r} is a URL; only local files are read")
        path = os.path.expanduser(base)
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(filename), path)
        if not os.path.isfile(path):
            raise ConfigError(f"{filename}: {BASE_KEY} file not found: {path}")
        _merge_dicts(load_yaml_with_base(path, _chain + (real,)), merged, filename)
    _merge_dicts(cfg, merged, filename)
    return merged


class CfgNode(_FvCfgNode):
    """fvcore CfgNode whose merge errors name the key and suggest close matches, whose
    YAML loading is always safe (see the module docstring), and which remembers the keys
    that config files and overrides gave a value (`is_set`)."""

    _SET_KEYS = "__set_keys__"

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict[str, Any]:  # noqa: ARG003
        # ``allow_unsafe`` is accepted for fvcore compatibility and ignored on purpose.
        return load_yaml_with_base(os.fspath(filename))

    def is_set(self, key: str) -> bool:
        """Whether a merged config file (with its _BASE_ chain) or a ``KEY VALUE`` override
        named ``key`` (``"A.B.C"``), as opposed to it holding the schema default. Checks
        use it to tell "left to the data" from "set on purpose" (`detection.config_checks`)."""
        return key in self.__dict__.get(self._SET_KEYS, ())

    def _note_set(self, keys: Iterable[str]) -> None:
        self.__dict__[self._SET_KEYS] = frozenset(self.__dict__.get(self._SET_KEYS, ())) | frozenset(keys)

    def _explain(self, err: Exception, source: str) -> ConfigError:
        msg = str(err)
        hint = ""
        if "Non-existent" in msg:
            key = msg.split(":", 1)[-1].strip().strip("'\"")
            close = difflib.get_close_matches(key, _all_keys(self), n=3, cutoff=0.6)
            msg = f"unknown config key {key!r}"
            if close:
                hint = f"; did you mean {' or '.join(close)}?"
        return ConfigError(f"{source}: {msg}{hint}")

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:  # noqa: ARG002
        if not os.path.isfile(cfg_filename):
            raise ConfigError(f"config file not found: {cfg_filename}")
        loaded = self.load_yaml_with_base(cfg_filename)
        try:
            self.merge_from_other_cfg(type(self)(loaded))
        except (KeyError, AssertionError) as err:
            raise self._explain(err, cfg_filename) from None
        except ValueError as err:  # type mismatch
            raise ConfigError(f"{cfg_filename}: {err}") from None
        self._note_set(_leaf_keys(loaded))

    def merge_from_list(self, cfg_list: Sequence[str]) -> None:
        if len(cfg_list) % 2:
            raise ConfigError(f"overrides must be KEY VALUE pairs, got an odd number: {list(cfg_list)}")
        try:
            super().merge_from_list(list(cfg_list))
        except (KeyError, AssertionError) as err:
            raise self._explain(err, "command line") from None
        except ValueError as err:
            raise ConfigError(f"command line: {err}") from None
        self._note_set(cfg_list[0::2])


def get_cfg() -> CfgNode:
    """A fresh copy of the defaults."""
    return CfgNode(_C.clone(), new_allowed=False)


def load_config(config_file: str = "", overrides: Sequence[str] = (), defaults: Optional[CfgNode] = None) -> CfgNode:
    """``defaults`` (the detector's `get_cfg()` unless given) <- ``config_file`` (with its
    _BASE_ chain) <- ``overrides``; frozen."""
    cfg = get_cfg() if defaults is None else defaults
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(overrides))
    cfg.freeze()
    return cfg
