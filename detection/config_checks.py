"""Every check of a config, with one policy each, and the keys resolved for the run.

A config that cannot work is a `ConfigError`: one line naming the key, its value and what
is wrong (the tools print it and exit 2), found before anything is trained or read at
length. A setting that works but is probably not what the user meant is a warning,
logged once by `check_config`. The config package itself only holds the schema with its
defaults and reads YAML; unknown keys are refused (with close matches) while merging.

- `check_config` (detector) and `check_classification_config` (classifier) run every check
  once at start-up, and fill in the keys left to the data: a class count left at its
  default is taken from the training data and logged; a class count that was set and
  disagrees with the data is an error (`resolve_class_count`, one rule for both).
- Builders that read a key with a fixed set of values call the same `check_choice` /
  `require`, so a class built from plain arguments refuses a bad value with the same message.
- `resolve_device`, `resolve_amp` and `resolve_norm` turn a key into what the run uses.
- `check_weights_input_format` warns when backbone weights expect another input
  convention than the config feeds (the authors' ShuffleNet-Series weights want BGR 0-255).
- `check_value_domains` gives every numeric key its `Domain` (tables `MODEL_DOMAINS`, read
  by every tool, and `SOLVER_DOMAINS`, read by training); `check_output_dir` refuses an
  empty OUTPUT_DIR for training; `check_trained_classes` compares the model's class names
  (the training set's, or those MODEL.WEIGHTS records) with DATASETS.TEST by name.
"""
from __future__ import annotations

import difflib
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .config import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BAD_SAMPLE_POLICIES",
    "CLIP_TYPES",
    "INPUT_FORMATS",
    "NORMS",
    "Domain",
    "MODEL_DOMAINS",
    "SOLVER_DOMAINS",
    "check_backbone_name",
    "check_choice",
    "check_class_ids",
    "check_classification_config",
    "check_config",
    "check_lr_multipliers",
    "check_output_dir",
    "check_protocol_keys",
    "check_trained_classes",
    "check_value_domains",
    "check_weights_input_format",
    "left_at_default",
    "norm_policy",
    "require",
    "resolve_amp",
    "resolve_class_count",
    "resolve_device",
    "resolve_norm",
    "unknown_name_error",
    "validate_config",
]

logger = logging.getLogger(__name__)

BAD_SAMPLE_POLICIES = ("error", "skip")
INPUT_FORMATS = ("RGB", "BGR")
#: Values of MODEL.BACKBONE.NORM ("" = automatic, see `norm_policy`).
NORMS = ("", "BN", "FrozenBN", "SyncBN")
AMP_DTYPES = ("float16", "bfloat16")
CLIP_TYPES = ("value", "norm")
RANDOM_FLIPS = ("none", "horizontal", "vertical", "both")


# ---------------------------------------------------------------------------- small checks
def require(ok: bool, message: str) -> None:
    """`ConfigError` with ``message`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a `ConfigError` naming ``key``."""
    if value not in choices:
        names = [repr(c) for c in choices]
        listed = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        close = difflib.get_close_matches(value, [str(c) for c in choices], n=1, cutoff=0.6) if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key} must be {listed}, got {value!r}{hint}")
    return value


def unknown_name_error(key: str, value: str, registered: Iterable[str]) -> ConfigError:
    """The error for a name that is not registered: close matches first, then every name."""
    names = sorted(registered)
    close = difflib.get_close_matches(value, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(f"{key}: unknown {value!r}{hint} (registered: {', '.join(names)})")


def check_backbone_name(name: str, key: str = "MODEL.BACKBONE.NAME") -> None:
    """`ConfigError` listing the registered variants (closest first) when ``name`` is not one."""
    import backbones

    if name not in backbones.list_backbones():
        raise unknown_name_error(key, name, backbones.list_backbones())


def _get(cfg: Any, key: str, default: Any) -> Any:
    """``cfg.A.B`` or ``default`` when the key is absent (configs of other schemas)."""
    node = cfg
    for part in key.split("."):
        if part not in node:
            return default
        node = node[part]
    return node


# ---------------------------------------------------------------------------- resolved keys
def resolve_device(cfg: Any) -> "torch.device":
    """``MODEL.DEVICE`` as a `torch.device`; `ConfigError` if unparsable or CUDA is absent."""
    import torch

    try:
        device = torch.device(cfg.MODEL.DEVICE)
    except RuntimeError as err:
        raise ConfigError(f"MODEL.DEVICE: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available here; use MODEL.DEVICE cpu")
    return device


def resolve_amp(cfg: Any, device: "torch.device") -> Optional["torch.dtype"]:
    """The autocast dtype SOLVER.AMP asks for on ``device`` (``None``: float32).

    CUDA: float16 (with a GradScaler) or bfloat16. CPU: bfloat16 only — float16 autocast
    on CPU is slow and needs loss scaling, so it is refused with a clear error.
    """
    import torch

    if not bool(_get(cfg, "SOLVER.AMP.ENABLED", False)):
        return None
    name = check_choice("SOLVER.AMP.DTYPE", str(_get(cfg, "SOLVER.AMP.DTYPE", "float16")), AMP_DTYPES)
    if device.type == "cuda":
        if name == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("SOLVER.AMP.DTYPE bfloat16: this GPU does not support bfloat16; use float16")
        return getattr(torch, name)
    if device.type == "cpu" and name == "bfloat16":
        return torch.bfloat16
    raise ConfigError(
        f"SOLVER.AMP.ENABLED with DTYPE {name!r} is not supported on {device.type}: "
        "use SOLVER.AMP.DTYPE bfloat16 on CPU (or MODEL.DEVICE cuda), or SOLVER.AMP.ENABLED False"
    )


def norm_policy(cfg: Any) -> Tuple[str, str]:
    """``(norm, why)``: the BatchNorm policy MODEL.BACKBONE.NORM asks for, made concrete
    for this run, and the reason when it differs from what is written ("" otherwise).

    * ``""`` (automatic, the default): ``FrozenBN`` when the backbone starts from ImageNet
      weights (MODEL.BACKBONE.WEIGHTS set) — small per-GPU batches would only corrupt the
      pretrained statistics — and trainable ``BN`` when it is trained from scratch.
    * ``"BN"`` / ``"FrozenBN"``: as written.
    * ``"SyncBN"``: `torch.nn.SyncBatchNorm` (statistics over the whole multi-GPU batch)
      when running distributed on CUDA; otherwise plain ``BN`` (there is nothing to
      synchronise in one process, and SyncBatchNorm has no CPU kernel).
    """
    import torch

    from detection.utils import comm

    norm = check_choice("MODEL.BACKBONE.NORM", cfg.MODEL.BACKBONE.NORM, NORMS)
    if norm == "":
        if cfg.MODEL.BACKBONE.WEIGHTS:
            return "FrozenBN", "pretrained MODEL.BACKBONE.WEIGHTS"
        return "BN", "backbone trained from scratch"
    if norm == "SyncBN":
        world = comm.get_world_size()
        if world <= 1:
            return "BN", "not running distributed"
        if torch.device(cfg.MODEL.DEVICE).type != "cuda":
            return "BN", "SyncBatchNorm needs CUDA"
    return norm, ""


def resolve_norm(cfg: Any) -> str:
    """The concrete BatchNorm policy for this run (see `norm_policy`)."""
    return norm_policy(cfg)[0]


def _fed_input_format(cfg: Any) -> str:
    """``"BGR255"`` when the config feeds BGR 0-255 images without normalisation
    (INPUT.FORMAT BGR and MODEL.PIXEL_STD all 1), else ``"RGB"`` (normalised)."""
    fmt = str(_get(cfg, "INPUT.FORMAT", "RGB")).upper()
    return "BGR255" if fmt == "BGR" and all(float(s) == 1.0 for s in cfg.MODEL.PIXEL_STD) else "RGB"


def check_weights_input_format(cfg: Any, weights_format: str, weights: str) -> bool:
    """Warn when ``weights`` expect another input than ``cfg`` feeds: BGR 0-255 weights
    (the authors' ShuffleNet-Series, `backbones.weights.LoadReport.input_format`) under a
    normalised-RGB config, or the reverse. Returns whether they agree.

    A warning, not an error: fine-tuning adapts the network, at the cost of a worse start.
    """
    fed = _fed_input_format(cfg)
    if (weights_format == "BGR255") == (fed == "BGR255"):
        return True
    logger.warning(
        "%s expects %s input but the config feeds %s (INPUT.FORMAT=%s, MODEL.PIXEL_STD=%s); for BGR 0-255 "
        "weights set INPUT.FORMAT BGR, MODEL.PIXEL_MEAN [0, 0, 0] and MODEL.PIXEL_STD [1, 1, 1] "
        "(see docs/training.md, Input format)",
        weights,
        "BGR 0-255" if weights_format == "BGR255" else "normalised RGB",
        "BGR 0-255" if fed == "BGR255" else "normalised RGB",
        _get(cfg, "INPUT.FORMAT", "RGB"),
        [float(s) for s in cfg.MODEL.PIXEL_STD],
    )
    return False


# ---------------------------------------------------------------------------- class counts
def left_at_default(cfg: Any, key: str, default: Any) -> bool:
    """Whether ``key`` still holds its schema ``default`` and no config file or override
    named it (`detection.config.CfgNode.is_set`)."""
    is_set = getattr(cfg, "is_set", None)
    return _get(cfg, key, default) == default and not (callable(is_set) and is_set(key))


def _set(cfg: Any, key: str, value: Any) -> None:
    """Set ``key`` in ``cfg``, keeping its frozen state."""
    frozen = cfg.is_frozen()
    cfg.defrost()
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    node[last] = value
    if frozen:
        cfg.freeze()


def resolve_class_count(
    cfg: Any,
    key: str,
    count: int,
    source: str,
    *,
    from_data: bool,
    what: str = "classes",
    auto: str = "leave the key at its default",
) -> int:
    """The one rule for a model's class count against its training data.

    ``from_data`` (the key was left to the data, e.g. `left_at_default`): ``key`` takes
    ``count``, the number of classes of ``source``, and that is logged. Otherwise a value
    that differs from ``count`` is a `ConfigError` naming the key, both counts and
    ``source``, and how to fix it (``auto``: how to leave the key to the data). Returns
    the count in effect; ``cfg`` is updated in place.
    """
    value = int(_get(cfg, key, count))
    if value == count:
        return count
    if from_data:
        _set(cfg, key, int(count))
        logger.info("%s: %d, the number of %s in %s (the key was left to the data)", key, count, what, source)
        return count
    raise ConfigError(
        f"{key} is {value} but {source} has {count} {what}; set {key} {count}, "
        f"or {auto} to take the count from the data"
    )


def _dataset_classes(name: str) -> Optional[List[str]]:
    """Class names of a registered dataset: from its metadata, else by loading it (the
    COCO loader records them; an unreadable file is reported here, before training)."""
    from detection.data import DatasetCatalog, MetadataCatalog

    classes = MetadataCatalog.get(name).get("thing_classes")
    if classes is None:
        DatasetCatalog.get(name)
        classes = MetadataCatalog.get(name).get("thing_classes")
    return None if classes is None else list(classes)


def _describe_classes(classes: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(classes[:limit])
    return shown + (f", ... (+{len(classes) - limit})" if len(classes) > limit else "")


def _check_dataset_classes(cfg: Any, datasets: Sequence[Tuple[str, str]]) -> None:
    """MODEL.ROI_HEADS.NUM_CLASSES against the datasets ``[(key, name), ...]``: taken from
    the first when left at its default, an error when set and different; every dataset
    must have as many classes as the first."""
    from detection.config import get_cfg

    key = "MODEL.ROI_HEADS.NUM_CLASSES"
    first: Optional[Tuple[str, int]] = None
    for cfg_key, name in datasets:
        classes = _dataset_classes(name)
        if classes is None:  # registered without class names: `check_class_ids` checks it once loaded
            continue
        source = f"{cfg_key} dataset {name!r} ({_describe_classes(classes)})"
        require(classes, f"{cfg_key}: dataset {name!r} has no classes (its annotation file lists no categories)")
        if first is None:
            from_data = left_at_default(cfg, key, get_cfg().MODEL.ROI_HEADS.NUM_CLASSES)
            resolve_class_count(cfg, key, len(classes), source, from_data=from_data)
            first = (source, len(classes))
        else:
            require(
                len(classes) == first[1],
                f"{source} has {len(classes)} classes but {first[0]} has {first[1]}; one model cannot serve both",
            )


def check_class_ids(cfg: Any, names: Sequence[str], records: Sequence[Dict[str, Any]]) -> None:
    """Every category id of the loaded ``records`` must be below MODEL.ROI_HEADS.NUM_CLASSES
    (datasets registered without class names are only checked here, once loaded)."""
    num_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    top = max((a["category_id"] for r in records for a in r.get("annotations", [])), default=-1)
    require(
        top < num_classes,
        f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but {'+'.join(names)} uses class id {top} "
        f"(at least {top + 1} classes)",
    )


# ---------------------------------------------------------------------------- model checks
def _check_values(cfg: Any) -> None:
    m, inp, dl = cfg.MODEL, cfg.INPUT, cfg.DATALOADER
    require(m.ROI_HEADS.NUM_CLASSES > 0, f"MODEL.ROI_HEADS.NUM_CLASSES must be positive, got {m.ROI_HEADS.NUM_CLASSES}")
    require(
        len(m.PIXEL_MEAN) == len(m.PIXEL_STD) == 3 and all(s > 0 for s in m.PIXEL_STD),
        f"MODEL.PIXEL_MEAN/PIXEL_STD must be 3 numbers each, std > 0; got {list(m.PIXEL_MEAN)} / {list(m.PIXEL_STD)}",
    )
    for key, ths in (("MODEL.RPN.IOU_THRESHOLDS", m.RPN.IOU_THRESHOLDS), ("MODEL.ROI_HEADS.IOU_THRESHOLDS", m.ROI_HEADS.IOU_THRESHOLDS)):
        require(
            len(ths) >= 1 and all(0.0 <= t <= 1.0 for t in ths) and list(ths) == sorted(ths),
            f"{key} must be increasing values in [0, 1], got {list(ths)}",
        )
    check_choice("INPUT.FORMAT", inp.FORMAT, INPUT_FORMATS)
    sizes = [inp.MIN_SIZE_TRAIN] if isinstance(inp.MIN_SIZE_TRAIN, int) else list(inp.MIN_SIZE_TRAIN)
    require(sizes and all(s > 0 for s in sizes), f"INPUT.MIN_SIZE_TRAIN must be positive sizes, got {inp.MIN_SIZE_TRAIN}")
    require(inp.MIN_SIZE_TEST >= 0, f"INPUT.MIN_SIZE_TEST must be >= 0 (0 = no resize), got {inp.MIN_SIZE_TEST}")
    require(inp.MAX_IMAGE_PIXELS >= 0, f"INPUT.MAX_IMAGE_PIXELS must be >= 0 (0 = no limit), got {inp.MAX_IMAGE_PIXELS}")
    check_choice("INPUT.RANDOM_FLIP", str(inp.RANDOM_FLIP).lower(), RANDOM_FLIPS)
    rotate90 = _get(cfg, "INPUT.RANDOM_ROTATE90", False)
    require(isinstance(rotate90, bool), f"INPUT.RANDOM_ROTATE90 must be True or False, got {rotate90!r}")
    require(dl.NUM_WORKERS >= 0, f"DATALOADER.NUM_WORKERS must be >= 0, got {dl.NUM_WORKERS}")
    check_choice("DATALOADER.BAD_SAMPLE_POLICY", str(dl.BAD_SAMPLE_POLICY).lower(), BAD_SAMPLE_POLICIES)
    require(
        0.0 <= float(dl.MAX_BAD_SAMPLE_FRACTION) <= 1.0,
        f"DATALOADER.MAX_BAD_SAMPLE_FRACTION must be in [0, 1], got {dl.MAX_BAD_SAMPLE_FRACTION}",
    )
    check_choice("MODEL.BACKBONE.NORM", m.BACKBONE.NORM, NORMS)
    lh = m.LIGHT_HEAD
    require(lh.KERNEL_SIZE > 0 and lh.KERNEL_SIZE % 2 == 1, f"MODEL.LIGHT_HEAD.KERNEL_SIZE must be odd, got {lh.KERNEL_SIZE}")
    for key in ("MID_CHANNELS", "CHANNELS_PER_BIN", "POOLER_RESOLUTION", "FC_DIM"):
        require(lh[key] > 0, f"MODEL.LIGHT_HEAD.{key} must be positive, got {lh[key]}")
    require(m.ROI_BOX_HEAD.POOLER_RESOLUTION > 0, "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION must be positive")


def _stage_strides(cfg: Any) -> List[tuple]:
    import torch

    import backbones

    with torch.device("meta"):
        net = backbones.build_backbone(cfg.MODEL.BACKBONE.NAME)
    return [(n, net.stage_shape(n).stride) for n in net.stage_names]


def _check_features(cfg: Any) -> None:
    """Named stages exist, and the Light-Head thin map does not come before the RPN's."""
    strides = dict(_stage_strides(cfg))
    bb = cfg.MODEL.BACKBONE
    for key in ("RPN_FEATURE", "HEAD_FEATURE"):
        name = bb[key]
        require(not name or name in strides, f"MODEL.BACKBONE.{key}: {name!r} is not a stage of {bb.NAME}; stages (stride): {strides}")
    if cfg.MODEL.META_ARCHITECTURE == "LightHeadRCNN":
        rpn_stride = strides[bb.RPN_FEATURE] if bb.RPN_FEATURE else 16  # the builders' defaults
        head_stride = strides[bb.HEAD_FEATURE] if bb.HEAD_FEATURE else 32
        require(
            head_stride >= rpn_stride,
            f"MODEL.BACKBONE.HEAD_FEATURE {bb.HEAD_FEATURE or 'default'!r} (stride {head_stride}) is finer than "
            f"MODEL.BACKBONE.RPN_FEATURE {bb.RPN_FEATURE or 'default'!r} (stride {rpn_stride}); "
            "the thin feature map must be at least as coarse as the RPN's",
        )
    if cfg.MODEL.FPN.ENABLED:
        require(cfg.MODEL.META_ARCHITECTURE == "FasterRCNN", "MODEL.FPN.ENABLED needs MODEL.META_ARCHITECTURE FasterRCNN")
        for name in cfg.MODEL.FPN.IN_FEATURES:
            require(name in strides, f"MODEL.FPN.IN_FEATURES: {name!r} is not a stage of {bb.NAME}; stages (stride): {strides}")


def _build_on_meta(cfg: Any) -> Any:
    """Run the real builder on the meta device (no memory; MODEL.BACKBONE.WEIGHTS is read
    and matched against the model); its ValueErrors are config errors."""
    import torch

    from detection.modeling import META_ARCH_REGISTRY

    try:
        with torch.device("meta"), warnings.catch_warnings():
            # Loading the weights into meta tensors only matches their names and shapes;
            # torch warns once per tensor that the copy itself is a no-op.
            warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter", category=UserWarning)
            return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    except (ValueError, AssertionError, KeyError, IndexError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"model config ({cfg.MODEL.META_ARCHITECTURE} + {cfg.MODEL.BACKBONE.NAME}): {err}") from None


def validate_config(cfg: Any, build: bool = True) -> Any:
    """The model-level checks: registered names (the message lists the registered ones),
    value ranges and choices, and incompatible model settings, found by building the model
    on PyTorch's ``meta`` device (no memory, no weights, well under a second), so that every
    check the builders make — stage names and strides, anchor levels, position-sensitive
    RoIAlign channels, ... — is reported here instead of as a traceback halfway through
    start-up. Returns the meta model when ``build`` (else None)."""
    from detection.modeling import META_ARCH_REGISTRY

    check_backbone_name(cfg.MODEL.BACKBONE.NAME)
    archs = [k for k, _ in META_ARCH_REGISTRY]
    if cfg.MODEL.META_ARCHITECTURE not in archs:
        raise unknown_name_error("MODEL.META_ARCHITECTURE", cfg.MODEL.META_ARCHITECTURE, archs)
    _check_values(cfg)
    check_value_domains(cfg, MODEL_DOMAINS)
    _check_features(cfg)
    check_protocol_keys(cfg)
    return _build_on_meta(cfg) if build else None


# ---------------------------------------------------------------------------- detector
def _check_solver(cfg: Any, device: "torch.device", model: Optional["torch.nn.Module"] = None) -> None:
    """Schedule and solver keys: checked by building them on the (meta) model, so that
    SOLVER.LR_MULTIPLIERS is matched against its parameter names, or on a dummy parameter."""
    import torch

    from detection.engine.solver import build_lr_scheduler, build_optimizer
    from detection.utils import comm

    s = cfg.SOLVER
    require(s.MAX_ITER > 0 and s.IMS_PER_BATCH > 0, "SOLVER.MAX_ITER and SOLVER.IMS_PER_BATCH must be positive")
    world = comm.get_world_size()
    require(
        s.IMS_PER_BATCH % world == 0,
        f"SOLVER.IMS_PER_BATCH={s.IMS_PER_BATCH} is the total batch over all processes and must be divisible by "
        f"the number of processes ({world}); e.g. SOLVER.IMS_PER_BATCH {max(1, s.IMS_PER_BATCH // world) * world}",
    )
    require(s.CHECKPOINT_MAX_KEEP >= 0, f"SOLVER.CHECKPOINT_MAX_KEEP must be >= 0 (0 = keep all), got {s.CHECKPOINT_MAX_KEEP}")
    check_value_domains(cfg, SOLVER_DOMAINS)
    _warn_about_schedule(cfg)
    resolve_amp(cfg, device)
    optimizer = build_optimizer(cfg, model if model is not None else torch.nn.Linear(1, 1))
    build_lr_scheduler(cfg, optimizer)
    if s.CLIP_GRADIENTS.ENABLED:
        check_choice("SOLVER.CLIP_GRADIENTS.CLIP_TYPE", s.CLIP_GRADIENTS.CLIP_TYPE, CLIP_TYPES)


def _warn_about_training_setup(cfg: Any) -> None:
    """Settings that run but are almost always a mistake, and the norm policy in effect."""
    bb = cfg.MODEL.BACKBONE
    pretrained = bool(bb.WEIGHTS or cfg.MODEL.WEIGHTS)
    if bb.NORM == "FrozenBN" and not pretrained:
        logger.warning(
            "MODEL.BACKBONE.NORM is FrozenBN but neither MODEL.BACKBONE.WEIGHTS nor MODEL.WEIGHTS is set: "
            "the backbone trains from scratch with frozen, untrained BatchNorm statistics"
        )
    if bb.FREEZE_AT > 0 and not pretrained:  # frozen random layers never learn
        logger.warning(
            "MODEL.BACKBONE.FREEZE_AT %d freezes randomly initialised layers (no MODEL.BACKBONE.WEIGHTS or "
            "MODEL.WEIGHTS); set MODEL.BACKBONE.FREEZE_AT 0 to train the whole backbone from scratch",
            bb.FREEZE_AT,
        )
    norm, why = norm_policy(cfg)
    if why:
        logger.info("MODEL.BACKBONE.NORM %r: %s (%s)", bb.NORM, norm, why)


def _register_datasets(cfg: Any) -> None:
    """DATASETS.REGISTER_* entries, registered (again: registering is idempotent)."""
    from detection.data import register_from_cfg

    try:
        register_from_cfg(cfg)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None


def _check_datasets(cfg: Any, *, train: bool, test: bool) -> None:
    """DATASETS.REGISTER_* entries (registered here), dataset names, class counts."""
    from detection.data import DatasetCatalog

    _register_datasets(cfg)
    if train:
        require(len(cfg.DATASETS.TRAIN) > 0, "DATASETS.TRAIN is empty")
    wanted = ([("DATASETS.TRAIN", n) for n in cfg.DATASETS.TRAIN] if train else []) + (
        [("DATASETS.TEST", n) for n in cfg.DATASETS.TEST] if test else []
    )
    for key, name in wanted:
        if name not in DatasetCatalog:
            close = difflib.get_close_matches(name, DatasetCatalog.list(), n=3, cutoff=0.5)
            hint = (f"; did you mean {' or '.join(close)}?" if close else "") + f" (registered: {', '.join(DatasetCatalog.list())})"
            raise ConfigError(f"{key}: dataset {name!r} is not registered{hint}")
    _check_dataset_classes(cfg, wanted)


def check_config(cfg: Any, *, train: bool = True, test: bool = True) -> Any:
    """Every check of a detector config, before anything is trained or read at length.

    Model (`validate_config`, with the value domains of `MODEL_DOMAINS`), device, OUTPUT_DIR,
    solver and AMP (``train``, `SOLVER_DOMAINS`), the backbone weights' input format,
    ``DATASETS.REGISTER_*`` (registered here), dataset names and class counts of
    DATASETS.TRAIN (``train``) and DATASETS.TEST (``test``), and the class names of the
    model (the training set's, or those MODEL.WEIGHTS records) against DATASETS.TEST
    (`check_trained_classes`). Raises `ConfigError` for the first problem; logs the
    warnings once.

    MODEL.ROI_HEADS.NUM_CLASSES left at its default takes the training set's class count
    (the test set's without ``train``); this is written into ``cfg`` itself (which keeps its
    frozen state), and ``cfg`` is returned.
    """
    model = validate_config(cfg)
    device = resolve_device(cfg)
    weights_format = getattr(getattr(model, "backbone", None), "input_format", None)
    if cfg.MODEL.BACKBONE.WEIGHTS and weights_format is not None:
        check_weights_input_format(cfg, weights_format, cfg.MODEL.BACKBONE.WEIGHTS)
    if train:
        check_output_dir(cfg)
        _check_solver(cfg, device, model)
        _warn_about_training_setup(cfg)
    check_trained_classes(cfg, train=train, test=test)  # first: a class mismatch names both lists
    _check_datasets(cfg, train=train, test=test)
    return cfg


# ---------------------------------------------------------------------------- protocol keys
# The keys that reproduce the papers' training protocols (docs/protocols.md).
def check_lr_multipliers(value: Any) -> List[Tuple[str, float]]:
    """``SOLVER.LR_MULTIPLIERS`` as ``(pattern, factor)`` pairs: a list of
    ``[non-empty pattern, positive factor]``; a `ConfigError` otherwise. (Whether each
    pattern names a parameter is checked against the model by the optimizer builder.)"""
    pairs = []
    for item in value:
        ok = (
            isinstance(item, (list, tuple))
            and len(item) == 2
            and isinstance(item[0], str)
            and item[0]
            and isinstance(item[1], (int, float))
            and not isinstance(item[1], bool)
            and item[1] > 0
        )
        require(
            ok,
            f"SOLVER.LR_MULTIPLIERS must be a list of [parameter-name pattern, positive factor] pairs, "
            f'e.g. [["neck.conv.*", 3.0]]; got {list(value)!r}',
        )
        pairs.append((item[0], float(item[1])))
    return pairs


def check_protocol_keys(cfg: Any) -> None:
    """RoI selection, box loss and RPN border keys, and ``SOLVER.LR_MULTIPLIERS`` (OHEM_TOPK is
    in `MODEL_DOMAINS`)."""
    m = cfg.MODEL
    rois = m.ROI_HEADS.BATCH_SIZE_PER_IMAGE
    require(
        rois == -1 or rois > 0,
        f"MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE must be a positive RoI count or -1 (every proposal), got {rois}",
    )
    beta = m.ROI_BOX_HEAD.SMOOTH_L1_BETA
    require(beta >= 0, f"MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA must be >= 0 (0 = L1), got {beta}")
    border = m.RPN.BOUNDARY_THRESH
    require(
        border == -1 or border >= 0,
        f"MODEL.RPN.BOUNDARY_THRESH must be -1 (label every anchor) or >= 0 pixels, got {border}",
    )
    check_lr_multipliers(cfg.SOLVER.LR_MULTIPLIERS)


# ---------------------------------------------------------------------------- classifier
def check_classification_config(cfg: Any, *, train: bool = True) -> Any:
    """Every check of a classification config, and the keys that depend on the data:
    ``MODEL.NUM_CLASSES`` (0 = the number of class folders of the training split; a set
    value that differs is an error), ``SOLVER.ITERS_PER_EPOCH`` (0 -> ceil(training images
    / IMS_PER_BATCH)), with ``SOLVER.MAX_EPOCHS`` > 0 ``SOLVER.MAX_ITER``, and with
    ``TEST.PRECISE_BN.ENABLED`` ``TEST.PRECISE_BN.NUM_ITER`` (0 -> one epoch). Raises
    `ConfigError` / `ImageFolderError` naming the key or path; returns the resolved config
    as a frozen copy (the tool's start-up assigns it).
    """
    from detection.classification.data import (
        build_test_transform,
        build_train_transform,
        iters_per_epoch,
        list_classes,
        scan_image_folder,
        split_dir,
        train_classes,
    )
    from detection.classification.solver import build_classification_lr_scheduler, uses_epochs

    cfg = cfg.clone()
    cfg.defrost()
    check_backbone_name(cfg.MODEL.BACKBONE.NAME)
    resolve_device(cfg)
    if train:
        check_output_dir(cfg)
    s = cfg.SOLVER
    require(s.IMS_PER_BATCH > 0, f"SOLVER.IMS_PER_BATCH must be positive, got {s.IMS_PER_BATCH}")
    require(
        len(cfg.DATASETS.TRAIN) == 1,
        f"DATASETS.TRAIN must name exactly one split folder, got {list(cfg.DATASETS.TRAIN)}",
    )
    build_test_transform(cfg)
    if train:
        build_train_transform(cfg)

    key = "MODEL.NUM_CLASSES"
    train_dir = split_dir(cfg, cfg.DATASETS.TRAIN[0])
    classes = train_classes(cfg)
    if train:
        classes, samples = scan_image_folder(train_dir)
        if uses_epochs(cfg) and s.ITERS_PER_EPOCH <= 0:
            _set(cfg, "SOLVER.ITERS_PER_EPOCH", iters_per_epoch(len(samples), int(s.IMS_PER_BATCH)))
        if s.MAX_EPOCHS > 0:
            _set(cfg, "SOLVER.MAX_ITER", int(s.MAX_EPOCHS) * int(s.ITERS_PER_EPOCH))
        require(s.MAX_ITER > 0, f"SOLVER.MAX_ITER must be positive, got {s.MAX_ITER}")
        precise_bn = cfg.TEST.PRECISE_BN
        if precise_bn.ENABLED:
            require(
                precise_bn.NUM_ITER >= 0,
                f"TEST.PRECISE_BN.NUM_ITER must be positive (0 = one epoch), got {precise_bn.NUM_ITER}",
            )
            if precise_bn.NUM_ITER == 0:
                _set(cfg, "TEST.PRECISE_BN.NUM_ITER", iters_per_epoch(len(samples), int(s.IMS_PER_BATCH)))
    if classes is not None:
        resolve_class_count(
            cfg, key, len(classes), train_dir, from_data=cfg.MODEL.NUM_CLASSES <= 0, what="class folders", auto=f"{key} 0"
        )
    else:
        # No training split: each test split is labelled by its own sorted class folders,
        # which matches the training labels only when it holds every class.
        for split in cfg.DATASETS.TEST:
            found = list_classes(split_dir(cfg, split))
            if cfg.MODEL.NUM_CLASSES <= 0:
                resolve_class_count(cfg, key, len(found), split_dir(cfg, split), from_data=True, what="class folders")
            require(
                len(found) == cfg.MODEL.NUM_CLASSES,
                f"{key} is {cfg.MODEL.NUM_CLASSES} but {split_dir(cfg, split)} has {len(found)} class folders, and "
                f"without the training split {train_dir} the labels cannot be matched to class names: provide it "
                "(its class folders suffice, even empty)",
            )
    require(cfg.MODEL.NUM_CLASSES > 0, f"{key} is 0 and no class folders were found to count; set it explicitly")
    for split in cfg.DATASETS.TEST:  # fail now, not after hours of training
        scan_image_folder(split_dir(cfg, split), classes)
    if train:  # the schedule's own checks (unknown name, missing ITERS_PER_EPOCH, ...)
        import torch

        build_classification_lr_scheduler(cfg, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=float(s.BASE_LR)))
    cfg.freeze()
    return cfg


# ============================================================================ value domains
# Every numeric key of the detector schema with the values it may take (the keys checked
# in `_check_values` above and the sampling sizes are not repeated here). A value outside
# its domain is a `ConfigError` naming the key, the value and the domain.
@dataclass(frozen=True)
class Domain:
    """A range of numbers: ``low``/``high`` bounds (open or closed), finite unless ``finite``
    is False; a list value must hold only numbers in the range."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    finite: bool = True

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        v = float(value)
        if math.isnan(v) or (self.finite and math.isinf(v)):
            return False
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def describe(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Domain(0, low_open=True)
NON_NEGATIVE = Domain(0)
AT_LEAST_ONE = Domain(1)
FRACTION = Domain(0, 1)  # [0, 1]
OPEN_FRACTION = Domain(0, 1, low_open=True)  # (0, 1]

#: Keys read for every use of a detector config (model and test time).
MODEL_DOMAINS: Tuple[Tuple[str, Domain], ...] = (
    ("MODEL.PIXEL_MEAN", Domain()),
    ("MODEL.BACKBONE.FREEZE_AT", NON_NEGATIVE),
    ("MODEL.FPN.OUT_CHANNELS", AT_LEAST_ONE),
    ("MODEL.ANCHOR_GENERATOR.SIZES", POSITIVE),
    ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", POSITIVE),
    ("MODEL.RPN.HEAD_CONV_DIM", AT_LEAST_ONE),
    ("MODEL.RPN.POSITIVE_FRACTION", OPEN_FRACTION),
    ("MODEL.RPN.NMS_THRESH", OPEN_FRACTION),
    ("MODEL.RPN.PRE_NMS_TOPK_TRAIN", AT_LEAST_ONE),
    ("MODEL.RPN.POST_NMS_TOPK_TRAIN", AT_LEAST_ONE),
    ("MODEL.RPN.PRE_NMS_TOPK_TEST", AT_LEAST_ONE),
    ("MODEL.RPN.POST_NMS_TOPK_TEST", AT_LEAST_ONE),
    ("MODEL.ROI_HEADS.POSITIVE_FRACTION", OPEN_FRACTION),
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", FRACTION),
    ("MODEL.ROI_HEADS.NMS_THRESH_TEST", OPEN_FRACTION),
    ("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", NON_NEGATIVE),
    ("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", POSITIVE),
    ("MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT", NON_NEGATIVE),
    ("MODEL.ROI_BOX_HEAD.FC_DIM", AT_LEAST_ONE),
    ("MODEL.LIGHT_HEAD.OHEM_TOPK", AT_LEAST_ONE),
    ("MODEL.LIGHT_HEAD.FC_INIT_STD", NON_NEGATIVE),  # 0 = PyTorch's default
    ("INPUT.MAX_SIZE_TRAIN", NON_NEGATIVE),  # 0 = no cap
    ("INPUT.MAX_SIZE_TEST", NON_NEGATIVE),
    ("INPUT.AUG.COLOR_JITTER", NON_NEGATIVE),
    ("INPUT.AUG.HUE", Domain(0, 0.5)),
    ("INPUT.AUG.MIN_VISIBILITY", FRACTION),
    ("TEST.EVAL_PERIOD", NON_NEGATIVE),
    ("TEST.DETECTIONS_PER_IMAGE", AT_LEAST_ONE),
)

#: Keys read only by training.
SOLVER_DOMAINS: Tuple[Tuple[str, Domain], ...] = (
    ("SOLVER.BASE_LR", POSITIVE),
    ("SOLVER.BASE_LR_END", NON_NEGATIVE),
    ("SOLVER.MOMENTUM", Domain(0, 1, high_open=True)),
    ("SOLVER.WEIGHT_DECAY", NON_NEGATIVE),
    ("SOLVER.WEIGHT_DECAY_NORM", NON_NEGATIVE),
    ("SOLVER.STEPS", POSITIVE),
    ("SOLVER.GAMMA", POSITIVE),
    ("SOLVER.WARMUP_FACTOR", FRACTION),
    ("SOLVER.WARMUP_ITERS", NON_NEGATIVE),
    ("SOLVER.CHECKPOINT_PERIOD", NON_NEGATIVE),
    ("SOLVER.CLIP_GRADIENTS.CLIP_VALUE", POSITIVE),
    ("SOLVER.CLIP_GRADIENTS.NORM_TYPE", Domain(0, low_open=True, finite=False)),  # inf: the max norm
)


def _numbers(value: Any) -> Iterator[Any]:
    """The numbers of a value, nested lists (anchor sizes per level) flattened."""
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)
    else:
        yield value


def check_value_domains(cfg: Any, domains: Sequence[Tuple[str, Domain]]) -> None:
    """`ConfigError` for the first key of ``domains`` (absent keys skipped) holding a value
    outside its `Domain`."""
    for key, domain in domains:
        value = _get(cfg, key, None)
        if value is None:
            continue
        bad = [v for v in _numbers(value) if not domain.contains(v)]
        if bad:
            if isinstance(value, (list, tuple)):
                raise ConfigError(f"{key} must have every value {domain.describe()}, got {list(value)!r}")
            raise ConfigError(f"{key} must be {domain.describe()}, got {value!r}")


def _warn_about_schedule(cfg: Any) -> None:
    """A warm-up longer than the run (e.g. a short test run of a long config) runs, but
    never reaches BASE_LR. (STEPS past MAX_ITER are warned about by the scheduler's builder.)"""
    s = cfg.SOLVER
    if s.WARMUP_ITERS > s.MAX_ITER:
        logger.warning(
            "SOLVER.WARMUP_ITERS %d > SOLVER.MAX_ITER %d: the run ends during warm-up, below SOLVER.BASE_LR",
            s.WARMUP_ITERS, s.MAX_ITER,
        )


def check_output_dir(cfg: Any) -> None:
    """Training writes its checkpoints, metrics and log to OUTPUT_DIR: it must be named."""
    require(
        str(cfg.OUTPUT_DIR).strip() != "",
        'OUTPUT_DIR is empty: training writes checkpoints, metrics and its log there; give a folder (e.g. OUTPUT_DIR ./output/run1)',
    )


# ============================================================================ trained classes
def check_trained_classes(cfg: Any, *, train: bool, test: bool) -> Optional[List[str]]:
    """The class names of the model's labels, checked against the registered DATASETS.TEST
    datasets by name (`detection.model_info.match_classes`: another order is mapped at
    evaluation, other classes are a `ClassMismatchError`). Returns the names (None when
    unknown). Registers DATASETS.REGISTER_*; unregistered names are `check_config`'s to report.

    Training: the model's classes are the first DATASETS.TRAIN dataset's. Otherwise
    (evaluation, demo, export) they are the ones MODEL.WEIGHTS records, and
    MODEL.ROI_HEADS.NUM_CLASSES not set by the config takes their count; a checkpoint that
    records no names is warned about once."""
    from detection.checkpoint import CheckpointError, read_model_info
    from detection.data import DatasetCatalog
    from detection.model_info import match_classes

    _register_datasets(cfg)
    if train:
        if not len(cfg.DATASETS.TRAIN) or cfg.DATASETS.TRAIN[0] not in DatasetCatalog:
            return None
        model_classes = _dataset_classes(cfg.DATASETS.TRAIN[0])
        model = f"the model's training set, DATASETS.TRAIN dataset {cfg.DATASETS.TRAIN[0]!r},"
    else:
        weights = str(cfg.MODEL.WEIGHTS)
        if not weights or not os.path.isfile(weights):  # none given / the caller reports the missing file
            return None
        try:
            info = read_model_info(weights)
        except CheckpointError as err:
            raise ConfigError(f"MODEL.WEIGHTS: {err}") from None
        if info is None or info.thing_classes is None:
            logger.warning(
                "MODEL.WEIGHTS %s records no class names (written by an older litedet, or not by litedet): "
                "whether DATASETS.TEST has the classes it was trained on cannot be checked", weights,
            )
            return None
        model_classes, model = list(info.thing_classes), f"the model in MODEL.WEIGHTS {weights}"
    if model_classes is not None and test:
        for name in cfg.DATASETS.TEST:
            classes = _dataset_classes(name) if name in DatasetCatalog else None
            if classes is not None:
                match_classes(model_classes, classes, model=model, dataset=f"DATASETS.TEST dataset {name!r}")
    if not train and model_classes is not None:
        key = "MODEL.ROI_HEADS.NUM_CLASSES"
        is_set = getattr(cfg, "is_set", None)
        resolve_class_count(
            cfg, key, len(model_classes), f"{model} ({_describe_classes(model_classes)})",
            from_data=not (callable(is_set) and is_set(key)),
        )
    return model_classes
