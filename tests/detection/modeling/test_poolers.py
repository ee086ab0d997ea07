import pytest
import torch
from torchvision.ops import ps_roi_align

from detection.modeling.poolers import PSRoIAlignPooler, RoIAlignPooler


def _random_boxes(count: int, width: float, height: float, generator: torch.Generator) -> torch.Tensor:
    corners = torch.rand(count, 4, generator=generator) * torch.tensor([width, height, width, height])
    return torch.cat([corners[:, :2].minimum(corners[:, 2:]), corners[:, :2].maximum(corners[:, 2:])], dim=1)


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("k", [3, 7])
def test_ps_roi_align_regrouped_equals_torchvision(k, sampling_ratio):
    generator = torch.Generator().manual_seed(k * 10 + sampling_ratio)
    features = torch.randn(2, 4 * k * k, 20, 24, generator=generator)
    boxes = [_random_boxes(n, 24 * 16, 20 * 16, generator) for n in (13, 7)]
    # degenerate and out-of-image boxes too
    boxes[0][0] = torch.tensor([50.0, 60.0, 50.0, 60.0])
    boxes[1][0] = torch.tensor([-40.0, -30.0, 500.0, 400.0])
    fast = PSRoIAlignPooler("x", 16, k, sampling_ratio, implementation="roi_align")
    reference = PSRoIAlignPooler("x", 16, k, sampling_ratio, implementation="torchvision")
    out = fast({"x": features}, boxes, [])
    expected = reference({"x": features}, boxes, [])
    assert out.shape == (20, 4, k, k)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(expected, ps_roi_align(features, boxes, k, 1 / 16, sampling_ratio))


def test_ps_roi_align_rejects_indivisible_channels():
    pooler = PSRoIAlignPooler("x", 16, 7)
    with pytest.raises(ValueError, match="divisible by 7x7"):
        pooler({"x": torch.zeros(1, 50, 8, 8)}, [torch.tensor([[0.0, 0.0, 10.0, 10.0]])], [])


def test_ps_roi_align_rejects_unknown_implementation():
    with pytest.raises(ValueError, match="implementation"):
        PSRoIAlignPooler("x", 16, 7, implementation="cuda-magic")


def test_ps_roi_align_default_sampling_ratio_is_two():
    assert PSRoIAlignPooler("x", 16, 7, 0).sampling_ratio == 2
    assert RoIAlignPooler("x", 16, 7, 0).sampling_ratio == 0


def test_ps_roi_align_gradients_match():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 2 * 9, 10, 10, generator=generator)
    boxes = [_random_boxes(5, 160, 160, generator)]
    grads = []
    for implementation in ("roi_align", "torchvision"):
        x = features.clone().requires_grad_(True)
        PSRoIAlignPooler("x", 16, 3, 2, implementation=implementation)({"x": x}, boxes, []).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)
