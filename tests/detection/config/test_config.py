"""Loading a config: errors are one ConfigError line naming the key/file; YAML is loaded
safely (python tags refused, _BASE_ local only, cycles reported); the config remembers
which keys its files and overrides set."""
from __future__ import annotations

import os

import pytest

from detection.config import ConfigError, get_cfg, load_config
from helpers import REPO_ROOT as ROOT


def _yaml(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------ schema
def test_unknown_key_suggests_close_matches(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg\.yaml: unknown config key 'SOLVER\.BASE_RL'; did you mean SOLVER\.BASE_LR"):
        load_config(_yaml(tmp_path, "SOLVER:\n  BASE_RL: 0.1\n"))
    with pytest.raises(ConfigError, match=r"command line: unknown config key 'INPUT\.MAX_IMAGE_PIXEL'; did you mean INPUT\.MAX_IMAGE_PIXELS"):
        load_config("", ["INPUT.MAX_IMAGE_PIXEL", "10"])


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg\.yaml: .*Type mismatch.*SOLVER\.MAX_ITER"):
        load_config(_yaml(tmp_path, "SOLVER:\n  MAX_ITER: many\n"))
    with pytest.raises(ConfigError, match=r"command line: .*Type mismatch.*DATALOADER\.NUM_WORKERS"):
        load_config("", ["DATALOADER.NUM_WORKERS", "'two'"])


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("SOLVER: [1, 2\n", r"cfg\.yaml:2:1: invalid YAML"),
        ("- a\n- b\n", r"cfg\.yaml: a config must be a mapping of KEY: value, got a list"),
        ("", None),  # an empty file is an empty config
    ],
)
def test_yaml_shape_errors(tmp_path, text, pattern):
    path = _yaml(tmp_path, text)
    if pattern is None:
        assert load_config(path).SOLVER.BASE_LR == get_cfg().SOLVER.BASE_LR
    else:
        with pytest.raises(ConfigError, match=pattern):
            load_config(path)


# ------------------------------------------------------------------ YAML safety
@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
        "!!python/name:os.system",
    ],
)
def test_python_tags_are_refused_and_never_executed(tmp_path, tag):
    marker = tmp_path / "pwned"
    path = _yaml(tmp_path, "SOLVER:\n  BASE_LR: " + tag.format(marker=marker) + "\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml:2:\d+: refused YAML tag"):
        load_config(path)
    # fvcore's own switch must not re-enable unsafe loading either
    cfg = get_cfg()
    with pytest.raises(ConfigError, match="refused YAML tag"):
        cfg.merge_from_file(path, allow_unsafe=True)
    assert not marker.exists()


def test_python_tag_in_a_base_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _yaml(tmp_path, f"SOLVER:\n  BASE_LR: !!python/object/apply:os.system ['touch {marker}']\n", "base.yaml")
    with pytest.raises(ConfigError, match=r"base\.yaml:2:\d+: refused YAML tag"):
        load_config(_yaml(tmp_path, "_BASE_: base.yaml\n"))
    assert not marker.exists()


def test_base_urls_missing_files_and_cycles(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg\.yaml: _BASE_ 'https://example\.com/evil\.yaml' is a URL; only local files"):
        load_config(_yaml(tmp_path, "_BASE_: https://example.com/evil.yaml\n"))
    with pytest.raises(ConfigError, match=r"cfg\.yaml: _BASE_ file not found: .*nope\.yaml"):
        load_config(_yaml(tmp_path, "_BASE_: nope.yaml\n"))
    with pytest.raises(ConfigError, match=r"_BASE_ must be a file name or a list of file names, got 3"):
        load_config(_yaml(tmp_path, "_BASE_: 3\n"))
    _yaml(tmp_path, "_BASE_: b.yaml\nSOLVER:\n  BASE_LR: 0.1\n", "a.yaml")
    _yaml(tmp_path, "_BASE_: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match=r"_BASE_ inheritance cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(str(tmp_path / "a.yaml"))


def test_base_inheritance_still_works(tmp_path):
    _yaml(tmp_path, "SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 7\n", "base.yaml")
    os.makedirs(tmp_path / "sub")
    cfg = load_config(_yaml(tmp_path, "_BASE_: ../base.yaml\nSOLVER:\n  MAX_ITER: 9\n", "sub/leaf.yaml"))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (0.5, 9)
    shipped = load_config(os.path.join(ROOT, "configs", "quickstart", "lighthead_shufflenet_v2_shapes.yaml"))
    assert shipped.MODEL.META_ARCHITECTURE == "LightHeadRCNN"


# ------------------------------------------------------------------ which keys were set
def test_is_set_names_the_keys_of_files_bases_and_overrides(tmp_path):
    _yaml(tmp_path, "SOLVER:\n  BASE_LR: 0.5\n", "base.yaml")
    cfg = load_config(_yaml(tmp_path, "_BASE_: base.yaml\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 80\n"), ["SEED", "3"])
    assert cfg.is_set("SOLVER.BASE_LR") and cfg.is_set("SEED")
    assert cfg.is_set("MODEL.ROI_HEADS.NUM_CLASSES")  # set, although to the default value
    assert not cfg.is_set("SOLVER.MAX_ITER") and not cfg.is_set("MODEL.ROI_HEADS")
    assert cfg.clone().is_set("SEED") and not get_cfg().is_set("SEED")


# ------------------------------------------------------------------ duplicate keys
@pytest.mark.parametrize(
    "text, where, key, first",
    [
        ("SOLVER:\n  MAX_ITER: 7\n  MAX_ITER: 9\n", "3:3", "SOLVER.MAX_ITER", 2),
        # a second section would silently drop the whole first one
        ("SOLVER:\n  MAX_ITER: 7\n  BASE_LR: 0.5\nMODEL:\n  DEVICE: cpu\nSOLVER:\n  MAX_ITER: 9\n", "6:1", "SOLVER", 1),
        ("MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 3\n    SCORE_THRESH_TEST: 0.1\n    NUM_CLASSES: 4\n", "5:5",
         "MODEL.ROI_HEADS.NUM_CLASSES", 3),
    ],
)
def test_duplicate_key_names_file_line_and_key(tmp_path, text, where, key, first):
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}:{where}: duplicate key {key!r} (first at line {first}); YAML would silently keep only the last one"
    )


def test_duplicate_key_in_a_base_file_is_found(tmp_path):
    base = _yaml(tmp_path, "INPUT:\n  MIN_SIZE_TEST: 256\n  MIN_SIZE_TEST: 320\n", "base.yaml")
    leaf = _yaml(tmp_path, "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 9\n")
    with pytest.raises(ConfigError, match=rf"^{base}:3:3: duplicate key 'INPUT.MIN_SIZE_TEST' \(first at line 2\)"):
        load_config(leaf)


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    from detection.config import load_yaml_file

    path = _yaml(tmp_path, "base: &b {X: 1, Y: 2}\nother:\n  <<: *b\n  X: 3\n")
    assert load_yaml_file(path) == {"base": {"X": 1, "Y": 2}, "other": {"X": 3, "Y": 2}}
