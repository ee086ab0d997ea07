"""detection.config_checks: every check of a config with one policy (a ConfigError line
naming the key, or a warning logged once), and the keys resolved for the run: the norm
policy, AMP, the backbone weights' input format, and the class count taken from the data."""
from __future__ import annotations

import logging

import pytest
import torch

from detection.config import ConfigError, get_cfg, load_config
from detection.config_checks import (
    check_config,
    check_weights_input_format,
    norm_policy,
    resolve_amp,
    resolve_class_count,
    resolve_norm,
    validate_config,
)
from detection.data import DatasetCatalog, MetadataCatalog
from detection.utils import comm


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
        ({"DATALOADER__BAD_SAMPLE_POLICY": "ignore"}, r"DATALOADER\.BAD_SAMPLE_POLICY must be 'error' or 'skip', got 'ignore'"),
        ({"MODEL__BACKBONE__NORM": "GN"}, r"MODEL\.BACKBONE\.NORM must be '', 'BN', 'FrozenBN' or 'SyncBN', got 'GN'"),
        ({"DATALOADER__MAX_BAD_SAMPLE_FRACTION": 1.5}, r"MAX_BAD_SAMPLE_FRACTION must be in \[0, 1\]"),
        ({"INPUT__RANDOM_FLIP": "bothh"},
         r"INPUT\.RANDOM_FLIP must be 'none', 'horizontal', 'vertical' or 'both', got 'bothh'; did you mean 'both'\?$"),
        ({"INPUT__RANDOM_FLIP": "diagonal"}, r"INPUT\.RANDOM_FLIP must be .* or 'both', got 'diagonal'$"),
        ({"INPUT__RANDOM_ROTATE90": "yes"}, r"INPUT\.RANDOM_ROTATE90 must be True or False, got 'yes'"),
    ],
)
def test_incompatible_settings_detected_at_build_time(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        validate_config(_small(**overrides))
    assert "\n" not in str(info.value)


def test_valid_configs_pass():
    validate_config(_small())
    validate_config(_small(INPUT__RANDOM_FLIP="both", INPUT__RANDOM_ROTATE90=True))
    validate_config(_small(MODEL__META_ARCHITECTURE="FasterRCNN", MODEL__FPN__ENABLED=True,
                           MODEL__ANCHOR_GENERATOR__SIZES=[[16], [32], [64], [128]]))


def test_unknown_dataset_lists_the_registered_ones():
    cfg = _small()
    cfg.DATASETS.TRAIN = ("litedet_shapes_trian",)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg.startswith("DATASETS.TRAIN: dataset 'litedet_shapes_trian' is not registered; did you mean litedet_shapes_train")
    assert all(name in msg for name in DatasetCatalog.list()) and "\n" not in msg


# ------------------------------------------------------------------ norm policy
def _norm_cfg(norm, weights="", device="cpu"):
    return _small(MODEL__BACKBONE__NORM=norm, MODEL__BACKBONE__WEIGHTS=weights, MODEL__DEVICE=device)


@pytest.mark.parametrize(
    "norm, weights, expected, why",
    [
        ("", "imagenet.pth", "FrozenBN", "pretrained MODEL.BACKBONE.WEIGHTS"),  # auto, pretrained
        ("", "", "BN", "backbone trained from scratch"),  # auto, from scratch
        ("BN", "imagenet.pth", "BN", ""),  # explicit wins
        ("FrozenBN", "", "FrozenBN", ""),
        ("SyncBN", "", "BN", "not running distributed"),  # single process: nothing to synchronise
    ],
)
def test_norm_policy(norm, weights, expected, why):
    assert norm_policy(_norm_cfg(norm, weights)) == (expected, why)
    assert resolve_norm(_norm_cfg(norm, weights)) == expected


def test_unknown_norm_is_refused():
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.NORM must be '', 'BN', 'FrozenBN' or 'SyncBN', got 'GN'"):
        resolve_norm(_norm_cfg("GN"))


def test_syncbn_under_ddp(monkeypatch):
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    assert resolve_norm(_norm_cfg("SyncBN", device="cuda")) == "SyncBN"
    assert norm_policy(_norm_cfg("SyncBN", device="cpu")) == ("BN", "SyncBatchNorm needs CUDA")  # gloo on CPU


def test_norm_policy_and_training_mistakes_are_logged_once_by_check_config(caplog):
    cfg = _small(MODEL__BACKBONE__NORM="FrozenBN", MODEL__BACKBONE__FREEZE_AT=2, SOLVER__IMS_PER_BATCH=2,
                 DATASETS__TRAIN=("litedet_shapes_train",), DATASETS__TEST=(), MODEL__ROI_HEADS__NUM_CLASSES=5)
    with caplog.at_level(logging.INFO, logger="detection.config_checks"):
        check_config(cfg)
    assert caplog.text.count("FrozenBN but neither MODEL.BACKBONE.WEIGHTS nor MODEL.WEIGHTS is set") == 1
    assert caplog.text.count("MODEL.BACKBONE.FREEZE_AT 2 freezes randomly initialised layers") == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="detection.config_checks"):
        check_config(_small(SOLVER__IMS_PER_BATCH=2, DATASETS__TRAIN=("litedet_shapes_train",), DATASETS__TEST=(),
                            MODEL__ROI_HEADS__NUM_CLASSES=5))
    assert "MODEL.BACKBONE.NORM '': BN (backbone trained from scratch)" in caplog.text
    assert "freezes" not in caplog.text and "FrozenBN" not in caplog.text


# ------------------------------------------------------------------ AMP
def test_resolve_amp():
    cfg = get_cfg()
    assert resolve_amp(cfg, torch.device("cpu")) is None
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.DTYPE = "bfloat16"
    assert resolve_amp(cfg, torch.device("cpu")) == torch.bfloat16
    cfg.SOLVER.AMP.DTYPE = "float16"
    with pytest.raises(ConfigError, match="not supported on cpu: use SOLVER.AMP.DTYPE bfloat16"):
        resolve_amp(cfg, torch.device("cpu"))
    cfg.SOLVER.AMP.DTYPE = "float8"
    with pytest.raises(ConfigError, match="SOLVER.AMP.DTYPE must be 'float16' or 'bfloat16', got 'float8'"):
        resolve_amp(cfg, torch.device("cpu"))


# ------------------------------------------------------------------ input format of the weights
BGR255 = {"INPUT.FORMAT": "BGR", "MODEL.PIXEL_MEAN": [0.0, 0.0, 0.0], "MODEL.PIXEL_STD": [1.0, 1.0, 1.0]}


@pytest.mark.parametrize(
    "weights_format, fed, warned",
    [("BGR255", {}, True), ("BGR255", BGR255, False), ("RGB", BGR255, True), ("RGB", {}, False)],
)
def test_weights_input_format_mismatch_is_warned(caplog, weights_format, fed, warned):
    cfg = get_cfg()
    for key, value in fed.items():
        section, name = key.split(".")
        cfg[section][name] = value
    with caplog.at_level(logging.WARNING, logger="detection.config_checks"):
        assert check_weights_input_format(cfg, weights_format, "w.pth") == (not warned)
    assert ("w.pth expects" in caplog.text) == warned
    if warned:
        assert ("expects BGR 0-255 input but the config feeds normalised RGB" in caplog.text) == (weights_format == "BGR255")


def test_native_detector_warns_for_shufflenet_series_weights_under_an_rgb_config(tmp_path, caplog):
    """The BGR 0-255 check also runs for the native detector (not only the detectron2
    path): weights saved with input_format BGR255 under the default RGB config warn once."""
    import backbones
    from backbones.weights import save_backbone_checkpoint

    net = backbones.build_backbone("shufflenet_v2_0.5x")
    net.input_format = "BGR255"  # what loading the authors' release records
    path = save_backbone_checkpoint(net, tmp_path / "series.pth")
    cfg = _small(MODEL__BACKBONE__WEIGHTS=str(path), DATASETS__TRAIN=("litedet_shapes_train",), DATASETS__TEST=(),
                 MODEL__ROI_HEADS__NUM_CLASSES=5, SOLVER__IMS_PER_BATCH=2)
    with caplog.at_level(logging.WARNING, logger="detection.config_checks"):
        check_config(cfg)
    assert caplog.text.count(f"{path} expects BGR 0-255 input but the config feeds normalised RGB") == 1
    caplog.clear()
    for key, value in BGR255.items():
        section, name = key.split(".")
        cfg[section][name] = value
    with caplog.at_level(logging.WARNING, logger="detection.config_checks"):
        check_config(cfg)
    assert "expects" not in caplog.text


# ------------------------------------------------------------------ class counts
def test_resolve_class_count_rule():
    cfg = get_cfg()
    assert resolve_class_count(cfg, "MODEL.ROI_HEADS.NUM_CLASSES", 3, "data", from_data=True) == 3
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3
    with pytest.raises(ConfigError, match=r"^MODEL.ROI_HEADS.NUM_CLASSES is 3 but data has 4 classes; set MODEL.ROI_HEADS.NUM_CLASSES 4"):
        resolve_class_count(cfg, "MODEL.ROI_HEADS.NUM_CLASSES", 4, "data", from_data=False)
    frozen = load_config("", ["MODEL.ROI_HEADS.NUM_CLASSES", "3"])
    assert resolve_class_count(frozen, "MODEL.ROI_HEADS.NUM_CLASSES", 3, "data", from_data=False) == 3
    assert frozen.is_frozen()


@pytest.fixture
def datasets(tmp_path, corpus):
    """A 2-class COCO json ("a", "b") and a 2-class VOC folder ("cat", "dog"), registered
    through DATASETS.REGISTER_*: COCO's classes are known only once its json is read."""
    coco = corpus.valid_coco(tmp_path / "coco", n=2)
    voc = corpus.valid_voc(tmp_path / "voc", n=2)
    names = {"coco": f"cc_coco_{tmp_path.name}", "voc": f"cc_voc_{tmp_path.name}"}
    overrides = [
        "DATASETS.REGISTER_COCO", f"[['{names['coco']}', '{coco}', '{coco.parent / 'img'}']]",
        "DATASETS.REGISTER_VOC", f"[['{names['voc']}', '{voc}', 'train', 'cat,dog']]",
        "MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "SOLVER.IMS_PER_BATCH", "2", "DATASETS.TEST", "()",
    ]
    yield names, overrides
    for name in names.values():
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize("kind", ["coco", "voc"])
def test_num_classes_left_at_its_default_is_taken_from_the_training_set(datasets, kind, caplog):
    names, overrides = datasets
    cfg = load_config("", overrides + ["DATASETS.TRAIN", f"('{names[kind]}',)"])
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    with caplog.at_level(logging.INFO, logger="detection.config_checks"):
        assert check_config(cfg) is cfg
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 2 and cfg.is_frozen()
    assert f"MODEL.ROI_HEADS.NUM_CLASSES: 2, the number of classes in DATASETS.TRAIN dataset '{names[kind]}'" in caplog.text


@pytest.mark.parametrize("kind", ["coco", "voc"])
@pytest.mark.parametrize("value", [1, 3, 80])
def test_num_classes_set_and_different_is_one_clear_error(datasets, kind, value):
    """Smaller or larger, COCO or VOC alike, and 80 set on purpose (the default's value)."""
    names, overrides = datasets
    cfg = load_config("", overrides + ["DATASETS.TRAIN", f"('{names[kind]}',)", "MODEL.ROI_HEADS.NUM_CLASSES", str(value)])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg.startswith(f"MODEL.ROI_HEADS.NUM_CLASSES is {value} but DATASETS.TRAIN dataset '{names[kind]}' (")
    assert "has 2 classes; set MODEL.ROI_HEADS.NUM_CLASSES 2" in msg and "\n" not in msg


def test_test_set_with_another_class_count_is_an_error(datasets, tmp_path, corpus):
    names, overrides = datasets
    three = corpus.write_coco(tmp_path / "coco", [], [], [{"id": i, "name": n} for i, n in enumerate("xyz", 1)], "three.json")
    other = f"cc_three_{tmp_path.name}"
    cfg = load_config("", overrides + ["DATASETS.TRAIN", f"('{names['voc']}',)", "DATASETS.TEST", f"('{other}',)"])
    cfg.defrost()
    cfg.DATASETS.REGISTER_COCO.append([other, str(three), str(tmp_path)])
    try:
        with pytest.raises(ConfigError, match=rf"the model's training set, DATASETS.TRAIN dataset '{names['voc']}', has 2 "
                                              rf"classes \[cat, dog\] but DATASETS.TEST dataset '{other}' has 3 classes "
                                              rf"\[x, y, z\] \(only the model has \[cat, dog\]; only the dataset has "
                                              rf"\[x, y, z\]\)"):
            check_config(cfg)
    finally:
        DatasetCatalog.remove(other)
        MetadataCatalog.remove(other)


def test_shipped_base_configs_leave_the_class_count_to_the_data():
    # a Base config that set it would make every derived config's own dataset an error
    from helpers import shipped_configs

    bases = shipped_configs("Base-*.yaml")
    assert bases
    for path in bases:
        assert not load_config(path).is_set("MODEL.ROI_HEADS.NUM_CLASSES"), path


# ------------------------------------------------------------------ value domains
from detection.config_checks import MODEL_DOMAINS, SOLVER_DOMAINS, Domain, check_value_domains  # noqa: E402


def _outside(domain: Domain) -> float:
    """A number just outside ``domain`` (NaN for an unbounded one)."""
    if domain.low != float("-inf"):
        return domain.low if domain.low_open else domain.low - 1
    return float("nan")


def _set_key(cfg, key, value):
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    node[last] = value


@pytest.mark.parametrize("key, domain", MODEL_DOMAINS + SOLVER_DOMAINS, ids=[k for k, _ in MODEL_DOMAINS + SOLVER_DOMAINS])
def test_every_numeric_key_has_its_domain(key, domain):
    cfg = get_cfg()
    check_value_domains(cfg, [(key, domain)])  # the defaults are inside
    default = cfg
    for part in key.split("."):
        default = default[part]
    bad = _outside(domain)
    value = [bad] if isinstance(default, (list, tuple)) else bad
    _set_key(cfg, key, value)
    with pytest.raises(ConfigError) as info:
        check_value_domains(cfg, [(key, domain)])
    msg = str(info.value)
    assert msg.startswith(f"{key} must ") and domain.describe() in msg and "\n" not in msg


@pytest.mark.parametrize("key, value, expected", [
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 2.0, "MODEL.ROI_HEADS.SCORE_THRESH_TEST must be in [0, 1], got 2.0"),
    ("MODEL.ROI_HEADS.NMS_THRESH_TEST", 1.5, "MODEL.ROI_HEADS.NMS_THRESH_TEST must be in (0, 1], got 1.5"),
    ("MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.0, "MODEL.ROI_HEADS.NMS_THRESH_TEST must be in (0, 1], got 0.0"),
    ("TEST.DETECTIONS_PER_IMAGE", 0, "TEST.DETECTIONS_PER_IMAGE must be >= 1, got 0"),
    ("MODEL.RPN.POSITIVE_FRACTION", 2.0, "MODEL.RPN.POSITIVE_FRACTION must be in (0, 1], got 2.0"),
    ("MODEL.ANCHOR_GENERATOR.SIZES", [[0, 32]], "MODEL.ANCHOR_GENERATOR.SIZES must have every value > 0, got [[0, 32]]"),
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", float("nan"), "MODEL.ROI_HEADS.SCORE_THRESH_TEST must be in [0, 1], got nan"),
])
def test_model_values_outside_their_domain_stop_every_tool(key, value, expected):
    cfg = _small()
    _set_key(cfg, key, value)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)  # what train, eval, demo and export all run
    assert str(info.value) == expected


@pytest.mark.parametrize("key, value, expected", [
    ("SOLVER.BASE_LR", -0.01, "SOLVER.BASE_LR must be > 0, got -0.01"),  # not torch's ValueError from inside the check
    ("SOLVER.BASE_LR", float("inf"), "SOLVER.BASE_LR must be > 0, got inf"),
    ("SOLVER.STEPS", (0, 5), "SOLVER.STEPS must have every value > 0, got [0, 5]"),
    ("SOLVER.WARMUP_FACTOR", 2.0, "SOLVER.WARMUP_FACTOR must be in [0, 1], got 2.0"),
    ("SOLVER.MOMENTUM", 1.0, "SOLVER.MOMENTUM must be in [0, 1), got 1.0"),
    ("SOLVER.GAMMA", 0.0, "SOLVER.GAMMA must be > 0, got 0.0"),
])
def test_solver_values_outside_their_domain_are_config_errors(key, value, expected):
    cfg = _small(SOLVER__IMS_PER_BATCH=2, DATASETS__TRAIN=("litedet_shapes_train",), DATASETS__TEST=(),
                 MODEL__ROI_HEADS__NUM_CLASSES=5)
    _set_key(cfg, key, value)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value) == expected


def test_warmup_longer_than_the_run_is_warned(caplog):
    cfg = _small(SOLVER__IMS_PER_BATCH=2, SOLVER__MAX_ITER=10, SOLVER__WARMUP_ITERS=1000,
                 DATASETS__TRAIN=("litedet_shapes_train",), DATASETS__TEST=(), MODEL__ROI_HEADS__NUM_CLASSES=5)
    with caplog.at_level(logging.WARNING, logger="detection.config_checks"):
        check_config(cfg)
    assert caplog.text.count("SOLVER.WARMUP_ITERS 1000 > SOLVER.MAX_ITER 10: the run ends during warm-up") == 1


def test_training_needs_an_output_dir():
    cfg = _small(OUTPUT_DIR="", SOLVER__IMS_PER_BATCH=2, DATASETS__TRAIN=("litedet_shapes_train",), DATASETS__TEST=())
    with pytest.raises(ConfigError, match=r"^OUTPUT_DIR is empty: training writes checkpoints, metrics and its log there"):
        check_config(cfg)
    check_config(_small(OUTPUT_DIR="", DATASETS__TEST=(), MODEL__ROI_HEADS__NUM_CLASSES=5), train=False)  # eval writes nothing there


# ------------------------------------------------------------------ the classes MODEL.WEIGHTS records
@pytest.fixture
def recorded_weights(tmp_path):
    """A detector checkpoint recording the classes [cat, dog], and one recording none."""
    from detection.checkpoint import DetectionCheckpointer
    from detection.model_info import model_info_from_cfg
    from detection.modeling import build_model

    cfg = load_config("", ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "MODEL.ROI_HEADS.NUM_CLASSES", "2"])
    model = build_model(cfg)
    DetectionCheckpointer(model, str(tmp_path / "new"), model_info=model_info_from_cfg(cfg, ["cat", "dog"])).save("m")
    DetectionCheckpointer(model, str(tmp_path / "old")).save("m")
    return str(tmp_path / "new" / "m.pth"), str(tmp_path / "old" / "m.pth")


def test_evaluation_takes_the_class_count_from_the_checkpoint(recorded_weights, caplog):
    new, _ = recorded_weights
    cfg = load_config("", ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "DATASETS.TEST", "()", "MODEL.WEIGHTS", new])
    with caplog.at_level(logging.INFO, logger="detection.config_checks"):
        check_config(cfg, train=False)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 2
    assert f"MODEL.ROI_HEADS.NUM_CLASSES: 2, the number of classes in the model in MODEL.WEIGHTS {new} (cat, dog)" in caplog.text
    explicit = load_config("", ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "DATASETS.TEST", "()", "MODEL.WEIGHTS", new,
                                "MODEL.ROI_HEADS.NUM_CLASSES", "3"])
    with pytest.raises(ConfigError, match=rf"^MODEL.ROI_HEADS.NUM_CLASSES is 3 but the model in MODEL.WEIGHTS {new} "
                                          r"\(cat, dog\) has 2 classes; set MODEL.ROI_HEADS.NUM_CLASSES 2"):
        check_config(explicit, train=False)


@pytest.mark.parametrize("classes, error", [
    ("dog,cat", None),  # another order: evaluation maps the labels by name
    ("cat,bird", "only the model has [dog]; only the dataset has [bird]"),
    ("cat,dog,bird", "only the dataset has [bird]"),
])
def test_test_set_classes_are_compared_with_the_checkpoint_by_name(recorded_weights, corpus, tmp_path, caplog, classes,
                                                                   error):
    new, old = recorded_weights
    root = corpus.valid_voc(tmp_path / "voc", n=1)
    name = f"cc_rec_{tmp_path.name}"
    opts = ["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x", "DATASETS.REGISTER_VOC", f"[['{name}', '{root}', 'train', '{classes}']]",
            "DATASETS.TEST", f"('{name}',)"]
    try:
        cfg = load_config("", [*opts, "MODEL.WEIGHTS", new])
        if error is None:
            check_config(cfg, train=False)
        else:
            with pytest.raises(ConfigError) as info:
                check_config(cfg, train=False)
            msg = str(info.value)
            assert msg.startswith(f"the model in MODEL.WEIGHTS {new} has 2 classes [cat, dog] but DATASETS.TEST dataset "
                                  f"'{name}' has {len(classes.split(','))} classes [{classes.replace(',', ', ')}]")
            assert error in msg and "\n" not in msg
        # a checkpoint recording no names: nothing to compare, said once
        cfg = load_config("", [*opts, "MODEL.WEIGHTS", old, "MODEL.ROI_HEADS.NUM_CLASSES", str(len(classes.split(",")))])
        with caplog.at_level(logging.WARNING, logger="detection.config_checks"):
            check_config(cfg, train=False)
        assert caplog.text.count(f"MODEL.WEIGHTS {old} records no class names") == 1
    finally:
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
