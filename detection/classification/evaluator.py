"""Top-1 / top-5 accuracy with detectron2's evaluator interface (reset / process / evaluate)."""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Dict, Sequence

import torch

from detection.evaluation.evaluator import DatasetEvaluator
from detection.utils import comm

__all__ = ["ClassificationEvaluator"]

logger = logging.getLogger(__name__)


class ClassificationEvaluator(DatasetEvaluator):
    """Counts images whose label is the top-1 prediction and among the top-``k`` ones.

    ``process(inputs, outputs)`` takes a batch with ``labels`` (``ClassificationBatch``) and
    the logits ``(N, classes)``. ``evaluate()`` sums the counts over all ranks and returns,
    on the main process, ``{"accuracy": {"top1": %, "top5": %}}`` (percent, like the
    detectors' AP); other ranks get ``{}``. With fewer than ``k`` classes, top-k is
    computed over all classes (and is then 100%).
    """

    def __init__(self, topk: Sequence[int] = (1, 5), dataset_name: str = "") -> None:
        self.topk = tuple(int(k) for k in topk)
        self.dataset_name = dataset_name
        self.reset()

    def reset(self) -> None:
        self._correct = {k: 0 for k in self.topk}
        self._count = 0

    def process(self, inputs: Any, outputs: torch.Tensor) -> None:
        labels = inputs.labels if hasattr(inputs, "labels") else inputs
        logits = outputs.detach()
        labels = torch.as_tensor(labels).to(logits.device).view(-1)
        if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
            raise ValueError(f"expected logits of shape ({labels.shape[0]}, classes), got {tuple(logits.shape)}")
        kmax = min(max(self.topk), logits.shape[1])
        ranked = logits.topk(kmax, dim=1).indices  # (N, kmax), best first
        hits = ranked.eq(labels.view(-1, 1))
        for k in self.topk:
            self._correct[k] += int(hits[:, : min(k, kmax)].any(dim=1).sum())
        self._count += int(labels.numel())

    def evaluate(self) -> Dict[str, Any]:
        gathered = comm.gather_to_main((self._count, self._correct))
        if gathered is None:
            return {}
        count = sum(c for c, _ in gathered)
        if count == 0:
            logger.warning("ClassificationEvaluator%s saw no images", f" ({self.dataset_name})" if self.dataset_name else "")
            return {}
        correct = {k: sum(c[k] for _, c in gathered) for k in self.topk}
        metrics = OrderedDict((f"top{k}", 100.0 * correct[k] / count) for k in self.topk)
        logger.info(
            "Accuracy on %d images%s: %s", count, f" of {self.dataset_name}" if self.dataset_name else "",
            "  ".join(f"{k}={v:.2f}%" for k, v in metrics.items()),
        )
        return {"accuracy": metrics}
