"""Static cost model of a network: parameters, MACs, memory access cost, fragmentation.

Why this exists: the ShuffleNet v2 paper (Sec. 2) shows that FLOPs alone do not predict
speed; memory access cost (guidelines G1, G2, G4) and fragmentation (G3) matter as well.
This module measures all of them the same way for every registered backbone, so families
can be compared on more than FLOPs and the implementations can be checked against the
complexity the papers publish (``tests/backbones/test_fidelity.py``). Latency is a
separate, measured quantity (a benchmark tool's job); nothing here times anything.

Everything is counted at the aten-operator level with a `TorchDispatchMode` while the
model runs one forward pass in eval mode under ``torch.no_grad`` (composite operators are
split into the operators they run, exactly as `torch.utils.flop_counter.FlopCounterMode`
does). Definitions:

``macs`` (multiply-accumulates, the papers' "FLOPs")
    Multiply-adds of convolutions, linear layers and matrix products, from the formulas of
    `torch.utils.flop_counter` (which count 2 per multiply-add): ``macs = flops // 2``,
    equal to ``FlopCounterMode(display=False).get_total_flops() // 2`` by construction.
    Bias additions, BatchNorm, activations, pooling and other element-wise operators add
    nothing, as in the papers.

``mac_bytes`` (memory access cost, "MAC" in the ShuffleNet v2 paper, G1)
    Bytes of the floating-point tensors each computing operator reads and writes, summed
    over operators: ``sum(input bytes + output bytes)``. Weights are inputs of the
    convolution / ``addmm`` that reads them, so they are counted once per use. This is the
    paper's model of an infinitely large cache: for a bias-free 1x1 convolution from c1 to
    c2 channels on an h x w map it gives ``4 * (h*w*(c1 + c2) + c1*c2)`` bytes in fp32.
    Rules:

    * every operator that computes counts: convolution, ``addmm``/``mm``, ReLU, add, mul,
      sigmoid, cat, pooling, mean, and the ``clone`` that makes channel shuffle's transpose
      contiguous (a copy reads and writes the whole tensor);
    * in-place operators count like out-of-place ones (``relu_`` reads and writes ``x``);
    * pure view / metadata operators move no data and count 0: ``view``, ``reshape`` when
      it is a view, ``_unsafe_view``, ``transpose``, ``t``, ``slice``, ``split``/``chunk``,
      ``expand``, ``detach``, allocation (``empty``) and any operator returning no tensor;
    * BatchNorm counts 0: at inference it is folded into the preceding convolution, so
      its own read and write of the feature map disappear (`nn.BatchNorm*` modules,
      functional ``batch_norm`` and torchvision's `FrozenBatchNorm2d`, whose eval forward
      is a mul + add, are all skipped; the folded bias the convolution would gain, c_out
      values, is not added);
    * a tensor passed twice to one operator (``x + x``) is read once;
    * integer tensors (e.g. the indices ``max_pool2d_with_indices`` returns) are ignored:
      an inference kernel does not produce them;
    * bytes use each tensor's element size, i.e. 4 for the fp32 models analysed here.

fragments (G3, "fragmented operators" per building block)
    For each unit of a stage, the number of convolution, matmul and pooling operators its
    forward runs (global average pooling written as a spatial ``mean`` included); the
    paper counts "individual convolution or pooling operations in one building block"
    (13 for NASNet-A, 2-3 for ResNet). Units are the children of a stage when all of them
    are blocks (modules with submodules); a stage made of bare layers (a stem, a final 1x1
    conv) is one unit. ``branches`` is the largest number of those operators that could
    run concurrently (the width of their data-dependency graph): 1 for a series of convs,
    2 for ShuffleNet v2's stride-2 unit, 4 for the paper's "4-fragment-parallel" block.
    An identity branch holds no operator and does not count.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import FrozenBatchNorm2d

from .base import Backbone
from .classifier import build_classifier
from .registry import PaperFigures, get_variant

__all__ = ["ModelReport", "StageReport", "analyze", "analyze_variant", "PAPER_INPUT_SIZE", "FAMILY_NOTES"]

#: The resolution at which the papers report complexity.
PAPER_INPUT_SIZE: Tuple[int, int] = (224, 224)

#: What a family's row of figures needs said (docs/model_zoo.md prints it under the family).
FAMILY_NOTES: Dict[str, str] = {
    "mobilenet_v1": (
        "`mobilenet_v1_0.125x` is the FD-MobileNet paper's 12 MFLOPs baseline (its Table 2), with "
        "the widths of the FD-MobileNet authors' code (`int(c * 0.125)`, no floor of 8: a 4-channel stem)."
    ),
    "mobilenet_v2": (
        "0.27x, 0.56x and 1.3x are chosen for the ShuffleNet v2 paper's Table 7 complexity levels (40, "
        "140 and 500 MFLOPs; 1.0x is the 300 one); their paper column is the level. With torchvision's "
        "divisible-by-8 widths nothing lands within 5% of 40M: 0.27x measures 37.8M, 0.28x 55.8M."
    ),
    "seesaw": (
        "Seesaw-shareNet is the paper's Sec. 6.1 network: every pointwise conv split 1:2 (no even "
        "blocks), widths made multiples of 3 (stem 33; 15, 24, 33, 63, 96, 162, 318). The paper "
        "gives its figures only at CIFAR size (Tables 3-4, \"v1\": 181M multiply-adds, 2.4M params "
        "for 1.0D; 108M / 1.5M for 0.5D), which `tests/backbones/test_fidelity.py` checks at 32x32 "
        "(181.4M / 2.42M; 108.3M / 1.48M); the authors' code has no Seesaw-share. The same widths "
        "with even blocks kept give the paper's \"v0\" figures, which is what fixes 162 and 318 "
        "(see `backbones/seesaw.py`)."
    ),
    "shufflenet_v1": (
        "`xception_like_*` (= `shufflenet_v1_g1_*`) is the \"Xception-like\" structure of the "
        "ShuffleNet v1 paper (ShuffleNet v1 units with g=1). The \"Xception\" of the ShuffleNet v2 "
        "paper's COCO comparison (its Table 7) is Light-Head R-CNN's network, `small_xception_*`. "
        "The classifier's FC has no bias, as in the authors' release."
    ),
    "shufflenet_v2": "The classifier's FC has no bias, as in the authors' release.",
    "small_xception": (
        "Light-Head R-CNN's small Xception-like backbone (its Table 7: 145 MFLOPs), the "
        "\"Xception\" of the ShuffleNet v2 paper's Table 7; not `xception_like_*` (ShuffleNet v1 "
        "g=1). The paper gives stages and widths only; the units here are three 3x3 "
        "depthwise-separable convs (receptive field 7) with ShuffleNet v1's shortcuts (see "
        "`backbones/small_xception.py`). 0.45x, 1.45x and 1.9x are chosen for Table 7's 40, 300 "
        "and 500 MFLOPs levels; their paper column is the level."
    ),
}

SizeLike = Union[int, Sequence[int]]

_aten = torch.ops.aten


def _packets(*names: str) -> FrozenSet[Any]:
    """aten overload packets by name, skipping any this torch build lacks."""
    return frozenset(getattr(_aten, n) for n in names if hasattr(_aten, n))


#: Operators that allocate or relabel memory without moving feature-map data. (Schema-level
#: views such as ``view``/``transpose``/``split`` are recognised by ``OpOverload.is_view``.)
_FREE_OPS = _packets(
    "_unsafe_view", "_reshape_alias", "as_strided", "alias", "detach", "lift_fresh",
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
)
#: BatchNorm kernels: folded into the preceding convolution at inference.
_BATCH_NORM_OPS = _packets(
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
    "_batch_norm_impl_index", "_batch_norm_no_update", "_batch_norm_with_update",
    "cudnn_batch_norm", "miopen_batch_norm",
)
#: Spatial reductions that are global pooling when they cover the last two dimensions.
_GLOBAL_POOL_OPS = _packets("mean", "amax", "sum")
_BATCH_NORM_MODULES = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)


# --------------------------------------------------------------------------- reports
@dataclass
class StageReport:
    """Costs of one stage (or of the ``head``: everything outside the stages)."""

    name: str
    output_shape: Tuple[int, ...]  # no batch dim: (C, H, W) for a stage; () if it did not run
    stride: Optional[int]
    params: int
    macs: int
    mac_bytes: int
    fragments: List[int] = field(default_factory=list)  # per unit, in forward order
    branches: List[int] = field(default_factory=list)  # per unit

    @property
    def units(self) -> int:
        return len(self.fragments)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "output_shape": list(self.output_shape),
            "stride": self.stride,
            "params": self.params,
            "macs": self.macs,
            "mac_bytes": self.mac_bytes,
            "units": self.units,
            "fragments": list(self.fragments),
            "fragments_min": min(self.fragments, default=None),
            "fragments_max": max(self.fragments, default=None),
            "fragments_mean": _mean(self.fragments),
            "branches_max": max(self.branches, default=None),
        }


@dataclass
class ModelReport:
    """Complexity of one model at one input size; see the module docstring for definitions."""

    name: str
    input_size: Tuple[int, int]
    batch: int
    params: int
    macs: int
    mac_bytes: int
    stages: List[StageReport]
    output_shape: Tuple[int, ...]
    macs_by_op: Dict[str, int] = field(default_factory=dict)
    mac_bytes_by_op: Dict[str, int] = field(default_factory=dict)
    family: str = ""
    paper: PaperFigures = field(default_factory=PaperFigures)

    # -- comparison with the paper ------------------------------------------------
    @property
    def at_paper_resolution(self) -> bool:
        return tuple(self.input_size) == PAPER_INPUT_SIZE and self.batch == 1

    @property
    def macs_rel_diff(self) -> Optional[float]:
        """(ours - paper) / paper; None without a paper figure or away from 224x224, batch 1."""
        if not self.at_paper_resolution:
            return None
        return _rel_diff(self.macs, self.paper.macs)

    @property
    def params_rel_diff(self) -> Optional[float]:
        return _rel_diff(self.params, self.paper.params)

    # -- fragmentation summary over every unit of every stage ---------------------
    @property
    def unit_fragments(self) -> List[int]:
        return [f for stage in self.stages for f in stage.fragments]

    @property
    def max_branches(self) -> Optional[int]:
        return max((b for stage in self.stages for b in stage.branches), default=None)

    def stage(self, name: str) -> StageReport:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable summary (plain ints, floats, strings, lists, None)."""
        fragments = self.unit_fragments
        return {
            "name": self.name,
            "family": self.family,
            "input_size": list(self.input_size),
            "batch": self.batch,
            "params": self.params,
            "macs": self.macs,
            "mac_bytes": self.mac_bytes,
            "output_shape": list(self.output_shape),
            "paper_macs": self.paper.macs,
            "paper_params": self.paper.params,
            "paper_source": self.paper.source or None,
            "macs_rel_diff": self.macs_rel_diff,
            "params_rel_diff": self.params_rel_diff,
            "fragments_mean": _mean(fragments),
            "fragments_max": max(fragments, default=None),
            "branches_max": self.max_branches,
            "stages": [stage.to_dict() for stage in self.stages],
            "macs_by_op": dict(self.macs_by_op),
            "mac_bytes_by_op": dict(self.mac_bytes_by_op),
        }


def _rel_diff(ours: float, paper: Optional[float]) -> Optional[float]:
    if not paper:
        return None
    return (ours - paper) / paper


def _mean(values: Sequence[int]) -> Optional[float]:
    return sum(values) / len(values) if values else None


# ------------------------------------------------------------------ op-level counting
@dataclass(eq=False)  # scopes are told apart by identity, not by their running values
class _Cost:
    """Running totals of one scope (the whole model or one stage)."""

    flops: int = 0
    mac_bytes: int = 0
    flops_by_op: Counter = field(default_factory=Counter)
    bytes_by_op: Counter = field(default_factory=Counter)

    def add(self, op: str, flops: int, nbytes: int) -> None:
        self.flops += flops
        self.mac_bytes += nbytes
        if flops:
            self.flops_by_op[op] += flops
        if nbytes:
            self.bytes_by_op[op] += nbytes


class _UnitTrace:
    """Data dependencies between the fragment operators of one unit.

    Each tensor storage maps to the set of fragment operators it (transitively) depends
    on; since those sets are transitive, an operator's set is its full ancestry and the
    graph's width (largest antichain) follows from Dilworth's theorem.
    """

    def __init__(self) -> None:
        self._deps: Dict[int, FrozenSet[int]] = {}
        self.ancestors: List[FrozenSet[int]] = []

    def record(self, inputs: Sequence[Tensor], outputs: Sequence[Tensor], is_fragment: bool) -> None:
        empty: FrozenSet[int] = frozenset()
        upstream = empty.union(*(self._deps.get(_storage_key(t), empty) for t in inputs))
        produced = upstream
        if is_fragment:
            produced = upstream | {len(self.ancestors)}
            self.ancestors.append(upstream)
        for t in outputs:  # in-place ops and views write back into the input's storage
            self._deps[_storage_key(t)] = produced

    @property
    def fragments(self) -> int:
        return len(self.ancestors)

    def branches(self) -> int:
        return _max_antichain(self.ancestors)


def _max_antichain(ancestors: Sequence[FrozenSet[int]]) -> int:
    """Width of a transitively closed DAG: nodes minus a maximum matching of a < b pairs
    (minimum chain cover, Dilworth). Kuhn's augmenting paths; units have < 50 nodes."""
    n = len(ancestors)
    successors = [[b for b in range(n) if a in ancestors[b]] for a in range(n)]
    matched_to: Dict[int, int] = {}

    def augment(a: int, seen: set) -> bool:
        for b in successors[a]:
            if b not in seen:
                seen.add(b)
                if b not in matched_to or augment(matched_to[b], seen):
                    matched_to[b] = a
                    return True
        return False

    return n - sum(augment(a, set()) for a in range(n))


def _storage_key(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _tensors(tree: Any) -> List[Tensor]:
    return [x for x in tree_flatten(tree)[0] if isinstance(x, Tensor)]


def _float_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the distinct floating-point tensors (an argument passed twice is read once)."""
    unique = {id(t): t for t in tensors if t.is_floating_point()}
    return sum(t.numel() * t.element_size() for t in unique.values())


def _is_global_pool(packet: Any, args: Sequence[Any]) -> bool:
    if packet not in _GLOBAL_POOL_OPS or len(args) < 2 or not isinstance(args[0], Tensor):
        return False
    x, dims = args[0], args[1]
    if x.dim() < 3 or not isinstance(dims, (list, tuple)):
        return False
    spatial = {x.dim() - 2, x.dim() - 1}
    return spatial <= {d % x.dim() for d in dims}


class _CostRecorder(TorchDispatchMode):
    """Counts flops, bytes and fragments of every aten operator run inside it.

    `scopes` holds the accumulators the current operator is charged to (the model, and
    the stage being run); `unit` the trace of the unit being run, if any. Module hooks
    set both (see `_Instrumentation`).
    """

    def __init__(self, flop_formulas: Dict[Any, Callable[..., int]]) -> None:
        super().__init__()
        self.flop_formulas = flop_formulas
        self.total = _Cost()
        self.scopes: List[_Cost] = [self.total]
        self.folded_depth = 0  # > 0 while inside a BatchNorm module
        self.unit: Optional[_UnitTrace] = None

    def __torch_dispatch__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None
    ) -> Any:
        kwargs = kwargs or {}
        # A BatchNorm kernel may be decomposed into element-wise ops below: they are all
        # part of the folded BN, whether it was called by a module or functionally.
        folded = func._overloadpacket in _BATCH_NORM_OPS
        self.folded_depth += folded
        try:
            return self._dispatch(func, args, kwargs)
        finally:
            self.folded_depth -= folded

    def _dispatch(self, func: Any, args: Sequence[Any], kwargs: Dict[str, Any]) -> Any:
        if func is not torch.ops.prim.device.default:
            # Same rule as FlopCounterMode: composite ops are counted as the ops they run.
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        self._record(func, args, kwargs, out)
        return out

    def _record(self, func: Any, args: Sequence[Any], kwargs: Dict[str, Any], out: Any) -> None:
        packet = func._overloadpacket
        inputs, outputs = _tensors((args, kwargs)), _tensors(out)
        formula = self.flop_formulas.get(packet)
        flops = int(formula(*args, **kwargs, out_val=out)) if formula is not None else 0
        nbytes = 0 if self._moves_no_data(func, packet, outputs) else _float_bytes(inputs) + _float_bytes(outputs)
        name = packet.__name__
        for scope in self.scopes:
            scope.add(name, flops, nbytes)
        if self.unit is not None:
            computes = formula is not None or "pool" in name or _is_global_pool(packet, args)
            self.unit.record(inputs, outputs, is_fragment=computes and self.folded_depth == 0)

    def _moves_no_data(self, func: Any, packet: Any, outputs: Sequence[Tensor]) -> bool:
        return (
            self.folded_depth > 0
            or not outputs
            or func.is_view
            or packet in _FREE_OPS
        )


def _flop_formulas() -> Dict[Any, Callable[..., int]]:
    """The formulas FlopCounterMode itself uses (its registry, shape-wrapped)."""
    return dict(FlopCounterMode(display=False).flop_registry)


# ------------------------------------------------------------------ module structure
def _find_stages(model: nn.Module) -> Tuple[List[Tuple[str, nn.Module]], Optional[Backbone]]:
    """The stages to report: a `Backbone`'s own (also inside a classifier's ``backbone``),
    otherwise the model's top-level children."""
    backbone = model if isinstance(model, Backbone) else getattr(model, "backbone", None)
    if isinstance(backbone, Backbone):
        return list(backbone.stages.items()), backbone
    return list(model.named_children()), None


def _stage_units(stage: nn.Module) -> List[nn.Module]:
    """A stage's building blocks: its children when every child is itself a block,
    otherwise (a stem, a lone 1x1 conv: bare layers) the stage as a single unit."""
    children = list(stage.children())
    if children and all(any(True for _ in child.children()) for child in children):
        return children
    return [stage]


def _first_tensor(out: Any) -> Optional[Tensor]:
    tensors = _tensors(out)
    return tensors[0] if tensors else None


def _count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class _StageTrace:
    name: str
    module: nn.Module
    cost: _Cost = field(default_factory=_Cost)
    output_shape: Optional[Tuple[int, ...]] = None
    fragments: List[int] = field(default_factory=list)
    branches: List[int] = field(default_factory=list)


class _Instrumentation:
    """Forward hooks that tell the recorder which stage / unit / BatchNorm is running."""

    def __init__(self, recorder: _CostRecorder, model: nn.Module, stages: Sequence[_StageTrace]) -> None:
        self.recorder = recorder
        self.handles: List[Any] = []
        for module in model.modules():
            if isinstance(module, _BATCH_NORM_MODULES):
                self._hook(module, self._enter_folded, self._exit_folded)
        for trace in stages:
            self._hook(trace.module, self._stage_entry(trace), self._stage_exit(trace))
            for unit in _stage_units(trace.module):
                self._hook(unit, self._unit_entry, self._unit_exit(trace))

    def _hook(self, module: nn.Module, pre: Callable[..., None], post: Callable[..., None]) -> None:
        self.handles.append(module.register_forward_pre_hook(pre))
        self.handles.append(module.register_forward_hook(post))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _enter_folded(self, module: nn.Module, args: Any) -> None:
        self.recorder.folded_depth += 1

    def _exit_folded(self, module: nn.Module, args: Any, out: Any) -> None:
        self.recorder.folded_depth -= 1

    def _stage_entry(self, trace: _StageTrace) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            self.recorder.scopes.append(trace.cost)

        return hook

    def _stage_exit(self, trace: _StageTrace) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            scopes = self.recorder.scopes
            del scopes[max(i for i, scope in enumerate(scopes) if scope is trace.cost)]
            tensor = _first_tensor(out)
            trace.output_shape = tuple(tensor.shape[1:]) if tensor is not None else ()

        return hook

    def _unit_entry(self, module: nn.Module, args: Any) -> None:
        self.recorder.unit = _UnitTrace()

    def _unit_exit(self, trace: _StageTrace) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            unit = self.recorder.unit
            if unit is not None:
                trace.fragments.append(unit.fragments)
                trace.branches.append(unit.branches())
            self.recorder.unit = None

        return hook


# ------------------------------------------------------------------------ analysis
def _as_size(size: SizeLike) -> Tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def _sample_input(model: nn.Module, input_size: Tuple[int, int], batch: int, in_channels: int) -> Tensor:
    ref = next(iter(model.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return torch.randn(batch, in_channels, *input_size, device=device, dtype=dtype)


def _stage_stride(trace: _StageTrace, backbone: Optional[Backbone], input_size: Tuple[int, int]) -> Optional[int]:
    """The declared stride of a backbone stage, else the measured input/output ratio."""
    if backbone is not None:
        return backbone.stage_shape(trace.name).stride
    shape = trace.output_shape or ()
    if len(shape) == 3 and shape[1] > 0:
        return max(1, round(input_size[0] / shape[1]))
    return None


class _EvalMode:
    """Run in eval mode, then restore each submodule's own training flag."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags: List[Tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        for module, flag in self.flags:
            module.training = flag


def _run(model: nn.Module, x: Tensor, stages: Sequence[_StageTrace]) -> Tuple[_CostRecorder, Any]:
    recorder = _CostRecorder(_flop_formulas())
    hooks = _Instrumentation(recorder, model, stages)
    try:
        with _EvalMode(model), torch.no_grad(), recorder:
            out = model(x)
    finally:
        hooks.remove()
    return recorder, out


def _head_report(total_params: int, total: _Cost, stages: Sequence[StageReport], out: Any) -> Optional[StageReport]:
    """Whatever runs outside the stages (a classifier's pool + FC), so rows sum to the total."""
    params = total_params - sum(s.params for s in stages)
    macs = total.flops // 2 - sum(s.macs for s in stages)
    nbytes = total.mac_bytes - sum(s.mac_bytes for s in stages)
    if not (params or macs or nbytes):
        return None
    tensor = _first_tensor(out)
    shape = tuple(tensor.shape[1:]) if tensor is not None else ()
    return StageReport("head", shape, None, params, macs, nbytes)


def analyze(
    model: nn.Module,
    input_size: SizeLike = PAPER_INPUT_SIZE,
    batch: int = 1,
    name: Optional[str] = None,
    in_channels: int = 3,
    example: Optional[Tensor] = None,
) -> ModelReport:
    """Count params, MACs, memory access cost and fragmentation of one eval forward pass.

    ``model`` runs once in eval mode (training flags are restored afterwards) on a random
    ``(batch, in_channels, H, W)`` input, or on ``example`` for models that take another
    layout (``batch`` and, for an NCHW example, ``input_size`` are then read from it).
    Stages are a `Backbone`'s stages (also inside a classifier's ``backbone``), otherwise
    the top-level children; a stage the forward does not reach (after the last of a
    backbone's ``out_features``) keeps its params, costs 0 and has an empty output shape.
    Whatever runs outside the stages is reported as a ``head`` row so the rows add up to
    the totals.
    """
    if example is None:
        size = _as_size(input_size)
        example = _sample_input(model, size, batch, in_channels)
    else:
        size = _as_size(tuple(example.shape[2:]) if example.dim() == 4 else input_size)
        batch = example.shape[0]
    stage_list, backbone = _find_stages(model)
    traces = [_StageTrace(stage_name, module) for stage_name, module in stage_list]
    recorder, out = _run(model, example, traces)

    stages = [
        StageReport(
            name=t.name,
            output_shape=t.output_shape or (),
            stride=_stage_stride(t, backbone, size),
            params=_count_params(t.module),
            macs=t.cost.flops // 2,
            mac_bytes=t.cost.mac_bytes,
            fragments=t.fragments,
            branches=t.branches,
        )
        for t in traces
    ]
    params = _count_params(model)
    head = _head_report(params, recorder.total, stages, out)
    if head is not None and stages:
        stages.append(head)
    output = _first_tensor(out)
    return ModelReport(
        name=name or type(model).__name__,
        input_size=size,
        batch=batch,
        params=params,
        macs=recorder.total.flops // 2,
        mac_bytes=recorder.total.mac_bytes,
        stages=stages,
        output_shape=tuple(output.shape[1:]) if output is not None else (),
        macs_by_op={op: f // 2 for op, f in recorder.total.flops_by_op.most_common()},
        mac_bytes_by_op=dict(recorder.total.bytes_by_op.most_common()),
    )


def analyze_variant(
    name: str, input_size: SizeLike = PAPER_INPUT_SIZE, batch: int = 1, num_classes: int = 1000
) -> ModelReport:
    """Analyze the registered variant ``name`` as the papers count it: the classification
    network (backbone + global pool + FC to ``num_classes``), compared with the variant's
    `PaperFigures`. Raises the registry's KeyError (with close matches) for unknown names."""
    variant = get_variant(name)
    model = build_classifier(name, num_classes=num_classes)
    report = analyze(model, input_size=input_size, batch=batch, name=name)
    report.family = variant.family
    report.paper = variant.paper
    return report
