"""Configuration access: `get_cfg()` and the detectron2-style merge helpers.

fvcore's `CfgNode` provides ``_BASE_`` YAML inheritance and safe YAML loading; this
module adds error messages that name the offending key and its closest valid spelling.
"""
from __future__ import annotations

import difflib
import os
from typing import List, Sequence

from fvcore.common.config import CfgNode as _FvCfgNode

from .defaults import _C

__all__ = ["CfgNode", "ConfigError", "get_cfg", "load_config"]


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


class CfgNode(_FvCfgNode):
    """fvcore CfgNode whose merge errors name the key and suggest close matches."""

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

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        if not os.path.isfile(cfg_filename):
            raise ConfigError(f"config file not found: {cfg_filename}")
        try:
            super().merge_from_file(cfg_filename, allow_unsafe=False)
        except (KeyError, AssertionError) as err:
            raise self._explain(err, cfg_filename) from None
        except ValueError as err:  # type mismatch
            raise ConfigError(f"{cfg_filename}: {err}") from None
        except Exception as err:  # YAML syntax errors carry line numbers
            if type(err).__module__.startswith("yaml"):
                raise ConfigError(f"{cfg_filename}: invalid YAML: {err}") from None
            raise

    def merge_from_list(self, cfg_list: Sequence[str]) -> None:
        if len(cfg_list) % 2:
            raise ConfigError(f"overrides must be KEY VALUE pairs, got an odd number: {list(cfg_list)}")
        try:
            super().merge_from_list(list(cfg_list))
        except (KeyError, AssertionError) as err:
            raise self._explain(err, "command line") from None
        except ValueError as err:
            raise ConfigError(f"command line: {err}") from None


def get_cfg() -> CfgNode:
    """A fresh copy of the defaults."""
    return CfgNode(_C.clone(), new_allowed=False)


def load_config(config_file: str = "", overrides: Sequence[str] = ()) -> CfgNode:
    """Defaults <- ``config_file`` (with its _BASE_ chain) <- ``overrides``; frozen."""
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(overrides))
    cfg.freeze()
    return cfg
