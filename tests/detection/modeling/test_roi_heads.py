"""fast_rcnn_losses keeps every head output in the graph, also without positive RoIs, so
DistributedDataParallel gets a gradient for every parameter on every rank."""
import pytest
import torch

from detection.modeling.roi_heads import fast_rcnn_losses


@pytest.mark.parametrize("with_positive", [True, False])
def test_box_regression_gets_a_gradient(with_positive):
    logits = torch.randn(4, 3, requires_grad=True)
    deltas = torch.randn(4, 3 * 4, requires_grad=True)
    labels = [torch.tensor([1 if with_positive else 0, 0]), torch.tensor([0, 0])]
    targets = [torch.randn(2, 4), torch.randn(2, 4)]
    losses = fast_rcnn_losses(logits, deltas, labels, targets)
    sum(losses.values()).backward()
    assert deltas.grad is not None and logits.grad is not None
    assert (deltas.grad.abs().sum() > 0) == with_positive
    if not with_positive:
        assert losses["loss_box_reg"].item() == 0.0
