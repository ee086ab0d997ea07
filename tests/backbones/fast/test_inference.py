"""What the inference modules share (`backbones.fast.inference`, `fuse_model`): the swap, the training refusal."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones.fast import InferenceModule, check_trainable, fuse_model, is_fused, swap_modules


class Doubler(InferenceModule):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return 2 * self.inner(x)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 3), nn.ReLU())

    def forward(self, x):
        return self.body(x)


def test_swap_modules_replaces_exact_types_inside_replacements_too():
    class MyReLU(nn.ReLU):
        pass

    builders = {Block: lambda m: Doubler(m.body), nn.ReLU: lambda m: nn.Identity()}
    model = nn.Sequential(Block(), MyReLU(), nn.Linear(3, 3))
    x = torch.randn(2, 3)
    expected = model[2](torch.relu(2 * model[0].body[0](x)))  # the block doubled without its ReLU; MyReLU kept
    assert swap_modules(model, builders) is model
    assert isinstance(model[0], Doubler) and isinstance(model[0].inner[1], nn.Identity)  # inside the replacement
    assert type(model[1]) is MyReLU  # a subclass keeps its own layout
    torch.testing.assert_close(model(x), expected)
    block = Block()
    assert isinstance(swap_modules(block, builders), Doubler)  # the root itself is replaced and returned


def test_is_fused_and_the_training_refusal():
    plain = nn.Sequential(nn.Linear(2, 2))
    fused = nn.Sequential(nn.Linear(2, 2), Doubler(nn.Identity()))
    assert not is_fused(plain) and is_fused(fused)
    check_trainable(plain, True)
    check_trainable(fused, False)  # eval is allowed
    with pytest.raises(RuntimeError, match="this Sequential was fused for inference"):
        check_trainable(fused, True)
    with pytest.raises(RuntimeError, match="this Doubler was fused for inference"):
        fused.train()
    fused[1].eval()


def test_fuse_model_swaps_inside_a_model_only():
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    with pytest.raises(TypeError, match="not the model itself"):
        fuse_model(conv)
    assert fuse_model(conv, channels_last=False) is not conv  # no module of its type to swap in the NCHW form
