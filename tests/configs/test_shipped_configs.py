"""Every shipped YAML merges onto the defaults, names a registered backbone, and builds."""
import glob
import os

import pytest

import backbones
from detection.config import ConfigError, get_cfg, load_config
from helpers import REPO_ROOT as ROOT

# configs/detectron2/ holds detectron2-format YAMLs (tested in tests/detection/d2/);
# configs/ImageNet/ classification recipes (their own schema; tests/detection/classification/).
OTHER_SCHEMAS = tuple(os.path.join("configs", d) + os.sep for d in ("detectron2", "ImageNet"))
CONFIGS = sorted(
    rel
    for rel in (os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True))
    if not rel.startswith(OTHER_SCHEMAS)
)
LEAVES = [c for c in CONFIGS if not os.path.basename(c).startswith("Base-")]
PAPER = [c for c in LEAVES if not c.startswith(os.path.join("configs", "Misc"))]


def test_configs_found():
    assert len(PAPER) >= 31 and any("quickstart" in c for c in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS)
def test_config_merges(path):
    cfg = load_config(os.path.join(ROOT, path))
    assert cfg.MODEL.META_ARCHITECTURE in ("LightHeadRCNN", "FasterRCNN")
    assert cfg.MODEL.BACKBONE.NAME in backbones.list_backbones(), cfg.MODEL.BACKBONE.NAME
    assert cfg.SOLVER.MAX_ITER > max(cfg.SOLVER.STEPS or [0])
    if "coco" in cfg.DATASETS.TRAIN[0]:
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    if "voc" in cfg.DATASETS.TRAIN[0]:
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 20


def test_lighthead_paper_protocol():
    cfg = load_config(os.path.join(ROOT, "configs/COCO-LightHead/lighthead_shufflenet_v2_1.0x.yaml"))
    assert cfg.INPUT.MIN_SIZE_TRAIN == (800,) and cfg.INPUT.MAX_SIZE_TRAIN == 1200
    assert cfg.INPUT.MIN_SIZE_TEST == 800 and cfg.INPUT.MAX_SIZE_TEST == 1200
    assert cfg.MODEL.LIGHT_HEAD.MID_CHANNELS == 64 and cfg.MODEL.RPN.HEAD_CONV_DIM == 256
    assert cfg.MODEL.LIGHT_HEAD.OHEM and cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT == 2.0
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",) and cfg.DATASETS.TEST == ("coco_2017_val",)
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (16, 0.01, 150500)  # docs/protocols.md


def test_voc_fd_mobilenet_protocol():
    for w in ("1.0x", "0.5x", "0.25x"):
        cfg = load_config(os.path.join(ROOT, f"configs/VOC-FasterRCNN/fasterrcnn_fd_mobilenet_{w}.yaml"))
        assert cfg.MODEL.BACKBONE.NAME == f"fd_mobilenet_{w}" and cfg.MODEL.META_ARCHITECTURE == "FasterRCNN"
        assert cfg.DATASETS.TRAIN == ("voc_2007_trainval",) and cfg.DATASETS.TEST == ("voc_2007_test",)
        assert cfg.INPUT.MIN_SIZE_TRAIN == (600,) and cfg.INPUT.MIN_SIZE_TEST == 600 and cfg.INPUT.MAX_SIZE_TEST == 1000
        assert cfg.SOLVER.IMS_PER_BATCH == 1 and cfg.SOLVER.MAX_ITER == 5011 * 15
        assert cfg.SOLVER.STEPS == (5011 * 5, 5011 * 10) and cfg.SOLVER.BASE_LR == 1e-3
        assert cfg.SOLVER.WEIGHT_DECAY == 4e-5 and cfg.MODEL.RPN.POST_NMS_TOPK_TEST == 300
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 20


@pytest.mark.parametrize("name", ["lighthead_shufflenet_v2_shapes", "fasterrcnn_shufflenet_v2_shapes"])
def test_quickstart_configs(name):
    from detection.data import SHAPES_CLASSES

    cfg = load_config(os.path.join(ROOT, "configs", "quickstart", f"{name}.yaml"))
    assert cfg.MODEL.DEVICE == "cpu" and cfg.MODEL.ROI_HEADS.NUM_CLASSES == len(SHAPES_CLASSES)
    assert cfg.DATASETS.TRAIN == ("litedet_shapes_train",)
    # Both protocols on the same validation images: COCO (json) and VOC (xml).
    assert cfg.DATASETS.TEST == ("litedet_shapes_val", "litedet_shapes_voc_val")
    assert cfg.MODEL.BACKBONE.NAME.startswith("shufflenet_v2_") and cfg.SOLVER.IMS_PER_BATCH == 8
    assert cfg.SOLVER.OPTIMIZER == "AdamW" and cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupCosineLR"


def test_unknown_key_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('_BASE_: "%s"\nSOLVER:\n  BASE_LRR: 0.1\n' % os.path.join(ROOT, "configs/Base-LightHead-RCNN.yaml"))
    with pytest.raises(ConfigError) as err:
        load_config(str(bad))
    msg = str(err.value)
    assert "SOLVER.BASE_LRR" in msg and "did you mean SOLVER.BASE_LR" in msg and "bad.yaml" in msg
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.NAMEE"):
        get_cfg().merge_from_list(["MODEL.BACKBONE.NAMEE", "x"])


@pytest.fixture(scope="module")
def gen():
    from detection.cli import gen_configs

    return gen_configs


def test_misc_configs_up_to_date(gen, capsys):
    assert gen.main(["--check", "--configs-dir", os.path.join(ROOT, "configs")]) == 0, capsys.readouterr().err


def test_table7_configs(gen):
    """ShuffleNet v2 paper, Table 7: Light-Head R-CNN on COCO, five families at four levels."""
    assert gen.TABLE7_LEVELS == (40, 140, 300, 500)
    assert set(gen.TABLE7) == {"ShuffleNet v1", "ShuffleNet v2", "ShuffleNet v2*", "MobileNet v2", "Xception"}
    shipped = set()
    for family, variants in gen.TABLE7.items():
        assert len(variants) == 4, family
        for level, name in zip(gen.TABLE7_LEVELS, variants):
            path = os.path.join("configs", "COCO-LightHead", f"lighthead_{name}.yaml")
            cfg = load_config(os.path.join(ROOT, path))
            assert (cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.BACKBONE.NAME) == ("LightHeadRCNN", name)
            assert cfg.DATASETS.TRAIN == ("coco_2017_train",) and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
            paper = backbones.get_variant(name).paper
            if "complexity level" in paper.source:  # widths chosen here for the level
                assert paper.macs == level * 1e6, name
            shipped.add(path)
    assert shipped == {c for c in PAPER if c.startswith(os.path.join("configs", "COCO-LightHead"))}
    # "Xception" is Light-Head R-CNN's small Xception-like network, not ShuffleNet v1 g=1
    assert {backbones.get_variant(n).family for n in gen.TABLE7["Xception"]} == {"small_xception"}
    assert [backbones.get_variant(n).paper.macs for n in gen.TABLE7["Xception"]][1] == 145e6


def test_generator_never_overwrites_a_hand_written_config(gen, tmp_path, capsys):
    configs = tmp_path / "configs"
    (configs / "COCO-LightHead").mkdir(parents=True)
    mine = configs / "COCO-LightHead" / "lighthead_small_xception_1.0x.yaml"
    mine.write_text("# hand-written\n")
    assert gen.main(["--configs-dir", str(configs)]) == 2
    assert "hand-written" in capsys.readouterr().err and mine.read_text() == "# hand-written\n"
    assert not (configs / "Misc").exists()
    mine.unlink()
    assert gen.main(["--configs-dir", str(configs)]) == 0 and gen.main(["--configs-dir", str(configs), "--check"]) == 0
    assert len(list((configs / "COCO-LightHead").glob("*.yaml"))) == 20


def test_every_registered_variant_has_configs_under_both_heads():
    leaves = [load_config(os.path.join(ROOT, p)) for p in LEAVES]
    covered = {(c.MODEL.META_ARCHITECTURE, c.MODEL.BACKBONE.NAME) for c in leaves}
    for name in backbones.list_backbones(include_aliases=False):
        for arch in ("LightHeadRCNN", "FasterRCNN"):
            alias_hit = any(
                backbones.get_variant(n).alias_of == name for a, n in covered if a == arch
            )
            assert (arch, name) in covered or alias_hit, (arch, name)


@pytest.mark.parametrize("path", PAPER)
def test_paper_config_builds(path):
    modeling = pytest.importorskip("detection.modeling")
    modeling.build_model(load_config(os.path.join(ROOT, path)))


@pytest.mark.parametrize("path", [c for c in LEAVES if c not in PAPER])
def test_misc_config_builds(path):
    modeling = pytest.importorskip("detection.modeling")
    modeling.build_model(load_config(os.path.join(ROOT, path)))
