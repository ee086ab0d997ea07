"""Top-1 / top-5 accuracy from known logits."""
import pytest
import torch

from detection.classification import ClassificationBatch, ClassificationEvaluator


def _batch(labels):
    labels = torch.as_tensor(labels)
    return ClassificationBatch(torch.zeros(len(labels), 3, 2, 2, dtype=torch.uint8), labels)


def test_known_logits():
    # 7 classes; the label's rank among the logits is 1, 3, 6 and 2 for the four images.
    logits = torch.tensor(
        [
            [0.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 1: rank 1
            [9.0, 8.0, 7.0, 0.0, 0.0, 0.0, 0.0],  # label 2: rank 3
            [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5],  # label 5: rank 6
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0],  # label 0: rank 2
        ]
    )
    ev = ClassificationEvaluator()
    ev.reset()
    ev.process(_batch([1, 2]), logits[:2])
    ev.process(_batch([5, 0]), logits[2:])
    res = ev.evaluate()
    assert res == {"accuracy": {"top1": pytest.approx(25.0), "top5": pytest.approx(75.0)}}


def test_reset_forgets_and_fewer_classes_than_k():
    ev = ClassificationEvaluator(topk=(1, 5))
    ev.process(_batch([0]), torch.tensor([[0.0, 1.0]]))
    ev.reset()
    # 3 classes < 5: top-5 covers every class.
    ev.process(_batch([0, 2, 1]), torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [0.0, 5.0, 1.0]]))
    res = ev.evaluate()["accuracy"]
    assert res["top1"] == pytest.approx(200 / 3) and res["top5"] == pytest.approx(100.0)


def test_no_images_and_bad_shapes():
    ev = ClassificationEvaluator()
    assert ev.evaluate() == {}
    with pytest.raises(ValueError, match="expected logits"):
        ev.process(_batch([0, 1]), torch.zeros(3, 4))
