"""Converters from other checkpoint layouts to litedet's own key names.

Each is a plain function ``convert_<layout>_<family>(state_dict) -> state_dict`` in
`CONVERTERS`, keyed by ``(layout, family)``; adding a layout is one function and one table
entry. A converter returns *canonical* keys: backbone tensors under ``stages.``, the
classifier head under ``fc.``; `backbones.weights.load_checkpoint` then adapts them to the
target model.

``torchvision``: ShuffleNet v2 ``conv1``/``stage2..4``/``conv5``/``fc`` become
``stages.stem.conv1``/``stages.stage2..4``/``stages.conv5``/``fc``; MobileNet v2
``features.N`` becomes the stage holding block N (`backbones.mobilenet_v2.FEATURE_TO_STAGE`),
``classifier.1`` becomes ``fc``. Pure renames: the modules are torchvision's.

``shufflenet_series`` (the authors' megvii-model/ShuffleNet-Series releases): ShuffleNet v1
maps by renaming (our `ShuffleNetV1` copies the released module names and shuffle).
ShuffleNet v2 does *not*: the released ShuffleNetV2 splits stride-1 inputs into even/odd
channels and never shuffles outputs, where ours (= torchvision = the paper's figure)
splits halves and shuffles outputs. The two compute the same function up to a relabelling
of channels, so `convert_shufflenet_series_shufflenet_v2` permutes the conv and BN tensors
(see its docstring).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .checkpoint_io import CheckpointError

__all__ = [
    "CONVERTERS",
    "Converter",
    "convert_litedet",
    "convert_torchvision_shufflenet_v2",
    "convert_torchvision_mobilenet_v2",
    "convert_shufflenet_series_shufflenet_v2",
    "convert_shufflenet_series_shufflenet_v1",
    "get_converter",
]

StateDict = Dict[str, Tensor]
Converter = Callable[[StateDict], StateDict]


def _rename(state_dict: StateDict, rules: Sequence[Tuple[str, str]]) -> StateDict:
    """Apply the first matching prefix rule to every key; keys no rule matches stay as they
    are (and so surface as unexpected keys)."""
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        for old, new in rules:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def _head_with_bias(state_dict: StateDict, head: str) -> StateDict:
    """The authors' classifiers are ``nn.Linear(.., bias=False)``: a zero bias computes the
    same logits in a classifier built with one (``fc_bias=True``); `load_checkpoint` drops
    it again for a bias-free classifier."""
    w = state_dict.get(f"{head}.weight")
    if w is not None and f"{head}.bias" not in state_dict:
        state_dict[f"{head}.bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
    return state_dict


def convert_litedet(state_dict: StateDict) -> StateDict:
    """Our own layout: only drop the ``backbone.`` prefix of a classifier's state dict."""
    return _rename(state_dict, [("backbone.stages.", "stages.")])


def convert_torchvision_shufflenet_v2(state_dict: StateDict) -> StateDict:
    """torchvision ShuffleNetV2 -> ours: ``conv1`` is inside the stem stage, the rest renames
    one to one (our units keep torchvision's ``branch1``/``branch2`` indices)."""
    return _rename(
        state_dict,
        [
            ("conv1.", "stages.stem.conv1."),
            ("stage2.", "stages.stage2."),
            ("stage3.", "stages.stage3."),
            ("stage4.", "stages.stage4."),
            ("conv5.", "stages.conv5."),
            ("fc.", "fc."),
        ],
    )


def convert_torchvision_mobilenet_v2(state_dict: StateDict) -> StateDict:
    """torchvision MobileNetV2 -> ours: ``features.N.rest`` -> ``stages.<stage>.<i>.rest``
    (``stages.conv_last.rest`` for the last 1x1 conv), ``classifier.1`` -> ``fc``."""
    from .mobilenet_v2 import FEATURE_TO_STAGE

    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) > 2 and parts[1].isdigit() and int(parts[1]) in FEATURE_TO_STAGE:
            stage, local = FEATURE_TO_STAGE[int(parts[1])]
            head = f"stages.{stage}" if local < 0 else f"stages.{stage}.{local}"
            key = ".".join([head] + parts[2:])
        elif key.startswith("classifier.1."):
            key = "fc." + key[len("classifier.1.") :]
        out[key] = value
    return out


def convert_shufflenet_series_shufflenet_v1(state_dict: StateDict) -> StateDict:
    """Authors' ShuffleNetV1 -> ours, by renaming only.

    Our `ShuffleNetV1` uses the release's module names (``branch_main_1``/``branch_main_2``)
    and its shuffle (``(C/g, g)`` view, after the depthwise conv), so tensors are copied
    as they are: ``first_conv`` -> ``stages.stem.first_conv``; ``features.<i>`` ->
    ``stages.stage<k>.<j>`` with the paper's 4/8/4 units per stage; ``classifier.0`` ->
    ``fc`` (zero bias added).
    """
    from .shufflenet_v1 import STAGE_REPEATS

    starts = [sum(STAGE_REPEATS[:i]) for i in range(len(STAGE_REPEATS))]
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) > 2 and parts[1].isdigit():
            i = int(parts[1])
            s = max(k for k, start in enumerate(starts) if start <= i)
            key = ".".join([f"stages.stage{s + 2}", str(i - starts[s])] + parts[2:])
        elif key.startswith("first_conv."):
            key = "stages.stem." + key
        elif key.startswith("classifier.0."):
            key = "fc." + key[len("classifier.0.") :]
        out[key] = value
    return _head_with_bias(out, "fc")


# ---- ShuffleNet-Series v2: permutation bookkeeping
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


def _take(t: Tensor, dim: int, index: Sequence[int]) -> Tensor:
    return t.index_select(dim, torch.as_tensor(list(index), dtype=torch.long)).contiguous()


def _interleave(a: List[Any], b: List[Any]) -> List[Any]:
    """Channel order after ``channel_shuffle(cat(a, b), 2)`` with ``len(a) == len(b)``."""
    return [x for pair in zip(a, b) for x in pair]


def _match_by_fate(
    ours: Sequence[Any], theirs: Sequence[Any], fate_ours: Mapping[Any, Any], fate_theirs: Mapping[Any, Any], what: str
) -> Dict[Any, Any]:
    """Pair our channels with the release's so that paired channels meet the same fate
    (consumed by the same later unit, or reaching the stage output)."""
    groups: Dict[Any, Tuple[List[Any], List[Any]]] = {}
    for lbl in ours:
        groups.setdefault(fate_ours[lbl], ([], []))[0].append(lbl)
    for lbl in theirs:
        groups.setdefault(fate_theirs[lbl], ([], []))[1].append(lbl)
    pairing: Dict[Any, Any] = {}
    for fate, (a, b) in groups.items():
        if len(a) != len(b):
            raise CheckpointError(f"ShuffleNet-Series v2 conversion: {what} has no channel relabelling (fate {fate})")
        pairing.update(zip(a, b))
    return pairing


def convert_shufflenet_series_shufflenet_v2(state_dict: StateDict) -> StateDict:
    """Authors' ShuffleNetV2 -> ours (torchvision-style), permuting channels.

    The release's stride-1 unit feeds the *odd* channels of its input to the main branch and
    passes the even ones, then concatenates ``[passed, main]`` without shuffling; its
    stride-2 unit concatenates ``[proj, main]``. Ours splits halves and shuffles every
    output (``[a0, b0, a1, b1, ...]``). Both route, at every unit, half of the surviving
    channels and half of the fresh ones into the main branch, so they are the same network
    up to a relabelling of the channels each unit creates. The relabelling is found by
    simulating both channel orders through each stage and pairing channels that are
    consumed by the same later unit (or survive to the stage output); it is then folded into
    the tensors: output rows (and BN entries) of each unit's last 1x1 conv, input columns of
    the 1x1 convs and depthwise channels that read permuted maps, and the input columns of
    ``conv_last``. Exact (same logits), no approximation.

    The release's stride-2 unit keeps ``inp`` channels on its shortcut (``branch_proj``) and
    outputs ``oup - inp`` on its main branch. Where ``inp == oup / 2`` (every unit of 0.5x,
    stages 3-4 of all widths) that is torchvision's unit. Stage2's first unit at
    1.0x/1.5x/2.0x splits unevenly (24 + 92 at 1.0x); it converts to a model built with
    ``shortcut_keeps_input=True``, whose uneven unit emits ``cat(shortcut, main)`` in
    `backbones.shufflenet_v2.release_channel_order` (the 2-group shuffle would send none
    of the 24 shortcut channels into the next unit, where the release sends 12 of them).
    The tensors then have that model's shapes; `load_checkpoint` refuses them, with that
    advice, for a model built without the option.
    """
    sd = dict(state_dict)
    out: StateDict = OrderedDict()

    def pop_bn(prefix: str) -> Dict[str, Tensor]:
        bn = {s: sd.pop(f"{prefix}.{s}") for s in _BN_SUFFIXES if f"{prefix}.{s}" in sd}
        if f"{prefix}.num_batches_tracked" in sd:
            bn["num_batches_tracked"] = sd.pop(f"{prefix}.num_batches_tracked")
        return bn

    def put_bn(prefix: str, bn: Mapping[str, Tensor], index: Optional[Sequence[int]] = None) -> None:
        for s, t in bn.items():
            out[f"{prefix}.{s}"] = t if index is None or s == "num_batches_tracked" else _take(t, 0, index)

    def move_unpermuted_main(src: str, dst: str) -> None:
        # BN after the first pw, the dw conv and its BN keep their channel order.
        for i in (1, 3, 4):
            for key in [k for k in sd if k.startswith(f"{src}.branch_main.{i}.")]:
                out[f"{dst}.branch2.{i}." + key.split(".", 4)[4]] = sd.pop(key)

    def need(key: str) -> Tensor:
        if key not in sd:
            raise CheckpointError(f"ShuffleNet-Series v2 checkpoint lacks {key!r}")
        return sd.pop(key)

    # stem: identical
    for key in [k for k in sd if k.startswith("first_conv.")]:
        out["stages.stem.conv1." + key[len("first_conv.") :]] = sd.pop(key)

    units = sorted({int(k.split(".")[1]) for k in sd if k.startswith("features.")})
    if units != list(range(len(units))) or not units:
        raise CheckpointError(f"ShuffleNet-Series v2 checkpoint: feature units {units} are not 0..N-1")
    stages: List[List[int]] = []
    for i in units:
        if f"features.{i}.branch_proj.0.weight" in sd:
            stages.append([i])
        elif not stages:
            raise CheckpointError(
                "not a ShuffleNet-Series ShuffleNetV2 checkpoint: features.0 has no branch_proj tensors "
                "(a ShuffleNetV1 checkpoint, whose shortcut is a parameter-free pool, looks like this)"
            )
        else:
            stages[-1].append(i)

    from .shufflenet_v2 import release_channel_order

    perm_in: List[int] = list(range(sd["features.0.branch_proj.0.weight"].shape[0]))  # stem output: identity
    for s_idx, unit_ids in enumerate(stages):
        stage = f"stages.stage{s_idx + 2}"
        first = f"features.{unit_ids[0]}"
        proj_out = sd[f"{first}.branch_proj.2.weight"].shape[0]
        main_out = sd[f"{first}.branch_main.5.weight"].shape[0]
        oup = proj_out + main_out
        if oup % 2:
            raise CheckpointError(f"ShuffleNet-Series v2 checkpoint: {stage} is {oup} channels wide (odd)")
        half = oup // 2
        n = len(unit_ids)

        # -- simulate the release's channel order (labels: (kind, unit, index))
        of_consume: Dict[Any, Tuple[int, int]] = {}
        of_order = [("p", 0, e) for e in range(proj_out)] + [("m", 0, m) for m in range(main_out)]
        for b in range(1, n):
            passed, proc = of_order[0::2], of_order[1::2]
            for q, lbl in enumerate(proc):
                of_consume[lbl] = (b, q)
            of_order = passed + [("m", b, m) for m in range(half)]
        of_pos = {lbl: i for i, lbl in enumerate(of_order)}

        # -- simulate ours (labels: (kind, unit, index))
        our_consume: Dict[Any, Tuple[int, int]] = {}
        our_x2: Dict[int, List[Any]] = {}
        proj_lbls = [("P", 0, j) for j in range(proj_out)]
        main_lbls = [("M", 0, j) for j in range(main_out)]
        if proj_out == main_out:  # torchvision's unit: 2-group shuffle
            order = _interleave(proj_lbls, main_lbls)
        else:  # shortcut_keeps_input=True: fixed reorder of cat(shortcut, main)
            order = [(proj_lbls + main_lbls)[i] for i in release_channel_order(oup)]
        for b in range(1, n):
            x1, x2 = order[:half], order[half:]
            our_x2[b] = x2
            for q, lbl in enumerate(x2):
                our_consume[lbl] = (b, q)
            order = _interleave(x1, [("M", b, j) for j in range(half)])

        def fate(consume: Mapping[Any, Tuple[int, int]], lbl: Any) -> int:
            return consume[lbl][0] if lbl in consume else n

        widths = {("P", 0): proj_out, ("M", 0): main_out, **{("M", b): half for b in range(1, n)}}
        sigma: Dict[Any, Any] = {}
        for (k_ours, b), count in widths.items():
            ours = [(k_ours, b, j) for j in range(count)]
            theirs = [(k_ours.lower(), b, j) for j in range(count)]
            f_ours = {lbl: fate(our_consume, lbl) for lbl in ours}
            f_theirs = {lbl: fate(of_consume, lbl) for lbl in theirs}
            sigma.update(_match_by_fate(ours, theirs, f_ours, f_theirs, f"{stage} unit {b}"))

        # -- unit 0 (stride 2): inputs permuted by perm_in
        src, dst = f"features.{unit_ids[0]}", f"{stage}.0"
        proj_rows = [sigma[lbl][2] for lbl in proj_lbls]
        main_rows = [sigma[lbl][2] for lbl in main_lbls]
        out[f"{dst}.branch1.0.weight"] = _take(need(f"{src}.branch_proj.0.weight"), 0, perm_in)  # dw
        put_bn(f"{dst}.branch1.1", pop_bn(f"{src}.branch_proj.1"), perm_in)
        w = _take(need(f"{src}.branch_proj.2.weight"), 1, perm_in)  # pw
        out[f"{dst}.branch1.2.weight"] = _take(w, 0, proj_rows)
        put_bn(f"{dst}.branch1.3", pop_bn(f"{src}.branch_proj.3"), proj_rows)
        out[f"{dst}.branch2.0.weight"] = _take(need(f"{src}.branch_main.0.weight"), 1, perm_in)  # pw
        move_unpermuted_main(src, dst)
        out[f"{dst}.branch2.5.weight"] = _take(need(f"{src}.branch_main.5.weight"), 0, main_rows)  # pw-linear
        put_bn(f"{dst}.branch2.6", pop_bn(f"{src}.branch_main.6"), main_rows)

        # -- units 1.. (stride 1): main-branch input columns and output rows permuted
        for b in range(1, n):
            src, dst = f"features.{unit_ids[b]}", f"{stage}.{b}"
            cols = [of_consume[sigma[lbl]][1] for lbl in our_x2[b]]
            rows = [sigma[("M", b, j)][2] for j in range(half)]
            out[f"{dst}.branch2.0.weight"] = _take(need(f"{src}.branch_main.0.weight"), 1, cols)  # pw
            move_unpermuted_main(src, dst)
            out[f"{dst}.branch2.5.weight"] = _take(need(f"{src}.branch_main.5.weight"), 0, rows)  # pw-linear
            put_bn(f"{dst}.branch2.6", pop_bn(f"{src}.branch_main.6"), rows)
        perm_in = [of_pos[sigma[lbl]] for lbl in order]

    out["stages.conv5.0.weight"] = _take(need("conv_last.0.weight"), 1, perm_in)
    for key in [k for k in sd if k.startswith("conv_last.1.")]:
        out["stages.conv5.1." + key[len("conv_last.1.") :]] = sd.pop(key)
    for key in [k for k in sd if k.startswith("classifier.0.")]:
        out["fc." + key[len("classifier.0.") :]] = sd.pop(key)
    out.update(sd)  # anything left over surfaces as unexpected
    return _head_with_bias(out, "fc")


#: ``(layout, family) -> converter``; family ``"*"`` applies to every family.
CONVERTERS: Dict[Tuple[str, str], Converter] = {
    ("litedet", "*"): convert_litedet,
    ("torchvision", "shufflenet_v2"): convert_torchvision_shufflenet_v2,
    ("torchvision", "mobilenet_v2"): convert_torchvision_mobilenet_v2,
    ("shufflenet_series", "shufflenet_v2"): convert_shufflenet_series_shufflenet_v2,
    ("shufflenet_series", "shufflenet_v1"): convert_shufflenet_series_shufflenet_v1,
}



def get_converter(layout: str, family: str) -> Converter:
    """The converter of ``layout`` into ``family`` (or the layout's family-independent one)."""
    conv = CONVERTERS.get((layout, family)) or CONVERTERS.get((layout, "*"))
    if conv is None:
        known = sorted(f"{l}/{f}" for l, f in CONVERTERS)
        raise NotImplementedError(
            f"no converter for layout {layout!r} into family {family!r}; known (layout/family): {known}"
        )
    return conv
