"""Every registered variant honours the `Backbone` contract, and the registry itself
behaves: re-imports are tolerated, clashes are not, unknown names get close matches.

The variant list is read from the registry at collection time, so families registered
later are covered without editing this file.
"""
from __future__ import annotations

import importlib
from typing import List

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

import backbones
from backbones import BACKBONE_REGISTRY, Backbone, build_backbone, build_classifier, list_backbones, register_variant
from backbones.classifier import FAMILIES_WITHOUT_FC_BIAS

ALL_VARIANTS: List[str] = list_backbones()


def _all_stages(name: str) -> Backbone:
    """The variant with every stage as an output (one build: stage names are only known after)."""
    model = build_backbone(name)
    return model.set_out_features(model.stage_names)


def test_registry_is_populated() -> None:
    assert "shufflenet_v2_1.0x" in ALL_VARIANTS
    assert len(ALL_VARIANTS) == len(set(ALL_VARIANTS))


# ---------------------------------------------------------------- every variant
@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_forward_shapes(name: str) -> None:
    """Eval forward at 224x224 and at a non-square size: every stage is returned, with
    the channels and stride its `ShapeSpec` declares."""
    model = _all_stages(name).eval()
    assert list(model.output_shape()) == model.out_features == model.stage_names
    for height, width in [(224, 224), (96, 160)]:
        with torch.no_grad():
            outputs = model(torch.randn(1, 3, height, width))
        assert list(outputs) == model.out_features
        for stage, spec in model.output_shape().items():
            out = outputs[stage]
            assert out.shape[1] == spec.channels, f"{stage}: {out.shape[1]} channels, declared {spec.channels}"
            assert (out.shape[2] * spec.stride, out.shape[3] * spec.stride) == (height, width), (
                f"{stage}: {tuple(out.shape[2:])} at input {height}x{width}, declared stride {spec.stride}"
            )
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_classifier_train_mode(name: str) -> None:
    """Classification form in train mode (BN batch statistics) with batch 2, then eval. Its
    FC has a bias unless the family's authors released it without one."""
    model = build_classifier(name, num_classes=10).train()
    without_bias = backbones.get_variant(name).family in FAMILIES_WITHOUT_FC_BIAS
    assert (model.fc.bias is None) == without_bias == (not backbones.released_fc_bias(name))
    logits = model(torch.randn(2, 3, 64, 96))
    assert logits.shape == (2, 10) and logits.requires_grad
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_classifier_fc_bias_argument() -> None:
    assert FAMILIES_WITHOUT_FC_BIAS == {"shufflenet_v1", "shufflenet_v2"}
    plain, biased = build_classifier("shufflenet_v2_0.5x"), build_classifier("shufflenet_v2_0.5x", fc_bias=True)
    assert plain.fc.bias is None and biased.fc.bias.shape == (1000,)
    assert sum(p.numel() for p in biased.parameters()) - sum(p.numel() for p in plain.parameters()) == 1000
    assert build_classifier("mobilenet_v2_0.5x", fc_bias=False).fc.bias is None
    x = torch.randn(1, 3, 64, 64)
    biased.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        biased.fc.bias.zero_()
        torch.testing.assert_close(biased.eval()(x), plain.eval()(x))


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_freeze_at_2(name: str) -> None:
    """freeze_at=2 freezes the stem and the first stage after it, nothing later."""
    model = build_backbone(name, freeze_at=2)
    frozen, trainable = model.stage_names[:2], model.stage_names[2:]
    frozen_bns = 0
    for stage in frozen:
        module = model.stages[stage]
        assert not any(p.requires_grad for p in module.parameters()), stage
        assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules()), stage
        frozen_bns += sum(isinstance(m, FrozenBatchNorm2d) for m in module.modules())
    assert frozen_bns > 0
    for stage in trainable:
        module = model.stages[stage]
        assert all(p.requires_grad for p in module.parameters()), stage
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in module.modules()), stage


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_split_after_stage3(name: str) -> None:
    """C4-style split: the stages after ``stage3`` are removed and returned, in order.
    Also the constructor's ``out_features`` path (the other tests use `set_out_features`)."""
    model = build_backbone(name, out_features=["stage3", "stage2"])
    assert model.out_features == ["stage2", "stage3"]
    names = model.stage_names
    later = names[names.index("stage3") + 1 :]
    tail = model.split_after("stage3")
    assert list(tail) == later and later
    assert model.stage_names == names[: names.index("stage3") + 1]
    assert model.out_features == ["stage2", "stage3"]
    with torch.no_grad():
        outputs = model.eval()(torch.randn(1, 3, 64, 64))
    assert list(outputs) == ["stage2", "stage3"]
    assert outputs["stage3"].shape[1] == model.output_shape()["stage3"].channels


# -------------------------------------------------------------------- registry
def test_reimporting_a_family_is_tolerated() -> None:
    """Importing a backbone module twice (``importlib.reload``, notebooks) re-registers
    the same builders and must not raise. The module and registry are restored after,
    so other tests keep seeing the original classes."""
    module = backbones.shufflenet_v2
    saved_namespace = dict(vars(module))
    saved_entries = dict(BACKBONE_REGISTRY._obj_map)
    try:
        importlib.reload(module)
        assert build_backbone("shufflenet_v2_0.5x").stage_names[-1] == "conv5"
    finally:
        vars(module).update(saved_namespace)
        BACKBONE_REGISTRY._obj_map.clear()
        BACKBONE_REGISTRY._obj_map.update(saved_entries)


def test_same_builder_again_is_tolerated() -> None:
    variant = backbones.get_variant("shufflenet_v2_1.0x")
    try:
        again = register_variant(variant.name, variant.builder, family=variant.family, paper=variant.paper,
                                 alias_of=variant.alias_of, **dict(variant.arch_kwargs))
        assert again == variant
    finally:
        BACKBONE_REGISTRY._obj_map[variant.name] = variant


def test_different_builder_under_a_taken_name_raises() -> None:
    before = backbones.get_variant("shufflenet_v2_1.0x")

    def other_builder(**kwargs: object) -> nn.Module:
        return nn.Identity()

    with pytest.raises(KeyError, match="already registered"):
        register_variant("shufflenet_v2_1.0x", other_builder, family="shufflenet_v2")
    with pytest.raises(KeyError, match="already registered"):  # same class, other arguments
        register_variant("shufflenet_v2_1.0x", before.builder, family="shufflenet_v2", width_mult=2.0)
    assert backbones.get_variant("shufflenet_v2_1.0x") is before


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(KeyError) as info:
        build_backbone("shufflenet_v2_1.0")
    assert "shufflenet_v2_1.0x" in str(info.value)
    with pytest.raises(KeyError, match="shufflenet_v2_1.0x"):
        build_classifier("shuflenet_v2_1.0x")
