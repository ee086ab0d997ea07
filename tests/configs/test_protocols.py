"""Every shipped protocol config holds every value of its protocol table
(`detection.config.protocols`, the table docs/protocols.md is generated from)."""
import glob
import os

import pytest

from detection.classification.config import get_classification_cfg, load_classification_config
from detection.config import get_cfg, load_config
from detection.config.protocols import PROTOCOLS, Protocol, format_value, render_table, same_value

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "protocols.md")


def protocol_configs(protocol: Protocol):
    paths = sorted({p for pattern in protocol.configs for p in glob.glob(os.path.join(ROOT, pattern))})
    return [p for p in paths if not os.path.basename(p).startswith("Base-")]


CASES = [(p, os.path.relpath(c, ROOT)) for p in PROTOCOLS for c in protocol_configs(p)]


def _load(protocol: Protocol, path: str):
    if protocol.schema == "classification":
        return load_classification_config(os.path.join(ROOT, path))
    return load_config(os.path.join(ROOT, path))


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def test_every_protocol_has_configs():
    counts = {p.slug: len(protocol_configs(p)) for p in PROTOCOLS}
    assert counts == {
        "lighthead-coco": 20,
        "fasterrcnn-shufflenet-v1-coco": 6,
        "fasterrcnn-fd-mobilenet-voc07": 6,
        "imagenet-shufflenet": 12,
        "imagenet-fd-mobilenet": 4,
        "imagenet-seesaw": 4,
    }


@pytest.mark.parametrize("protocol,path", CASES, ids=[f"{p.slug}:{os.path.basename(c)}" for p, c in CASES])
def test_config_holds_the_protocol(protocol, path):
    cfg = _load(protocol, path)
    checked = 0
    for setting in protocol.settings:
        if not setting.applies(path):
            continue
        for key, want in setting.values:
            have = _get(cfg, key)
            assert same_value(have, want), f"{path}: {key} is {have!r}, {protocol.slug} pins {format_value(want)} ({setting.source})"
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=[p.slug for p in PROTOCOLS])
def test_table_is_well_formed(protocol):
    defaults = get_classification_cfg() if protocol.schema == "classification" else get_cfg()
    for setting in protocol.settings:
        assert setting.values or setting.code, setting.name
        assert setting.source, setting.name
        for key, _ in setting.values:
            _get(defaults, key)  # a key the schema has (KeyError otherwise)
        if setting.applies_to:  # a filter that selects some config
            assert any(setting.applies(c) for c in protocol_configs(protocol)), setting.applies_to
    assert render_table(protocol).count("\n") == len(protocol.settings) + 2


@pytest.mark.parametrize("protocol,path", CASES, ids=[f"{p.slug}:{os.path.basename(c)}" for p, c in CASES])
def test_config_header_points_to_the_doc(protocol, path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        header = "".join(line for line in f if line.startswith("#"))
    assert "docs/protocols.md" in header


def test_doc_tables_are_generated_from_the_table():
    from detection.cli.gen_configs import render_protocols_doc

    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    assert render_protocols_doc(text) == text, "docs/protocols.md is stale: run python tools/gen_configs.py"
    for protocol in PROTOCOLS:
        assert render_table(protocol) in text


def test_same_value_catches_drift():
    assert same_value((800,), [800]) and same_value(0.3333333333333333, 1.0 / 3)
    assert same_value([["neck.conv.*", 3.0]], [["neck.conv.*", 3]])
    assert not same_value(0.02, 0.01) and not same_value((95000, 125000), (95500, 125500))
    assert not same_value([[32, 64]], [[32, 64, 128]]) and not same_value(1, True)
    assert not same_value("LightHeadRCNN", "FasterRCNN")


def test_drifted_config_fails(tmp_path):
    protocol = PROTOCOLS[0]
    leaf = tmp_path / "lighthead_drift.yaml"
    leaf.write_text(
        f'_BASE_: "{os.path.join(ROOT, "configs", "Base-LightHead-RCNN.yaml")}"\n'
        "MODEL:\n  ROI_HEADS:\n    BATCH_SIZE_PER_IMAGE: 512\n"
    )
    cfg = load_config(str(leaf))
    bad = [
        key for s in protocol.settings for key, want in s.values if not same_value(_get(cfg, key), want)
    ]
    assert bad == ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE"]
