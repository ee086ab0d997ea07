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

Distributed (torchrun): the model is wrapped in DistributedDataParallel, each rank
trains on ``SOLVER.IMS_PER_BATCH // world_size`` images, logged losses are averaged
over ranks and only the main process writes files (checkpoints, metrics, TensorBoard)
and shows the bar.

Exact resume: every checkpoint also holds the train loader's position and the RNG
states of every rank (`detection.engine.resume_state`).

Every checkpoint records what the model is (`detection.model_info.ModelInfo`: meta-
architecture, backbone, class count and the training set's class names). Evaluation
compares the model's class names with each test set's (`detection.model_info.match_classes`):
the same names in another order are mapped by name (logged), other classes are refused.
`resume_or_load` refuses to resume from a checkpoint of other classes or architecture.

Faults (`detection.engine.faults`): SIGTERM / SIGINT during `train` finish the current
iteration, save a checkpoint and return (``trainer.interrupted`` holds the signal); a
non-finite loss saves the last good state (when not already saved) and raises
`FloatingPointError` naming the iteration and loss terms; a failed checkpoint write raises
`detection.checkpoint.CheckpointWriteError` naming the path.
"""
from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
import time
from collections import OrderedDict, deque
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import torch
from torch import nn

from detection.checkpoint import CheckpointError, DetectionCheckpointer
from detection.config_checks import resolve_amp
from detection.model_info import ClassMismatchError, ModelInfo, describe_classes, match_classes, model_info_from_cfg

from ..utils import comm
from .events import JSONWriter, MetricsHistory, TensorboardWriter, flatten_results
from .faults import StopSignals, agree_on_step, non_finite_loss_error
from .resume_state import capture_resume_state, gather_resume_state, restore_resume_state
from .solver import build_lr_scheduler, build_optimizer, clip_gradients

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)


def _cfg_get(cfg, key: str, default: Any) -> Any:
    """``cfg.A.B`` or ``default`` when the key is absent (configs of subclassing tools)."""
    node = cfg
    for part in key.split("."):
        if not hasattr(node, part):
            return default
        node = getattr(node, part)
    return node


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
        if self.device.type == "cuda" and self.device.index is None and comm.get_world_size() > 1:
            self.device = torch.device("cuda", comm.get_local_rank())  # one GPU per process
        self.amp_dtype = resolve_amp(cfg, self.device)
        self.amp = self.amp_dtype is not None
        model = model if model is not None else self.build_model(cfg)
        model.to(self.device)
        self._module = model
        self.model = self._wrap_model(model)
        if bool(_cfg_get(cfg, "SOLVER.COMPILE", False)):
            self.model = self._compile_model(self.model)
        self.optimizer = optimizer if optimizer is not None else self.build_optimizer(cfg, model)
        self.scheduler = scheduler if scheduler is not None else self.build_lr_scheduler(cfg, self.optimizer)
        self._data_loader = data_loader
        self._data_iter: Optional[Iterator] = None
        self.log_period = max(1, int(log_period))

        # Loss scaling only for float16: bfloat16 has float32's exponent range.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        extra: Dict[str, Any] = {"optimizer": self.optimizer, "scheduler": self.scheduler}
        if self.scaler.is_enabled():
            extra["scaler"] = self.scaler
        #: What the checkpoints record about the model (None: the config does not say).
        self.model_info: Optional[ModelInfo] = self.build_model_info(cfg)
        self.checkpointer = DetectionCheckpointer(
            model, cfg.OUTPUT_DIR, max_keep=int(_cfg_get(cfg, "SOLVER.CHECKPOINT_MAX_KEEP", 0)),
            model_info=self.model_info, **extra
        )

        self.start_iter = 0
        self.iter = 0
        self.max_iter = int(cfg.SOLVER.MAX_ITER)
        self.history = MetricsHistory()
        self.last_results: Dict[str, Any] = {}
        self._recent: Dict[str, Deque[float]] = {}
        self._writers: List[Any] = []
        #: Signal number that stopped `train` early (SIGTERM / SIGINT), else None.
        self.interrupted: Optional[int] = None
        self._signals = StopSignals()
        self._stop_agreed = False
        self._last_saved_iter: Optional[int] = None
        self._step_start_state: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        from detection.modeling import build_model

        model = build_model(cfg)
        n = sum(p.numel() for p in model.parameters())
        logger.info("Model: %s, %.2fM parameters", type(model).__name__, n / 1e6)
        return model

    @classmethod
    def build_model_info(cls, cfg) -> Optional[ModelInfo]:
        """The detector's `ModelInfo`: architecture, class count and the class names of the
        first DATASETS.TRAIN dataset (known once the start-up checks have read it)."""
        if _cfg_get(cfg, "MODEL.META_ARCHITECTURE", None) is None:
            return None
        return model_info_from_cfg(cfg, cls.dataset_classes(cfg.DATASETS.TRAIN[0]) if len(cfg.DATASETS.TRAIN) else None)

    @classmethod
    def dataset_classes(cls, dataset_name: str) -> Optional[List[str]]:
        """The class names of a registered dataset, in label order (None when not known)."""
        from detection.data import MetadataCatalog

        if dataset_name not in MetadataCatalog:
            return None
        classes = MetadataCatalog.get(dataset_name).get("thing_classes")
        return None if classes is None else list(classes)

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
        """DistributedDataParallel when running under an initialised process group.

        ``broadcast_buffers=False``: BN statistics stay per rank (frozen BN has none to
        sync, SyncBN syncs them itself), saving a broadcast per forward.
        ``find_unused_parameters`` is left off (it costs a graph walk per step): litedet's
        detectors drop the backbone stages they do not use and keep every head output in
        the loss graph (zero-weighted when e.g. an image has no positive RoI), so every
        trainable parameter gets a gradient on every rank at every step.
        """
        if comm.get_world_size() <= 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        logger.info("DistributedDataParallel over %d processes (%s)", comm.get_world_size(), self.device)
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    def _compile_model(self, model: nn.Module) -> nn.Module:
        """``torch.compile`` for training (SOLVER.COMPILE); checkpoints still hold the plain
        module's weights. Detectors have data-dependent shapes (proposals, NMS), so expect
        graph breaks and slow first iterations."""
        logger.info("SOLVER.COMPILE: compiling the model with torch.compile (first iterations are slow)")
        return torch.compile(model)

    @property
    def unwrapped_model(self) -> nn.Module:
        """The plain model (no DDP / torch.compile wrapper)."""
        return self._module

    @property
    def data_loader(self) -> Iterable:
        if self._data_loader is None:
            with comm.fail_together():  # e.g. the dataset missing on one node: every rank stops
                self._data_loader = self.build_train_loader(self.cfg)
        return self._data_loader

    # ------------------------------------------------------------------ checkpoints
    def resume_or_load(self, resume: bool = True) -> None:
        """``resume`` and a checkpoint in OUTPUT_DIR: continue after its iteration.
        Otherwise load MODEL.WEIGHTS (if set) and start at iteration 0."""
        with comm.fail_together():  # a file unreadable on one node stops every rank
            ckpt = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        resuming = resume and self.checkpointer.has_checkpoint()
        start = int(ckpt.get("iteration", -1)) + 1 if resuming else 0
        # Agree before restoring: restoring builds the train loader (a collective), which
        # must happen on every rank or on none.
        states = comm.all_gather((resuming, start))
        if len(set(states)) > 1:  # e.g. multi-node with OUTPUT_DIR not on a shared file system
            raise CheckpointError(
                f"ranks would start at different iterations {[s for _, s in states]}: OUTPUT_DIR "
                f"{self.cfg.OUTPUT_DIR!r} must be the same (shared) folder for every process to --resume"
            )
        self.start_iter = start
        self._check_loaded_classes(resuming)
        if resuming:
            restore_resume_state(ckpt, self.device, lambda: self.data_loader)
            self._last_saved_iter = self.start_iter - 1
            logger.info("Resumed; training continues at iteration %d", self.start_iter)

    def _check_loaded_classes(self, resuming: bool) -> None:
        """Resuming continues the run that wrote the checkpoint: the same classes in the same
        order, or a `ClassMismatchError`. Fine-tuning from MODEL.WEIGHTS of other classes is
        legitimate (the head is retrained) and only logged."""
        loaded, own = self.checkpointer.loaded_info, self.model_info
        if loaded is None or own is None or loaded.thing_classes is None or own.thing_classes is None:
            return
        if list(loaded.thing_classes) == list(own.thing_classes):
            return
        source = self.checkpointer.resumed_from if resuming else self.cfg.MODEL.WEIGHTS
        if resuming:
            raise ClassMismatchError(
                f"cannot --resume from {source}: it was trained on {describe_classes(loaded.thing_classes)} but "
                f"DATASETS.TRAIN has {describe_classes(own.thing_classes)}; use another OUTPUT_DIR for a new run"
            )
        logger.info(
            "MODEL.WEIGHTS %s was trained on %s; fine-tuning it on %s", source,
            describe_classes(loaded.thing_classes), describe_classes(own.thing_classes),
        )

    def save_checkpoint(
        self, name: str, *, iteration: Optional[int] = None, resume_state: Optional[Dict[str, Any]] = None
    ) -> Optional[str]:
        """Save ``name.pth`` (main process) with the state after ``iteration`` (default:
        the current one). Collective under DDP: every rank must call it."""
        iteration = self.iter if iteration is None else iteration
        if resume_state is None:
            resume_state = capture_resume_state(self.device, self._data_loader)
        extra = gather_resume_state(resume_state)
        with comm.fail_together():  # rank 0 cannot write: the others stop too instead of waiting for it
            path = self.checkpointer.save(name, iteration=iteration, **extra)
        self._last_saved_iter = iteration
        return path

    def _stop_requested(self) -> bool:
        if comm.get_world_size() > 1:
            return self._stop_agreed  # agreed on by all ranks in run_step
        return self._signals.signum is not None

    # ------------------------------------------------------------------ loop
    def train(self) -> Dict[str, Any]:
        """Run iterations ``start_iter .. MAX_ITER-1``; returns the last evaluation results."""
        if self.start_iter >= self.max_iter:
            logger.info("Nothing to train: start_iter %d >= SOLVER.MAX_ITER %d", self.start_iter, self.max_iter)
            self.iter = self.start_iter - 1
            if len(self.cfg.DATASETS.TEST):  # e.g. --resume of a finished run: evaluate it again
                self._run_evaluation()
            return self.last_results
        self.data_loader  # built (the training set loaded and checked, REGISTER_* registered) before training starts
        if len(self.cfg.DATASETS.TEST):
            with comm.fail_together():  # e.g. a test image missing on one node: every rank stops
                self.check_test_datasets(self.cfg)
        logger.info("Starting training from iteration %d to %d", self.start_iter, self.max_iter)
        main = comm.is_main_process()
        out = self.cfg.OUTPUT_DIR
        with comm.fail_together():
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
        self._stop_agreed, self.interrupted = False, None
        last = self.start_iter - 1
        try:
            with self._signals:
                for self.iter in range(self.start_iter, self.max_iter):
                    self.run_step()
                    self.after_step()
                    last = self.iter
                    if self._stop_requested() and self.iter + 1 < self.max_iter:  # else finished anyway
                        self._stop_on_signal()
                        break
        finally:
            self._pbar.close()
            for w in self._writers:
                w.close()
            self._writers = []
            # stop loader workers now (the position is kept), not at interpreter exit
            close_loader = getattr(self._data_loader, "close", None)
            if callable(close_loader):
                close_loader()
            self._data_iter = None
        total = time.perf_counter() - self._train_start
        done = last + 1 - self.start_iter
        if self.interrupted is not None:
            return self.last_results
        logger.info(
            "Training finished: %d iterations in %s (%.4f s / it)",
            done, datetime.timedelta(seconds=int(total)), total / max(done, 1),
        )
        return self.last_results

    def _stop_on_signal(self) -> None:
        signum = self._signals.signum
        name = signal.Signals(signum).name if signum is not None else "a signal on another rank"
        if self._last_saved_iter == self.iter:
            path = self.checkpointer.get_checkpoint_file()
        else:
            path = self.save_checkpoint(f"model_{self.iter:07d}")
        self.interrupted = signum if signum is not None else signal.SIGTERM
        logger.warning(
            "Received %s: stopped after iteration %d; checkpoint %s. Continue with --resume.",
            name, self.iter, path or "(written by the main process)",
        )

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
        # State before this step, for a "last good" checkpoint if the loss turns non-finite.
        self._step_start_state = capture_resume_state(self.device, self._data_loader)
        start = time.perf_counter()
        data_error: Optional[Exception] = None
        try:
            data = next(self._data_iter)
        except Exception as err:  # noqa: BLE001 - re-raised below, after every rank knows
            if comm.get_world_size() <= 1:
                raise
            data_error = err
        data_time = time.perf_counter() - start

        finite = True
        if data_error is None:  # DDP's forward has no collective (broadcast_buffers=False)
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                loss_dict = {"total_loss": loss_dict}
            losses = sum(loss_dict.values())
            finite = bool(torch.isfinite(losses).all())
        # One small all-reduce so every rank agrees to stop (signal) or fail (bad data,
        # non-finite loss) before the gradient all-reduce, where a lone failure would hang.
        nonfinite_any, self._stop_agreed = agree_on_step(
            data_error, finite, self._signals.signum is not None, self.device if self.device.type == "cuda" else None
        )
        if nonfinite_any:
            self._on_non_finite(loss_dict)

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

    def _on_non_finite(self, loss_dict: Mapping[str, torch.Tensor]) -> None:
        """Save the state before this iteration (unless already saved) and raise
        `FloatingPointError` naming the iteration and the loss terms."""
        good_iter = self.iter - 1
        if good_iter < self.start_iter or self._last_saved_iter == good_iter:
            if good_iter < self.start_iter:  # diverged at the first iteration of this run
                path = self.checkpointer.resumed_from or ""
            else:
                path = self.checkpointer.get_checkpoint_file()
            saved = f"Last good checkpoint: {path}." if path else "No checkpoint was saved (it diverged at once)."
        else:
            path = self.save_checkpoint(
                f"model_{good_iter:07d}", iteration=good_iter, resume_state=self._step_start_state
            )
            saved = f"Saved the last good state (after iteration {good_iter}) to {path or 'the main process'}."
        raise non_finite_loss_error(loss_dict, self.iter, saved)

    def after_step(self) -> None:
        next_iter = self.iter + 1
        final = next_iter == self.max_iter
        period = int(self.cfg.SOLVER.CHECKPOINT_PERIOD)
        # CHECKPOINT_PERIOD counts iterations; the scheduler / sampler / RNG state saved is
        # the one after iteration `self.iter`, which `--resume` continues from.
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
            with comm.fail_together():  # rank 0 cannot write its metrics: every rank stops (exit 3)
                self._write_metrics()

    def _run_evaluation(self) -> None:
        model = self.unwrapped_model
        model.eval()
        # The test loader seeds itself from the global torch RNG; the checkpoint saved at this
        # step holds the pre-evaluation state, so evaluation must leave the stream untouched
        # or a resumed run would draw different RoI / anchor samples.
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                results = self.test(self.cfg, model, model_classes=self.model_info.thing_classes if self.model_info else None)
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
    def check_test_datasets(cls, cfg) -> None:
        """Before training: build the test loader (which reads the set with the loader's checks
        and stats its image files) and the evaluator's ground truth of each registered
        DATASETS.TEST dataset, so that a test set that cannot be evaluated stops the run now
        instead of after training. Names not in the DatasetCatalog are left alone: typos are
        the config check's to report, and other trainers' test sets are not catalog datasets."""
        from detection.data import DatasetCatalog

        for name in cfg.DATASETS.TEST:
            if name not in DatasetCatalog:
                continue
            cls.build_test_loader(cfg, name)
            prepare = getattr(cls.build_evaluator(cfg, name), "prepare", None)
            if callable(prepare):
                prepare()

    @classmethod
    def test(
        cls, cfg, model: nn.Module, evaluators: Optional[List[Any]] = None, model_classes: Optional[Sequence[str]] = None
    ) -> Dict[str, Any]:
        """Evaluate ``model`` on every DATASETS.TEST set. Returns the evaluator's results
        for a single test set (``{"bbox": {...}}``), else ``{dataset_name: results}``.

        ``model_classes``: the class names of the model's labels (its checkpoint's
        `ModelInfo`); a test set listing them in another order gets the labels mapped by
        name, one with other classes is a `ClassMismatchError`."""
        from detection.evaluation import inference_on_dataset

        names = list(cfg.DATASETS.TEST)
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(f"{len(evaluators)} evaluators for {len(names)} test datasets")
        results: Dict[str, Any] = OrderedDict()
        was_training = model.training
        model.eval()
        try:
            for i, name in enumerate(names):
                with comm.fail_together():  # e.g. the test set missing on one node: every rank stops
                    loader = cls.build_test_loader(cfg, name)
                    if evaluators is not None:
                        evaluator = evaluators[i]
                    else:
                        out = os.path.join(cfg.OUTPUT_DIR, "inference", name) if cfg.OUTPUT_DIR else None
                        evaluator = cls.build_evaluator(cfg, name, output_dir=out)
                    evaluator = cls._map_labels_by_name(evaluator, name, model_classes)
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

    @classmethod
    def _map_labels_by_name(cls, evaluator: Any, dataset_name: str, model_classes: Optional[Sequence[str]]) -> Any:
        """``evaluator``, behind a label mapping when the test set lists the model's classes
        in another order (`match_classes`)."""
        dataset_classes = cls.dataset_classes(dataset_name) if model_classes is not None else None
        if dataset_classes is None:
            return evaluator
        label_map = match_classes(
            model_classes, dataset_classes, model="the model", dataset=f"DATASETS.TEST dataset {dataset_name!r}"
        )
        if label_map is None:
            return evaluator
        from detection.evaluation.evaluator import LabelMappingEvaluator

        logger.info(
            "DATASETS.TEST dataset %r lists the model's classes in another order (%s, model: %s): "
            "the model's labels are mapped to the test set's by name",
            dataset_name, describe_classes(dataset_classes), describe_classes(model_classes),
        )
        return LabelMappingEvaluator(evaluator, label_map)


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
