"""Box statistics at a config's input size, how well its RPN anchors match them, and
anchors / input sizes that match them better (YOLO's autoanchor idea, for two-stage heads).

Boxes are taken as training sees them: each image resized by ``INPUT.MIN_SIZE_TRAIN`` /
``MAX_SIZE_TRAIN`` (every listed short side for ``"choice"`` sampling; the two ends and the
middle for ``"range"``), only ground-truth boxes (no ignore regions).

A box is *matched* when some anchor overlaps it at IoU >= `MATCH_IOU`. Two measures:

- ``grid`` (the headline): anchors where torchvision's ``AnchorGenerator`` puts them, centred
  on the points ``(i * stride, j * stride)`` of each RPN level's grid, the box's nearest grid
  point taken (for axis-aligned boxes of fixed shapes the IoU only falls with the centre
  offset). This is what the RPN's matcher sees: a 20 px box halfway between two points of a
  stride-16 grid matches no anchor at 0.5 whatever the anchor sizes, which only a larger
  input size fixes.
- ``shape``: each anchor centred on the box (YOLO's autoanchor "shape-only" IoU): whether the
  anchor sizes and ratios fit, whatever the stride.

The strides and the anchors come from the model the config builds (the RPN's feature levels,
measured on a dummy image, and the generator's rounded cell anchors), not from a table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .conventions import usable_annotation
from .transforms import resize_shortest_edge_shape

__all__ = [
    "MATCH_IOU",
    "SMALL_BOX_QUANTILE",
    "PERCENTILES",
    "AnchorLevel",
    "AnchorLayout",
    "ScaledBoxes",
    "train_short_sides",
    "boxes_at_input_size",
    "box_statistics",
    "best_anchor_iou",
    "coverage",
    "anchor_layout",
    "kmeans_1d",
    "spread_apart",
    "suggest_anchors",
    "suggest_input_sizes",
    "AnchorSuggestion",
    "analyse",
    "format_analysis",
]

MATCH_IOU = 0.5
#: The small-box quantile the input-size suggestion keeps within the band of box sizes.
SMALL_BOX_QUANTILE = 0.05
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
#: Suggested neighbouring sizes / ratios differ by at least this factor (duplicates would
#: only repeat RPN outputs when the data holds fewer distinct shapes than anchors).
MIN_FACTOR = math.sqrt(2.0)
_CHUNK = 1 << 15


@dataclass(frozen=True)
class AnchorLevel:
    """One RPN feature level: its stride and the generator's cell anchors (``[A, 4]``
    ``x1, y1, x2, y2`` centred on 0, rounded as torchvision rounds them)."""

    name: str
    stride: int
    cell_anchors: np.ndarray


@dataclass(frozen=True)
class AnchorLayout:
    levels: Tuple[AnchorLevel, ...]
    size_divisibility: int  # images are padded to a multiple of this before the backbone

    @property
    def strides(self) -> List[int]:
        return [lv.stride for lv in self.levels]


@dataclass(frozen=True)
class ScaledBoxes:
    """Ground-truth boxes in resized-image pixels, one row per (box, training short side)."""

    boxes: np.ndarray  # [N, 4] x1, y1, x2, y2
    image_hw: np.ndarray  # [N, 2] the resized image's height, width

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def widths(self) -> np.ndarray:
        return self.boxes[:, 2] - self.boxes[:, 0]

    @property
    def heights(self) -> np.ndarray:
        return self.boxes[:, 3] - self.boxes[:, 1]

    @property
    def scales(self) -> np.ndarray:
        """sqrt(area): the size an anchor of aspect ratio 1 would need."""
        return np.sqrt(self.widths * self.heights)

    @property
    def aspect_ratios(self) -> np.ndarray:
        """height / width, torchvision's ``aspect_ratios`` convention."""
        return self.heights / self.widths


def train_short_sides(min_sizes: Sequence[int], sampling: str) -> Tuple[int, ...]:
    """The short sides training resizes to: every listed one (``"choice"``), or the ends
    and the middle of ``[min, max]`` (``"range"``)."""
    sizes = tuple(int(s) for s in min_sizes)
    if sampling == "range":
        if len(sizes) != 2:
            raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING 'range' needs two sizes [min, max], got {sizes}")
        return tuple(dict.fromkeys((sizes[0], (sizes[0] + sizes[1]) // 2, sizes[1])))
    if sampling != "choice":
        raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'choice' or 'range', got {sampling!r}")
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"INPUT.MIN_SIZE_TRAIN must list positive sizes, got {sizes}")
    return sizes


def boxes_at_input_size(records: Sequence[Mapping[str, Any]], short_sides: Sequence[int], max_size: int) -> ScaledBoxes:
    """Every ground-truth box of ``records`` scaled as the resize scales it, once per short side."""
    boxes: List[np.ndarray] = []
    sizes: List[np.ndarray] = []
    for record in records:
        kept = [a["bbox"] for a in record.get("annotations", ()) if usable_annotation(a)]
        if not kept:
            continue
        xyxy = np.asarray(kept, dtype=np.float64).reshape(-1, 4)
        xyxy = xyxy[(xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])]
        h, w = int(record["height"]), int(record["width"])
        for side in short_sides:
            nh, nw = resize_shortest_edge_shape(h, w, int(side), int(max_size))
            boxes.append(xyxy * np.array([nw / w, nh / h, nw / w, nh / h]))
            sizes.append(np.tile([nh, nw], (len(xyxy), 1)))
    if not boxes:
        return ScaledBoxes(np.zeros((0, 4)), np.zeros((0, 2)))
    return ScaledBoxes(np.concatenate(boxes), np.concatenate(sizes).astype(np.float64))


def box_statistics(boxes: ScaledBoxes, percentiles: Sequence[float] = PERCENTILES) -> Dict[str, Dict[str, float]]:
    """Percentiles (keys ``"p5"`` ...) of width, height, sqrt(area) and aspect ratio (h/w)."""
    columns = {"width": boxes.widths, "height": boxes.heights, "sqrt_area": boxes.scales,
               "aspect_ratio": boxes.aspect_ratios}
    if not len(boxes):
        return {name: {} for name in columns}
    return {name: {f"p{p:g}": float(np.percentile(v, p)) for p in percentiles} for name, v in columns.items()}


def _pairwise_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of ``boxes [N, 4]`` with ``anchors [N, A, 4]`` (each box with its own anchors)."""
    b = boxes[:, None, :]
    iw = np.clip(np.minimum(b[..., 2], anchors[..., 2]) - np.maximum(b[..., 0], anchors[..., 0]), 0, None)
    ih = np.clip(np.minimum(b[..., 3], anchors[..., 3]) - np.maximum(b[..., 1], anchors[..., 1]), 0, None)
    inter = iw * ih
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    area_a = (anchors[..., 2] - anchors[..., 0]) * (anchors[..., 3] - anchors[..., 1])
    return inter / (area_b + area_a - inter)


def best_anchor_iou(boxes: ScaledBoxes, layout: AnchorLayout) -> Tuple[np.ndarray, np.ndarray]:
    """Per box, the best IoU with any anchor: ``(grid, shape)`` (see the module docstring)."""
    grid_best = np.zeros(len(boxes))
    shape_best = np.zeros(len(boxes))
    d = max(1, layout.size_divisibility)
    for start in range(0, len(boxes), _CHUNK):
        xyxy = boxes.boxes[start:start + _CHUNK]
        hw = boxes.image_hw[start:start + _CHUNK]
        centre = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
        padded = np.ceil(hw[:, ::-1] / d) * d  # x, y extent of the padded image
        for level in layout.levels:
            s = level.stride
            last = np.maximum(padded // s - 1, 0)
            point = np.clip(np.floor(centre / s + 0.5), 0, last) * s
            for offset, best in ((point, grid_best), (centre, shape_best)):
                shift = np.concatenate([offset, offset], axis=1)[:, None, :]
                iou = _pairwise_iou(xyxy, level.cell_anchors[None] + shift).max(axis=1)
                np.maximum(best[start:start + _CHUNK], iou, out=best[start:start + _CHUNK])
    return grid_best, shape_best


def coverage(boxes: ScaledBoxes, layout: AnchorLayout, iou: float = MATCH_IOU) -> Dict[str, float]:
    """Share of boxes whose best anchor reaches ``iou``: ``{"grid": ..., "shape": ...}``
    (NaN without boxes)."""
    if not len(boxes):
        return {"grid": float("nan"), "shape": float("nan")}
    grid, shape = best_anchor_iou(boxes, layout)
    return {"grid": float((grid >= iou).mean()), "shape": float((shape >= iou).mean())}


def anchor_layout(cfg) -> AnchorLayout:
    """The RPN levels of the model ``cfg`` builds (on CPU): strides measured as torchvision's
    generator measures them (image size // feature size) on a blank image, and its anchors.
    Raises ``ValueError`` (`ConfigError`) for a model config training would refuse."""
    import torch

    from ..config_checks import validate_config
    from ..modeling import build_model

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.WEIGHTS = ""
    validate_config(cfg)  # names, values and what the builders refuse, as one ConfigError (a ValueError)
    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
        model = build_model(cfg).eval()
    divisibility = max(1, int(model.transform.size_divisibility))
    side = divisibility * max(2, -(-256 // divisibility))
    with torch.no_grad():
        features = model.extract_features(torch.zeros(1, 3, side, side))
    generator = model.rpn.anchor_generator
    levels = []
    for name, cell in zip(model.rpn.in_features, generator.cell_anchors):
        stride = side // int(features[name].shape[-1])
        levels.append(AnchorLevel(name, stride, cell.detach().double().numpy()))
    return AnchorLayout(tuple(levels), divisibility)


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 100) -> np.ndarray:
    """Sorted ``k`` centres of 1-D ``values`` by Lloyd's algorithm from the ``(i + 0.5) / k``
    quantiles (deterministic); an empty cluster keeps its centre."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        edges = (centres[1:] + centres[:-1]) / 2
        label = np.searchsorted(edges, values)
        sums = np.bincount(label, weights=values, minlength=k)
        counts = np.bincount(label, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.allclose(new, centres):
            break
        centres = np.sort(new)
    return centres


def spread_apart(positions: np.ndarray, gap: float) -> np.ndarray:
    """The sorted ``positions`` moved as little as possible (least squares) so that
    neighbours are at least ``gap`` apart: isotonic regression (pool adjacent violators)
    of ``positions[i] - i * gap``."""
    offsets = np.arange(len(positions)) * gap
    y = np.sort(np.asarray(positions, dtype=np.float64)) - offsets
    blocks: List[List[float]] = []  # [mean, weight]
    for v in y:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2), (m1, w1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    fitted = np.concatenate([np.full(int(w), m) for m, w in blocks])
    return fitted + offsets


@dataclass(frozen=True)
class AnchorSuggestion:
    sizes: List[List[int]]
    aspect_ratios: List[List[float]]


def _anchor_counts(sizes: Sequence[Sequence[float]], num_levels: int) -> Tuple[int, int]:
    """``(lists, sizes per list)`` of the suggestion, in the layout the config uses: one list
    for one level or one size per level, else one list per level."""
    if len(sizes) == 1:
        return 1, len(sizes[0])
    return num_levels, len(sizes[0])


def suggest_anchors(boxes: ScaledBoxes, cfg, num_levels: int) -> AnchorSuggestion:
    """Sizes: k-means of log sqrt(area) with as many centres as the config has sizes (sorted,
    split over its levels the way it lists them); ratios: k-means of log(h/w) with as many
    as its first ratio list. Neighbours end at least `MIN_FACTOR` apart."""
    lists, per_list = _anchor_counts(cfg.MODEL.ANCHOR_GENERATOR.SIZES, num_levels)
    num_ratios = len(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS[0])
    gap = math.log(MIN_FACTOR)
    log_sizes = spread_apart(kmeans_1d(np.log(boxes.scales), lists * per_list), gap)
    sizes: List[int] = []
    for s in np.exp(log_sizes):
        sizes.append(max(int(round(s)), sizes[-1] + 1 if sizes else 1))
    log_ratios = spread_apart(kmeans_1d(np.log(boxes.aspect_ratios), num_ratios), gap)
    ratios = [round(float(r), 2) for r in np.exp(log_ratios)]
    return AnchorSuggestion([sizes[i * per_list:(i + 1) * per_list] for i in range(lists)], [ratios])


def _round_side(size: float, up: bool, multiple: int = 32) -> int:
    rounded = math.ceil(size / multiple) if up else math.floor(size / multiple)
    return max(multiple, int(rounded) * multiple)


def suggest_input_sizes(small_box: float, min_box: float, cfg) -> Dict[str, Any]:
    """``INPUT`` values that put the `SMALL_BOX_QUANTILE` box size ``small_box`` into
    ``[min_box, 2 * min_box]``: unchanged when it is there, else scaled (short sides rounded
    to multiples of 32) to the nearer end. Empty when nothing changes."""
    if small_box <= 0 or min_box <= small_box <= 2 * min_box:
        return {}
    up = small_box < min_box
    factor = (min_box if up else 2 * min_box) / small_box
    inp = cfg.INPUT
    train = tuple(_round_side(s * factor, up) for s in inp.MIN_SIZE_TRAIN)
    effective = train[0] / float(inp.MIN_SIZE_TRAIN[0])
    out: Dict[str, Any] = {"INPUT.MIN_SIZE_TRAIN": train}
    if int(inp.MAX_SIZE_TRAIN) > 0:
        out["INPUT.MAX_SIZE_TRAIN"] = int(round(inp.MAX_SIZE_TRAIN * effective))
    if int(inp.MIN_SIZE_TEST) > 0:  # 0 = no test-time resize: left so
        out["INPUT.MIN_SIZE_TEST"] = _round_side(inp.MIN_SIZE_TEST * effective, up)
        if int(inp.MAX_SIZE_TEST) > 0:
            out["INPUT.MAX_SIZE_TEST"] = int(round(inp.MAX_SIZE_TEST * effective))
    return out


def _compact(value: Any) -> str:
    """A config value as ``merge_from_list`` reads it, without spaces (one shell word)."""
    return repr(value).replace(" ", "")


def analyse(records: Sequence[Mapping[str, Any]], cfg, min_box: Optional[float] = None) -> Dict[str, Any]:
    """The whole ``--suggest`` analysis of training ``records`` under ``cfg``, JSON-able:
    box statistics, the current anchors' coverage, and the suggested overrides (``"overrides"``:
    key -> value string for ``merge_from_list``) with their coverage. ``min_box`` defaults to
    twice the finest RPN stride. Raises ``ValueError`` for settings the model refuses."""
    inp = cfg.INPUT
    sides = train_short_sides(inp.MIN_SIZE_TRAIN, str(inp.MIN_SIZE_TRAIN_SAMPLING))
    boxes = boxes_at_input_size(records, sides, int(inp.MAX_SIZE_TRAIN))
    layout = anchor_layout(cfg)
    min_box = float(min_box if min_box is not None else 2 * min(layout.strides))
    result: Dict[str, Any] = {
        "boxes": len(boxes),
        "short_sides": list(sides),
        "max_size": int(inp.MAX_SIZE_TRAIN),
        "strides": layout.strides,
        "rpn_features": [lv.name for lv in layout.levels],
        "statistics": box_statistics(boxes),
        "current": {
            "sizes": [list(s) for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES],
            "aspect_ratios": [list(r) for r in cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS],
            "coverage": coverage(boxes, layout),
        },
        "min_box": min_box,
    }
    if not len(boxes):
        result["suggested"] = None
        return result
    small = float(np.quantile(boxes.scales, SMALL_BOX_QUANTILE))
    input_sizes = suggest_input_sizes(small, min_box, cfg)
    suggested_cfg = cfg.clone()
    suggested_cfg.defrost()
    suggested_cfg.merge_from_list([x for k, v in input_sizes.items() for x in (k, v)])
    if input_sizes:
        sinp = suggested_cfg.INPUT
        boxes = boxes_at_input_size(
            records, train_short_sides(sinp.MIN_SIZE_TRAIN, str(sinp.MIN_SIZE_TRAIN_SAMPLING)), int(sinp.MAX_SIZE_TRAIN)
        )
    anchors = suggest_anchors(boxes, cfg, len(layout.levels))
    suggested_cfg.merge_from_list(["MODEL.ANCHOR_GENERATOR.SIZES", anchors.sizes,
                                   "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", anchors.aspect_ratios])
    overrides = {"MODEL.ANCHOR_GENERATOR.SIZES": anchors.sizes,
                 "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": anchors.aspect_ratios, **input_sizes}
    result["small_box"] = {"quantile": SMALL_BOX_QUANTILE, "current": small,
                           "suggested": float(np.quantile(boxes.scales, SMALL_BOX_QUANTILE))}
    result["suggested"] = {
        "overrides": {k: _compact(v) for k, v in overrides.items()},
        "coverage": coverage(boxes, anchor_layout(suggested_cfg)),
    }
    return result


def _percent(share: float) -> str:
    return "n/a" if math.isnan(share) else f"{100 * share:.1f}%"


def _coverage_text(cov: Mapping[str, float]) -> str:
    return f"{_percent(cov['grid'])} at the anchor grid, {_percent(cov['shape'])} by shape alone"


def format_analysis(result: Mapping[str, Any]) -> str:
    """The text ``check_dataset --suggest`` prints: statistics, coverage, then the suggested
    overrides one per line as ``KEY VALUE`` (each value one shell word, quoted)."""
    import shlex

    current = result["current"]
    max_size = result["max_size"]
    lines = [
        f"Training boxes at INPUT.MIN_SIZE_TRAIN {tuple(result['short_sides'])}, MAX_SIZE_TRAIN {max_size}: "
        f"{result['boxes']} (box, input size) pairs"
    ]
    stats = result["statistics"]
    if result["boxes"]:
        names = list(stats["width"])
        lines.append("  " + " " * 12 + "".join(f"{n:>8}" for n in names))
        for key, label in (("width", "width"), ("height", "height"), ("sqrt_area", "sqrt(area)"),
                           ("aspect_ratio", "aspect h/w")):
            digits = 2 if key == "aspect_ratio" else 1
            lines.append(f"  {label:<12}" + "".join(f"{stats[key][n]:>8.{digits}f}" for n in names))
    levels = ", ".join(f"{n} (stride {s})" for n, s in zip(result["rpn_features"], result["strides"]))
    lines.append(f"RPN levels: {levels}")
    lines.append(
        f"Current anchors SIZES {current['sizes']} ASPECT_RATIOS {current['aspect_ratios']}: boxes matched at "
        f"IoU >= {MATCH_IOU}: {_coverage_text(current['coverage'])}"
    )
    suggested = result.get("suggested")
    if not suggested:
        lines.append("No suggestion: the training set has no usable box.")
        return "\n".join(lines)
    small = result["small_box"]
    quantile = f"{100 * small['quantile']:g}%"
    if any(k.startswith("INPUT.") for k in suggested["overrides"]):
        lines.append(
            f"Input size: the {quantile} quantile of sqrt(area) is {small['current']:.1f} px, outside "
            f"[{result['min_box']:g}, {2 * result['min_box']:g}] px; at the suggested size it is {small['suggested']:.1f} px"
        )
    else:
        lines.append(
            f"Input size kept: the {quantile} quantile of sqrt(area) is {small['current']:.1f} px, within "
            f"[{result['min_box']:g}, {2 * result['min_box']:g}] px"
        )
    lines.append(f"Suggested overrides (boxes matched at IoU >= {MATCH_IOU}: {_coverage_text(suggested['coverage'])}):")
    lines.extend(f"{key} {shlex.quote(value)}" for key, value in suggested["overrides"].items())
    return "\n".join(lines)
