"""Evaluator interface and the inference loop that feeds it (detectron2's UX).

An evaluator sees the model's inputs/outputs batch by batch (``process``) and turns what it
collected into metrics at the end (``evaluate``). Keeping the loop separate from the metric
lets one pass over the data feed several evaluators at once, and lets the same evaluator
be driven by a training hook or by a standalone ``tools/test`` script.
"""
from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..utils.comm import fail_together, gather_to_main, get_rank, get_world_size, is_main_process

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "LabelMappingEvaluator",
    "inference_on_dataset",
    "inference_context",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "gather_to_main",
    "prediction_arrays",
]

logger = logging.getLogger(__name__)


def prediction_arrays(image_id: Any, output: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One model output as numpy: boxes ``(N, 4)`` float64 XYXY, scores ``(N,)`` float64,
    labels ``(N,)`` int64; mismatched lengths are an error naming the image."""

    def to_numpy(x: Any) -> np.ndarray:
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

    boxes = to_numpy(output["boxes"]).astype(np.float64).reshape(-1, 4)
    scores = to_numpy(output["scores"]).astype(np.float64).reshape(-1)
    labels = to_numpy(output["labels"]).astype(np.int64).reshape(-1)
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(
            f"image {image_id!r}: output has {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
        )
    return boxes, scores, labels


# ----------------------------------------------------------------------------- evaluator API
class DatasetEvaluator:
    """Base class: accumulate model outputs over a dataset, then compute metrics.

    Subclasses override ``reset`` (start a new pass), ``process`` (one batch) and
    ``evaluate`` (returns ``{task: {metric: value}}`` on the main process and ``{}`` elsewhere
    when running distributed, because only rank 0 holds the gathered predictions).
    """

    def reset(self) -> None:
        """Forget everything seen so far; called by ``inference_on_dataset`` before a pass."""

    def prepare(self) -> None:
        """Read what ``evaluate`` will need (the ground truth) now; called by
        ``inference_on_dataset`` before inference, so that a problem with the test set stops
        the run before the model has run over it rather than after."""

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> None:
        """Record one batch: ``inputs[i]`` is the dataset dict the model saw, ``outputs[i]`` its prediction."""

    def evaluate(self) -> Optional[dict]:
        """Compute the metrics from everything processed since the last ``reset``."""
        return None


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators driven by one pass; their result dicts are merged.

    Two evaluators reporting the same task key would silently overwrite each other, so that is
    an error.
    """

    def __init__(self, evaluators: Iterable[DatasetEvaluator]) -> None:
        super().__init__()
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def prepare(self) -> None:
        for evaluator in self._evaluators:
            prepare = getattr(evaluator, "prepare", None)
            if callable(prepare):
                prepare()

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> dict:
        results: "OrderedDict[str, Any]" = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if is_main_process() and result is not None:
                for k, v in result.items():
                    if k in results:
                        raise KeyError(f"different evaluators produce results with the same key {k!r}")
                    results[k] = v
        return results


class LabelMappingEvaluator(DatasetEvaluator):
    """``evaluator`` fed model outputs whose labels are mapped by ``label_map``
    (``label_map[model label] = dataset label``): a model trained on the dataset's classes
    listed in another order (`detection.model_info.match_classes`)."""

    def __init__(self, evaluator: DatasetEvaluator, label_map: Sequence[int]) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.label_map = torch.as_tensor(list(label_map), dtype=torch.int64)

    def reset(self) -> None:
        self.evaluator.reset()

    def prepare(self) -> None:
        prepare = getattr(self.evaluator, "prepare", None)  # evaluators that read their ground truth up front
        if callable(prepare):
            prepare()

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> None:
        mapped = []
        for output in outputs:
            labels = torch.as_tensor(output["labels"], dtype=torch.int64)
            mapped.append({**output, "labels": self.label_map.to(labels.device)[labels]})
        self.evaluator.process(inputs, mapped)

    def evaluate(self) -> Optional[dict]:
        return self.evaluator.evaluate()


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore its previous training flag.

    Restoring matters when evaluation runs as a periodic hook in the middle of training.
    """
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def _batch_size(inputs: Any) -> int:
    try:
        return len(inputs)
    except TypeError:
        return 1


def inference_on_dataset(
    model: Union[nn.Module, Any],
    data_loader: Iterable[Sequence[Mapping[str, Any]]],
    evaluator: Union[DatasetEvaluator, Sequence[DatasetEvaluator], None],
    *,
    progress: bool = True,
    num_warmup: int = 5,
) -> dict:
    """Run ``model`` over ``data_loader`` in eval/inference mode, feed ``evaluator``, return its metrics.

    ``data_loader`` yields lists of dataset dicts (each with at least "image_id"); the model
    returns one output dict per input. A list of evaluators is wrapped in ``DatasetEvaluators``;
    ``None`` runs inference only (useful for timing). The reported speed is pure model time
    per image averaged after the first ``num_warmup`` batches (cudnn autotuning, allocator
    growth and lazy initialisation make the first iterations unrepresentative); CUDA is
    synchronised around each call so the number is real GPU time, not launch time.

    On non-main ranks the return value is ``{}`` (metrics live on rank 0).
    """
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(evaluator)
    evaluator.reset()
    prepare = getattr(evaluator, "prepare", None)  # evaluators not derived from DatasetEvaluator may lack it
    if callable(prepare):
        with fail_together():  # a bad ground truth on the evaluating rank stops every rank, before inference
            prepare()

    try:
        total = len(data_loader)  # type: ignore[arg-type]
    except TypeError:
        total = None
    num_devices = get_world_size()
    if total is not None:
        num_warmup = min(num_warmup, max(total - 1, 0))
    logger.info("Start inference on %s batches", total if total is not None else "an unknown number of")

    iterable: Iterable = data_loader
    if progress and is_main_process():
        from tqdm import tqdm

        iterable = tqdm(data_loader, total=total, desc="inference", dynamic_ncols=True, leave=False)

    def _sync() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    start_time = time.perf_counter()
    compute_time = 0.0
    timed_images = 0
    seen_images = 0
    num_batches = 0
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.inference_mode())
        for idx, inputs in enumerate(iterable):
            if idx == num_warmup:
                start_time = time.perf_counter()
                compute_time = 0.0
                timed_images = 0
            _sync()
            t0 = time.perf_counter()
            outputs = model(inputs)
            _sync()
            compute_time += time.perf_counter() - t0
            n = _batch_size(inputs)
            timed_images += n
            seen_images += n
            num_batches += 1
            evaluator.process(inputs, outputs)

    total_time = time.perf_counter() - start_time
    if num_batches > num_warmup and timed_images > 0:
        logger.info(
            "Total inference time: %s (%.6f s / img per device, on %d devices)",
            datetime.timedelta(seconds=int(total_time)),
            total_time / timed_images,
            num_devices,
        )
        logger.info(
            "Total inference pure compute time: %s (%.6f s / img per device, on %d devices)",
            datetime.timedelta(seconds=int(compute_time)),
            compute_time / timed_images,
            num_devices,
        )
    else:
        logger.info("Inference done on %d images (too few batches to time after %d warm-up)", seen_images, num_warmup)

    results = evaluator.evaluate()
    # An evaluator may return None (e.g. inference-only); callers always get a dict.
    if results is None:
        results = {}
    return results
