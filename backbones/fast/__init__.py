"""Inference fast paths: modules built from trained ones, swapped in by ``fuse()``.

Every backbone-side fast path lives in this package (the detector heads' in
`detection.modeling.fast_heads`); the training modules have one forward each and know
nothing of it. ``model.eval().fuse()`` (`Backbone.fuse`, `ImageClassifier.fuse`,
`detection.modeling.RCNN.fuse`) calls `fuse_model`:

- `fold`: every conv -> BatchNorm pair becomes one `FoldedConv2d`;
- `winograd`: `WinogradConv3x3`, the wide dense 3x3 convs (the RPN's) of the channels-last
  form on CPU;
- `inference`: `InferenceModule`, the base of all of them (``train()`` raises), and
  `swap_modules`, which replaces trained modules by their inference form;
- `fuse`: `fuse_model` and the table of the channels-last form's modules.

A new fast path: an `InferenceModule` subclass built from the trained module, an entry in
`CHANNELS_LAST_MODULES` (or in the detector's `HEAD_MODULES`), a test that its outputs
equal the trained module's, and a comparison in ``benchmarks/fast_paths.py`` showing that
it earns at least 5% on the whole classifier or detector (benchmarks/README.md).
"""
from .fold import BatchNorm, FoldedConv2d, bn_scale_shift, count_batchnorms, fold_batchnorms, fuse_conv_affine, fuse_conv_bn
from .fuse import CHANNELS_LAST_MODULES, fuse_model
from .inference import InferenceModule, ModuleBuilders, check_trainable, is_fused, swap_modules
from .winograd import WINOGRAD_MIN_CHANNELS, WinogradConv3x3, winograd_if_wide

__all__ = [
    "BatchNorm",
    "FoldedConv2d",
    "bn_scale_shift",
    "count_batchnorms",
    "fold_batchnorms",
    "fuse_conv_affine",
    "fuse_conv_bn",
    "CHANNELS_LAST_MODULES",
    "fuse_model",
    "InferenceModule",
    "ModuleBuilders",
    "check_trainable",
    "is_fused",
    "swap_modules",
    "WINOGRAD_MIN_CHANNELS",
    "WinogradConv3x3",
    "winograd_if_wide",
]
