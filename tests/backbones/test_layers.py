"""Building blocks shared by the backbones (`backbones.layers`)."""
from __future__ import annotations

import pytest
import torch

from backbones.layers import channel_shuffle, interleave_channels


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channels_last_slice"])
def test_interleave_channels_is_concat_then_shuffle(layout):
    a, b = torch.randn(2, 6, 5, 3), torch.randn(2, 6, 5, 3)
    if layout == "channels_last":
        a, b = (t.contiguous(memory_format=torch.channels_last) for t in (a, b))
    elif layout == "channels_last_slice":  # a ShuffleNet v2 unit's pass-through half
        a = torch.cat((a, b), 1).contiguous(memory_format=torch.channels_last)[:, :6]
    out = interleave_channels(a, b)
    assert torch.equal(out, channel_shuffle(torch.cat((a, b), dim=1), 2))
    # channels-last data stays channels-last for the next conv
    assert out.is_contiguous(memory_format=torch.channels_last) is (layout != "nchw")
    assert out.is_contiguous() is (layout == "nchw")


def test_interleave_channels_refuses_unequal_halves():
    with pytest.raises(ValueError, match="equal shapes"):
        interleave_channels(torch.randn(1, 4, 2, 2), torch.randn(1, 6, 2, 2))
