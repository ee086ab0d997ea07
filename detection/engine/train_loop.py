"""The training loop: SGD + LR schedule, optional AMP and gradient clipping, periodic
checkpoints and evaluation, ``metrics.json`` / TensorBoard / log lines and a tqdm bar.

``Trainer(cfg)`` builds everything from the config through overridable class methods
(``build_model``, ``build_train_loader``, ``build_optimizer``, ``build_lr_scheduler``,
``build_test_loader``, ``build_evaluator``), or takes ready objects as keyword
arguments (tests pass a tiny fake model and loader)::

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()

Iterations are numbered from 0 to ``SOLVER.MAX_ITER - 1``. After iteration ``it``:
``model_{it:07d}.pth`` is written when ``(it + 1) % CHECKPOINT_PERIOD == 0``,
``model_final.pth`` after the last one; DATASETS.TEST is evaluated when
``(it + 1) % TEST.EVAL_PERIOD == 0`` and after the last iteration; a metrics line is
written every ``log_period`` iterations, after evaluations and at the end.

Only the main process writes files (checkpoints, metrics, TensorBoard) and shows the bar.
Hooks for the distributed / exact-resume work: `_wrap_model` (DDP), and
`_extra_checkpoint_state` / `_restore_extra_state` (RNG + sampler state).
"""
from __future__ import annotations

import datetime
import logging
import math
import os
import sys
import time
from collections import OrderedDict, deque
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional

import torch
from torch import nn

from detection.checkpoint import DetectionCheckpointer

from ..utils import comm
from .events import JSONWriter, MetricsHistory, TensorboardWriter, flatten_results
from .solver import build_lr_scheduler, build_optimizer, clip_gradients

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)


def _short(name: str) -> str:
    return name[5:] if name.startswith("loss_") else name


def _fmt_memory(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.max_memory_allocated(device) / 1024 ** 3:.2f}G"
    try:
        import resource

        return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2:.2f}G"  # Linux: KiB
    except Exception:  # noqa: BLE001
        return "?"


class Trainer:
    """Single-loop detector trainer (see the module docstring)."""

    def __init__(
        self,
        cfg,
        *,
        model: Optional[nn.Module] = None,
        data_loader: Optional[Iterable] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
        log_period: int = 20,
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.MODEL.DEVICE)
        model = model if model is not None else self.build_model(cfg)
        model.to(self.device)
        self.model = self._wrap_model(model)
        self.optimizer = optimizer if optimizer is not None else self.build_optimizer(cfg, model)
        self.scheduler = scheduler if scheduler is not None else self.build_lr_scheduler(cfg, self.optimizer)
        self._data_loader = data_loader
        self._data_iter: Optional[Iterator] = None
        self.log_period = max(1, int(log_period))

        self.amp = bool(cfg.SOLVER.AMP.ENABLED)
        if self.amp and self.device.type != "cuda":
            logger.warning("SOLVER.AMP.ENABLED is only supported on CUDA; training in float32 on %s", self.device)
            self.amp = False
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        extra: Dict[str, Any] = {"optimizer": self.optimizer, "scheduler": self.scheduler}
        if self.amp:
            extra["scaler"] = self.scaler
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, **extra)

        self.start_iter = 0
        self.iter = 0
        self.max_iter = int(cfg.SOLVER.MAX_ITER)
        self.history = MetricsHistory()
        self.last_results: Dict[str, Any] = {}
        self._recent: Dict[str, Deque[float]] = {}
        self._writers: List[Any] = []

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        from detection.modeling import build_model

        model = build_model(cfg)
        n = sum(p.numel() for p in model.parameters())
        logger.info("Model: %s, %.2fM parameters", type(model).__name__, n / 1e6)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg) -> Iterable:
        from detection.data import build_detection_train_loader

        return build_detection_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str) -> Iterable:
        from detection.data import build_detection_test_loader

        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        from detection.evaluation import build_evaluator

        return build_evaluator(cfg, dataset_name, output_dir=output_dir)

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel when running under an initialised process group."""
        if comm.get_world_size() <= 1:
            return model
        ids = [comm.get_local_rank()] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    @property
    def unwrapped_model(self) -> nn.Module:
        m = self.model
        return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m

    @property
    def data_loader(self) -> Iterable:
        if self._data_loader is None:
            self._data_loader = self.build_train_loader(self.cfg)
        return self._data_loader

    # ------------------------------------------------------------------ checkpoints
    def _extra_checkpoint_state(self) -> Dict[str, Any]:
        """Extra entries saved with every checkpoint: the train loader's position when it
        can report one. (Exact resume adds the RNG states here.)"""
        loader = self._data_loader
        if loader is not None and callable(getattr(loader, "state_dict", None)):
            return {"data_loader": loader.state_dict()}
        return {}

    def _restore_extra_state(self, checkpoint: Mapping[str, Any]) -> None:
        """Counterpart of `_extra_checkpoint_state`, called after a resume."""
        state = checkpoint.get("data_loader")
        if state is None:
            return
        loader = self.data_loader
        if not callable(getattr(loader, "load_state_dict", None)):
            return
        try:
            loader.load_state_dict(state)
            logger.info("Train loader continues after batch %s", state.get("num_batches", "?"))
        except (ValueError, KeyError) as err:
            logger.warning("Train loader position not restored (%s); it starts a fresh pass", err)

    def resume_or_load(self, resume: bool = True) -> None:
        """``resume`` and a checkpoint in OUTPUT_DIR: continue after its iteration.
        Otherwise load MODEL.WEIGHTS (if set) and start at iteration 0."""
        ckpt = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = int(ckpt.get("iteration", -1)) + 1
            self._restore_extra_state(ckpt)
            logger.info("Resumed; training continues at iteration %d", self.start_iter)
        else:
            self.start_iter = 0

    def save_checkpoint(self, name: str) -> Optional[str]:
        return self.checkpointer.save(name, iteration=self.iter, **self._extra_checkpoint_state())

    # ------------------------------------------------------------------ loop
    def train(self) -> Dict[str, Any]:
        """Run iterations ``start_iter .. MAX_ITER-1``; returns the last evaluation results."""
        if self.start_iter >= self.max_iter:
            logger.info("Nothing to train: start_iter %d >= SOLVER.MAX_ITER %d", self.start_iter, self.max_iter)
            self.iter = self.start_iter - 1
            if len(self.cfg.DATASETS.TEST):  # e.g. --resume of a finished run: evaluate it again
                self._run_evaluation()
            return self.last_results
        logger.info("Starting training from iteration %d to %d", self.start_iter, self.max_iter)
        main = comm.is_main_process()
        out = self.cfg.OUTPUT_DIR
        if main and out:
            os.makedirs(out, exist_ok=True)
            self._writers = [
                JSONWriter(os.path.join(out, "metrics.json"), append=self.start_iter > 0),
                TensorboardWriter(out),
            ]
        self.model.train()
        self._data_iter = iter(self.data_loader)
        self._pbar = self._make_progress_bar(disable=not main)
        self._train_start = time.perf_counter()
        try:
            for self.iter in range(self.start_iter, self.max_iter):
                self.run_step()
                self.after_step()
        finally:
            self._pbar.close()
            for w in self._writers:
                w.close()
            self._writers = []
        total = time.perf_counter() - self._train_start
        done = self.max_iter - self.start_iter
        logger.info(
            "Training finished: %d iterations in %s (%.4f s / it)",
            done, datetime.timedelta(seconds=int(total)), total / max(done, 1),
        )
        return self.last_results

    def _make_progress_bar(self, disable: bool):
        from tqdm import tqdm

        # Only on a terminal: redirected output gets the periodic log lines instead of
        # carriage-return redraws (LITEDET_PROGRESS=1 forces the bar, =0 hides it).
        force = os.environ.get("LITEDET_PROGRESS")
        show = sys.stderr.isatty() if force is None else force not in ("0", "", "false")
        return tqdm(
            total=self.max_iter,
            initial=self.start_iter,
            desc="train",
            unit="it",
            dynamic_ncols=True,
            disable=disable or not show,
            mininterval=0.5,
            file=sys.stderr,
        )

    def run_step(self) -> None:
        """One SGD step. Records losses, ``lr``, ``time`` and ``data_time``."""
        assert self.model.training, "Trainer: the model was left in eval mode"
        start = time.perf_counter()
        data = next(self._data_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        losses = sum(loss_dict.values())
        self._check_finite(loss_dict, losses)

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses).backward()
        if self.cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.cfg, (p for g in self.optimizer.param_groups for p in g["params"]))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()

        metrics = {k: v.detach().float() for k, v in loss_dict.items()}
        metrics = {k: float(v) for k, v in comm.reduce_dict(metrics).items()}
        if len(metrics) > 1 or "total_loss" not in metrics:
            metrics["total_loss"] = sum(metrics.values())
        step_time = time.perf_counter() - start
        self.history.put_losses(metrics)
        self.history.put_scalar("time", step_time, smooth=True)
        self.history.put_scalar("data_time", data_time, smooth=True)
        self.history.put_scalar("lr", lr)
        self.history.iter_times.append(step_time)
        for k, v in [*metrics.items(), ("time", step_time), ("data_time", data_time)]:
            self._recent.setdefault(k, deque(maxlen=20)).append(v)
        self._lr = lr

    def _check_finite(self, loss_dict: Mapping[str, torch.Tensor], losses: torch.Tensor) -> None:
        if torch.isfinite(losses).all():
            return
        values = {k: float(v.detach().float().sum()) for k, v in loss_dict.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        raise FloatingPointError(
            f"Loss became non-finite at iteration {self.iter}: "
            + ", ".join(f"{k}={values[k]}" for k in bad)
            + " (all terms: "
            + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            + "). Try a lower SOLVER.BASE_LR, a longer warmup or SOLVER.CLIP_GRADIENTS.ENABLED True."
        )

    def after_step(self) -> None:
        next_iter = self.iter + 1
        final = next_iter == self.max_iter
        period = int(self.cfg.SOLVER.CHECKPOINT_PERIOD)
        if final:
            self.save_checkpoint("model_final")
        elif period > 0 and next_iter % period == 0:
            self.save_checkpoint(f"model_{self.iter:07d}")

        eval_period = int(self.cfg.TEST.EVAL_PERIOD)
        evaluated = False
        if len(self.cfg.DATASETS.TEST) and (final or (eval_period > 0 and next_iter % eval_period == 0)):
            self._run_evaluation()
            evaluated = True

        self._update_progress_bar()
        if evaluated or final or next_iter % self.log_period == 0:
            self._write_metrics()

    def _run_evaluation(self) -> None:
        model = self.unwrapped_model
        model.eval()
        try:
            results = self.test(self.cfg, model)
        finally:
            model.train()
        self.last_results = results
        self.history.put_results(flatten_results(results))
        comm.synchronize()

    def _eta_seconds(self) -> Optional[float]:
        t = self.history.median_iter_time()
        return None if t is None else t * (self.max_iter - self.iter - 1)

    def _update_progress_bar(self) -> None:
        pbar = self._pbar
        pbar.update(1)
        if pbar.disable:
            return
        med = {k: sorted(v)[len(v) // 2] for k, v in self._recent.items()}
        post: Dict[str, str] = OrderedDict()
        if "total_loss" in med:
            post["loss"] = f"{med['total_loss']:.3f}"
        for k, v in med.items():
            if k not in ("total_loss", "time", "data_time"):
                post[_short(k)] = f"{v:.3f}"
        post["lr"] = f"{self._lr:.2e}"
        post["t/it"] = f"{med.get('time', 0):.3f}s"
        post["data"] = f"{med.get('data_time', 0):.3f}s"
        eta = self._eta_seconds()
        if eta is not None:
            post["eta"] = str(datetime.timedelta(seconds=int(eta)))
        post["mem"] = _fmt_memory(self.device)
        pbar.set_postfix(post, refresh=False)

    def _write_metrics(self) -> None:
        scalars = self.history.pop_window()
        eta = self._eta_seconds()
        if eta is not None:
            scalars["eta_seconds"] = eta
        for w in self._writers:
            w.write(self.iter, scalars)
        losses = "  ".join(
            f"{k}: {v:.4g}" for k, v in scalars.items() if k.startswith("loss") or k == "total_loss"
        )
        parts = [f"iter: {self.iter}", losses]
        for k in ("time", "data_time"):
            if k in scalars:
                parts.append(f"{k}: {scalars[k]:.4f}")
        if "lr" in scalars:
            parts.append(f"lr: {scalars['lr']:.6g}")
        parts.append(f"max_mem: {_fmt_memory(self.device)}")
        if eta is not None:
            parts.insert(0, f"eta: {datetime.timedelta(seconds=int(eta))}")
        logger.info("  ".join(p for p in parts if p))

    # ------------------------------------------------------------------ evaluation
    @classmethod
    def test(cls, cfg, model: nn.Module, evaluators: Optional[List[Any]] = None) -> Dict[str, Any]:
        """Evaluate ``model`` on every DATASETS.TEST set. Returns the evaluator's results
        for a single test set (``{"bbox": {...}}``), else ``{dataset_name: results}``."""
        from detection.evaluation import inference_on_dataset

        names = list(cfg.DATASETS.TEST)
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(f"{len(evaluators)} evaluators for {len(names)} test datasets")
        results: Dict[str, Any] = OrderedDict()
        was_training = model.training
        model.eval()
        try:
            for i, name in enumerate(names):
                loader = cls.build_test_loader(cfg, name)
                if evaluators is not None:
                    evaluator = evaluators[i]
                else:
                    out = os.path.join(cfg.OUTPUT_DIR, "inference", name) if cfg.OUTPUT_DIR else None
                    evaluator = cls.build_evaluator(cfg, name, output_dir=out)
                logger.info("Evaluating %s ...", name)
                res = inference_on_dataset(model, loader, evaluator)
                results[name] = res
                if comm.is_main_process():
                    logger.info("Evaluation results for %s:\n%s", name, _format_results(res))
        finally:
            model.train(was_training)
        if len(results) == 1:
            return dict(next(iter(results.values())) or {})
        return dict(results)


def _format_results(res: Mapping[str, Any]) -> str:
    lines = []
    for task, metrics in (res or {}).items():
        if isinstance(metrics, Mapping):
            lines.append(f"  {task}: " + "  ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
            ))
        else:
            lines.append(f"  {task}: {metrics}")
    return "\n".join(lines) or "  (no results)"
