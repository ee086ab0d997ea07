"""Config errors are one ConfigError line naming the key/file; YAML is loaded safely
(python tags refused, _BASE_ local only, cycles reported); model incompatibilities are
found before training by `validate_config`."""
from __future__ import annotations

import os

import pytest

from detection.config import ConfigError, get_cfg, load_config
from detection.config.validate import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


# ------------------------------------------------------------------ registries and model compatibility
def test_unknown_backbone_lists_the_registered_ones():
    import backbones

    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "shufflenet_v2_1.0"
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    msg = str(info.value)
    assert msg.startswith("MODEL.BACKBONE.NAME: unknown 'shufflenet_v2_1.0'; did you mean shufflenet_v2_1.0x")
    assert all(name in msg for name in backbones.list_backbones()) and "\n" not in msg


def test_unknown_meta_architecture_lists_the_registered_ones():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
    with pytest.raises(ConfigError, match=r"MODEL\.META_ARCHITECTURE: unknown 'RetinaNet' \(registered: FasterRCNN, LightHeadRCNN\)"):
        validate_config(cfg)


def _small(**overrides):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "shufflenet_v2_0.5x"
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"MODEL__BACKBONE__HEAD_FEATURE": "stage2"}, r"HEAD_FEATURE 'stage2' \(stride 8\) is finer than MODEL\.BACKBONE\.RPN_FEATURE"),
        ({"MODEL__BACKBONE__RPN_FEATURE": "stage9"}, r"RPN_FEATURE: 'stage9' is not a stage of shufflenet_v2_0\.5x; stages \(stride\)"),
        ({"MODEL__META_ARCHITECTURE": "FasterRCNN", "MODEL__BACKBONE__RPN_FEATURE": "conv5"}, r"model config \(FasterRCNN \+ shufflenet_v2_0\.5x\): C4 Faster R-CNN needs stages after 'conv5'"),
        ({"MODEL__ANCHOR_GENERATOR__SIZES": [[32], [64]]}, r"MODEL\.ANCHOR_GENERATOR\.SIZES has 2 levels, the RPN sees 1"),
        ({"MODEL__FPN__ENABLED": True}, r"MODEL\.FPN\.ENABLED needs MODEL\.META_ARCHITECTURE FasterRCNN"),
        ({"MODEL__LIGHT_HEAD__KERNEL_SIZE": 14}, r"MODEL\.LIGHT_HEAD\.KERNEL_SIZE must be odd, got 14"),
        ({"MODEL__LIGHT_HEAD__CHANNELS_PER_BIN": 0}, r"MODEL\.LIGHT_HEAD\.CHANNELS_PER_BIN must be positive"),
        ({"MODEL__ROI_HEADS__IOU_THRESHOLDS": [0.7, 0.3]}, r"MODEL\.ROI_HEADS\.IOU_THRESHOLDS must be increasing values in \[0, 1\]"),
        ({"MODEL__PIXEL_STD": [1.0, 0.0, 1.0]}, r"MODEL\.PIXEL_MEAN/PIXEL_STD must be 3 numbers each, std > 0"),
        ({"INPUT__FORMAT": "RGBA"}, r"INPUT\.FORMAT must be 'RGB' or 'BGR', got 'RGBA'"),
        ({"DATALOADER__BAD_SAMPLE_POLICY": "ignore"}, r"DATALOADER\.BAD_SAMPLE_POLICY must be one of \['error', 'skip'\]"),
        ({"DATALOADER__MAX_BAD_SAMPLE_FRACTION": 1.5}, r"MAX_BAD_SAMPLE_FRACTION must be in \[0, 1\]"),
    ],
)
def test_incompatible_settings_detected_at_build_time(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        validate_config(_small(**overrides))
    assert "\n" not in str(info.value)


def test_valid_configs_pass():
    validate_config(_small())
    validate_config(_small(MODEL__META_ARCHITECTURE="FasterRCNN", MODEL__FPN__ENABLED=True,
                           MODEL__ANCHOR_GENERATOR__SIZES=[[16], [32], [64], [128]]))


def test_unknown_dataset_lists_the_registered_ones():
    from detection.data import DatasetCatalog
    from detection.engine import check_config

    cfg = _small()
    cfg.DATASETS.TRAIN = ("litedet_shapes_trian",)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg.startswith("DATASETS.TRAIN: dataset 'litedet_shapes_trian' is not registered; did you mean litedet_shapes_train")
    assert all(name in msg for name in DatasetCatalog.list()) and "\n" not in msg
