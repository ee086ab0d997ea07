"""Config checks of the protocol keys (`detection.config_checks.check_protocol_keys`):
one-line errors before anything is built or trained."""
import pytest

from detection.config import ConfigError, get_cfg
from detection.config_checks import check_config, validate_config


def _small(**overrides):
    """The defaults with a small backbone and ``KEY__SUB=value`` overrides."""
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.BACKBONE.NAME", "shufflenet_v2_0.5x"])
    cfg.merge_from_list([item for k, v in overrides.items() for item in (k.replace("__", "."), repr(v))])
    return cfg


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"MODEL__ROI_HEADS__BATCH_SIZE_PER_IMAGE": 0}, r"BATCH_SIZE_PER_IMAGE must be a positive RoI count or -1 \(every proposal\), got 0"),
        ({"MODEL__ROI_HEADS__BATCH_SIZE_PER_IMAGE": -2}, r"BATCH_SIZE_PER_IMAGE must be a positive RoI count or -1 \(every proposal\), got -2"),
        ({"MODEL__ROI_BOX_HEAD__SMOOTH_L1_BETA": -0.5}, r"MODEL\.ROI_BOX_HEAD\.SMOOTH_L1_BETA must be >= 0 \(0 = L1\), got -0\.5"),
        ({"MODEL__RPN__BOUNDARY_THRESH": -3}, r"MODEL\.RPN\.BOUNDARY_THRESH must be -1 \(label every anchor\) or >= 0 pixels, got -3"),
        ({"MODEL__LIGHT_HEAD__OHEM": True, "MODEL__LIGHT_HEAD__OHEM_TOPK": 0}, r"MODEL\.LIGHT_HEAD\.OHEM_TOPK must be >= 1, got 0"),
        ({"SOLVER__LR_MULTIPLIERS": [["neck.conv.*"]]}, r"SOLVER\.LR_MULTIPLIERS must be a list of \[parameter-name pattern, positive factor\] pairs"),
        ({"SOLVER__LR_MULTIPLIERS": [["neck.conv.*", -3.0]]}, r"SOLVER\.LR_MULTIPLIERS must be a list of"),
    ],
)
def test_bad_protocol_keys(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        validate_config(_small(**overrides))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"MODEL__ROI_HEADS__BATCH_SIZE_PER_IMAGE": -1, "MODEL__RPN__BOUNDARY_THRESH": 0, "MODEL__ROI_BOX_HEAD__SMOOTH_L1_BETA": 1.0},
        {"MODEL__ROI_HEADS__BATCH_SIZE_PER_IMAGE": 128, "MODEL__RPN__BOUNDARY_THRESH": 16, "MODEL__ROI_BOX_HEAD__SMOOTH_L1_BETA": 0.0},
    ],
)
def test_protocol_values_pass(overrides):
    validate_config(_small(**overrides))


def test_lr_multiplier_pattern_is_matched_against_the_model_before_training():
    """A typo in a pattern is found by check_config (on the meta model), not after hours."""
    common = dict(SOLVER__IMS_PER_BATCH=2, DATASETS__TRAIN=("litedet_shapes_train",), DATASETS__TEST=(),
                  MODEL__ROI_HEADS__NUM_CLASSES=5)
    check_config(_small(SOLVER__LR_MULTIPLIERS=[["neck.conv.*", 3.0]], **common))
    with pytest.raises(ConfigError, match=r"SOLVER\.LR_MULTIPLIERS pattern\(s\) \['neck\.convv\.\*'\] match no trainable parameter") as info:
        check_config(_small(SOLVER__LR_MULTIPLIERS=[["neck.convv.*", 3.0]], **common))
    assert "\n" not in str(info.value)
    # a Faster R-CNN has no Light-Head neck: the Light-Head pattern is refused, not ignored
    with pytest.raises(ConfigError, match=r"\['neck\.conv\.\*'\] match no trainable parameter"):
        check_config(_small(MODEL__META_ARCHITECTURE="FasterRCNN", SOLVER__LR_MULTIPLIERS=[["neck.conv.*", 3.0]], **common))
