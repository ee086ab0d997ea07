"""Complexity of registered backbones: params, MACs, memory access cost, fragmentation.

Examples (from the repository root):
    python tools/analyze_model.py shufflenet_v2_1.0x            per-stage table
    python tools/analyze_model.py shufflenet_v2_1.0x --input 480x640 --batch 4
    python tools/analyze_model.py --all                         one row per variant
    python tools/analyze_model.py --family shufflenet_v2 --json one JSON object per line
    python tools/analyze_model.py --all --markdown > docs/model_zoo.md
    python tools/analyze_model.py --list

The definitions (MACs, mac_bytes, fragments) are in `backbones.analysis`. Sizes are
HxW (``480x640`` = 480 rows, 640 columns); a single number means a square input.
Exit codes: 0 success, 1 some variant failed to analyze, 2 bad usage or unknown name.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from tabulate import tabulate
from tqdm import tqdm

import backbones
from backbones.analysis import FAMILY_NOTES, PAPER_INPUT_SIZE, ModelReport, StageReport, analyze_variant
from detection.deploy.builders import parse_size

SCRIPT = "python tools/analyze_model.py"


# ------------------------------------------------------------------------- parsing
def size_argument(text: str) -> Tuple[int, int]:
    """'224' -> (224, 224); '480x640' -> (480, 640) (height x width)."""
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Params, MACs, memory access cost and fragmentation of registered backbones "
        "(classifier included, as the papers count).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="registered variant names")
    parser.add_argument("--all", action="store_true", help="every registered variant, one row each")
    parser.add_argument("--family", help="only this family (with --all/--list, or alone)")
    parser.add_argument("--list", action="store_true", help="print the registered names and exit")
    parser.add_argument("--input", type=size_argument, default=PAPER_INPUT_SIZE, metavar="N|HxW",
                        help="input size (default 224)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: counting needs no parallel kernels, "
                        "and one thread does not oversubscribe a shared machine)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per variant per line")
    output.add_argument("--markdown", action="store_true", help="Markdown tables (with --all: docs/model_zoo.md)")
    return parser


class UsageError(Exception):
    """Bad names or flags: reported in one line with exit code 2."""


def families() -> List[str]:
    return sorted({backbones.get_variant(n).family for n in backbones.list_backbones()})


def check_family(family: Optional[str]) -> None:
    if family is not None and family not in families():
        close = difflib.get_close_matches(family, families(), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown family {family!r}.{hint} Families: {', '.join(families())}.")


def select_names(args: argparse.Namespace) -> List[str]:
    """The variants to analyze: explicit names (validated), or all of --all / --family."""
    check_family(args.family)
    for name in args.names:
        try:
            backbones.get_variant(name)
        except KeyError as err:
            raise UsageError(err.args[0] if err.args else str(err)) from None
    if args.names:
        return list(args.names)
    if args.all or args.family is not None:
        return backbones.list_backbones(family=args.family)
    raise UsageError("name a variant, or use --all, --family or --list")


# ----------------------------------------------------------------------- formatting
def millions(value: Optional[float], digits: int = 2) -> str:
    return "" if value is None else f"{value / 1e6:.{digits}f}"


def percent(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:+.1f}%"


def fragments_cell(report: ModelReport) -> str:
    """'mean / max' conv+pool operators per unit over all stages, e.g. '3.3 / 5'."""
    frags = report.unit_fragments
    return f"{sum(frags) / len(frags):.1f} / {max(frags)}" if frags else ""


SUMMARY_HEADERS = [
    "variant", "params (M)", "paper params (M)", "Δ params",
    "MACs (M)", "paper MACs (M)", "Δ MACs", "MAC (MB)", "frag/unit (mean / max)", "max branches",
]


def _align(headers: Sequence[str], left: int) -> Tuple[str, ...]:
    """Names left, numbers right."""
    return ("left",) * left + ("right",) * (len(headers) - left)


def variant_cell(report: ModelReport) -> str:
    alias_of = backbones.get_variant(report.name).alias_of
    return f"{report.name} (= {alias_of})" if alias_of else report.name


def summary_row(report: ModelReport) -> List[str]:
    return [
        variant_cell(report),
        millions(report.params),
        millions(report.paper.params),
        percent(report.params_rel_diff),
        millions(report.macs, 1),
        millions(report.paper.macs if report.at_paper_resolution else None, 1),
        percent(report.macs_rel_diff),
        millions(report.mac_bytes, 1),
        fragments_cell(report),
        "" if report.max_branches is None else str(report.max_branches),
    ]


STAGE_HEADERS = [
    "stage", "output (C,H,W)", "stride", "params", "MACs (M)", "MAC (MB)", "units",
    "frag/unit (min-max, mean)", "branches",
]


def stage_row(stage: StageReport) -> List[str]:
    frags = stage.fragments
    frag_cell = ""
    if frags:
        spread = f"{min(frags)}" if min(frags) == max(frags) else f"{min(frags)}-{max(frags)}"
        frag_cell = f"{spread}, {sum(frags) / len(frags):.2f}"
    return [
        stage.name,
        "x".join(str(d) for d in stage.output_shape),
        "" if stage.stride is None else str(stage.stride),
        f"{stage.params:,}",
        millions(stage.macs, 2),
        millions(stage.mac_bytes, 2),
        str(stage.units) if stage.units else "",
        frag_cell,
        str(max(stage.branches)) if stage.branches else "",
    ]


def size_text(report: ModelReport) -> str:
    h, w = report.input_size
    return f"{h}x{w}, batch {report.batch}"


def detail(report: ModelReport, fmt: str) -> str:
    """One variant: a summary line and its per-stage table."""
    paper = []
    if report.paper.params:
        paper.append(f"{millions(report.paper.params)}M params ({percent(report.params_rel_diff)})")
    if report.paper.macs:
        diff = percent(report.macs_rel_diff) or "not comparable at this size"
        paper.append(f"{millions(report.paper.macs, 1)}M MACs at 224 ({diff})")
    head = (f"{report.name} ({size_text(report)}): {report.params:,} params, {millions(report.macs, 1)}M MACs, "
            f"{millions(report.mac_bytes, 1)} MB memory access" + (f"; paper: {', '.join(paper)}" if paper else ""))
    table = tabulate([stage_row(s) for s in report.stages], headers=STAGE_HEADERS, tablefmt=fmt,
                     disable_numparse=True, colalign=_align(STAGE_HEADERS, 2))
    if fmt == "pipe":
        return f"### {report.name}\n\n{head}\n\n{table}\n"
    return f"{head}\n{table}\n"


MARKDOWN_PREAMBLE = """# Model zoo: complexity of the registered backbones

Generated by `{command}` (output redirected to `docs/model_zoo.md`).
Do not edit by hand: re-run the command after adding or changing a variant.

Input {size}, batch 1; each backbone in its classification form (backbone + global average
pool + FC to 1000 classes), as the papers count. Definitions: `backbones/analysis.py`;
per-stage breakdown of one variant: `python tools/analyze_model.py NAME [--input HxW]`.

- **params**: all trainable parameters, BatchNorm affine parameters and the FC included.
- **MACs**: multiply-adds of convolutions, linear layers and matrix products, i.e. the
  papers' "FLOPs" (bias, BN, activations, pooling and element-wise ops are not counted);
  equal to `torch.utils.flop_counter.FlopCounterMode` FLOPs / 2.
- **paper**: the figure the variant's paper reports (at 224x224); **Δ** = ours / paper - 1.
  Variants without a paper figure (e.g. SE, residual and v2* forms) leave it blank.
- **MAC (MB)**: memory access cost as in the ShuffleNet v2 paper (G1): bytes (fp32) of the
  feature maps every operator reads and writes plus the weights it reads, summed over the
  aten operators of one inference pass; views count 0 and BatchNorm counts 0 (folded into
  the preceding conv). A bias-free 1x1 conv from c1 to c2 channels on h x w costs
  4 * (h*w*(c1 + c2) + c1*c2) bytes. MB = 10^6 bytes.
- **frag/unit**: conv + pooling operators per building block (the paper's G3
  fragmentation), mean / max over all units; **max branches**: the most of those
  operators that could run in parallel within one unit (an identity branch counts 0).
"""


def markdown_document(reports: Sequence[ModelReport], size: Tuple[int, int], command: str) -> str:
    """docs/model_zoo.md: the preamble (naming ``command``), then one table per family."""
    by_family: Dict[str, List[ModelReport]] = defaultdict(list)
    for report in reports:
        by_family[report.family or "other"].append(report)
    parts = [MARKDOWN_PREAMBLE.format(command=command, size=f"{size[0]}x{size[1]}")]
    for family in sorted(by_family):
        members = by_family[family]
        sources = sorted({r.paper.source for r in members if r.paper.source})
        parts.append(f"## {family}\n")
        if sources:
            parts.append(f"Paper figures: {'; '.join(sources)}.\n")
        if family in FAMILY_NOTES:
            parts.append(FAMILY_NOTES[family] + "\n")
        parts.append(tabulate([summary_row(r) for r in members], headers=SUMMARY_HEADERS, tablefmt="pipe",
                              disable_numparse=True, colalign=_align(SUMMARY_HEADERS, 1)) + "\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------- main
def analyze_all(
    names: Sequence[str], args: argparse.Namespace, progress: bool
) -> Tuple[List[ModelReport], List[str]]:
    """Analyze every name; a failing variant is reported on stderr and skipped (exit 1)."""
    reports, failed = [], []
    bar = tqdm(names, desc="analyzing", unit="variant", file=sys.stderr, disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        try:
            report = analyze_variant(name, input_size=args.input, batch=args.batch)
        except Exception as err:  # noqa: BLE001 - one broken variant must not hide the rest
            tqdm.write(f"error: {name}: {type(err).__name__}: {err}", file=sys.stderr)
            failed.append(name)
            continue
        reports.append(report)
        if args.json:
            tqdm.write(json.dumps(report.to_dict()), file=sys.stdout)
    return reports, failed


def render(reports: Sequence[ModelReport], args: argparse.Namespace, as_rows: bool, command: str) -> str:
    if as_rows:
        if args.markdown:
            return markdown_document(reports, args.input, command)
        rows = [summary_row(r) for r in reports]
        return tabulate(rows, headers=SUMMARY_HEADERS, disable_numparse=True, colalign=_align(SUMMARY_HEADERS, 1))
    return "\n".join(detail(r, "pipe" if args.markdown else "simple") for r in reports)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. `... --json | head`: the reader left, not an error of ours
        # stdout to /dev/null: the interpreter's final flush must not fail a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.threads < 1:
        parser.error("--batch and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    try:
        if args.list:
            check_family(args.family)
            print("\n".join(backbones.list_backbones(family=args.family)))
            return 0
        names = select_names(args)
    except UsageError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    as_rows = args.all or not args.names
    reports, failed = analyze_all(names, args, progress=as_rows)
    if not args.json and reports:
        print(render(reports, args, as_rows, command=f"{SCRIPT} {shlex.join(argv)}"))
    if failed:
        print(f"{len(failed)} variant(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
