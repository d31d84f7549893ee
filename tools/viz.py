"""``acir-viz``: look at a step - its graph, its memory with and without AC, the planners' curve.

A thin wrapper over :mod:`acir.viz.select` (which nodes to draw), :mod:`acir.viz.dot` (graph
-> DOT), :mod:`acir.viz.memory` (the memory timeline) and :mod:`acir.viz.common` (rendering,
the Pareto picture). Every option is checked before the input is read; a bad option - even
one only the artifact can refute, such as a module path with no nodes - exits 2 with
``acir-viz: error: ...``, as argparse does.
"""

from __future__ import annotations

import argparse
import sys

from acir.tools._cli import make_parser, run_cli

PROG = "acir-viz"

DESCRIPTION = """\
Draw an acir artifact (binary or text; from FILE or standard input):

  the graph (default): a box per node with its op, output shape, the bytes it allocates
    and its run time when profiled; filled by region (forward, backward, optimizer),
    framed by the role of its output; recompute copies (made by the rewrite) in gold,
    linked to the node they recompute; with a plan, the activations it recomputes (dashed
    red frame) and keeps (dark blue); edges labelled with the bytes they carry. With the
    forward and the backward both drawn, the backward runs bottom-up beside the forward.
    Clusters follow the nn.Module paths. Output by -o's extension: .dot (DOT text, no
    binary needed; also the default, on standard output), .svg, .png or .pdf (Graphviz's
    `dot`). For big graphs use .svg, narrow with --region/--module/--around, or fold
    modules with --collapse-depth.
  --memory: the simulated memory timeline stacked by role (needs a liveness analysis);
    with a plan, the predicted timeline with AC over it and the budget line; on a
    rewritten graph (recompute copies) the timeline is the AC one: --against OTHER (the
    artifact before the rewrite) overlays the no-AC one, else the plan's no-AC peak is a
    reference line. .png, .svg or .pdf.
  --pareto: the planners' Pareto curve (predicted peak vs added recompute time) from the
    sweep CSV that acir-sweep writes, given as FILE or piped in. .png, .svg or .pdf."""

EPILOG = """\
examples:
  acir-capture mlp | acir-opt -p liveness | acir-viz -o g.svg
  acir-viz step.acir --region forward -o fw.svg          # resnet152's forward: ~2 s
  acir-viz step.acir --module layer3.2 --region forward,backward -o block.png  # one bottleneck block
  acir-viz step.acir --around convolution_52 --depth 3 -o near.svg
  acir-viz step.acir --collapse-depth 2 -o blocks.png   # one box per block, with totals
  acir-viz step.acir --region forward > fw.dot          # DOT text, no Graphviz needed
  acir-opt step.acir -p 'profile,liveness,mutwo{budget=60%}' | acir-viz --memory -o mem.png
  acir-viz rewritten.acir --memory --against planned.acir -o mem.png
  acir-sweep step.p.acir | acir-viz --pareto -o pareto.png

Selections combine: --region and --module filter the nodes, --around NODE (a name, or an
id: 123 or n123) keeps those within --depth edges of it (default 2). With --collapse-depth
N each region's nodes fold into one box per module path cut to N parts (layer3.2.conv1 ->
layer3.2 at N=2). Without --region, more than 200 optimizer updates are folded per module
(two path parts) so that the forward and backward stay readable; --region optimizer, or
--region forward,backward,optimizer, draws them node by node. Nodes outside any module are
placed (and selected, and folded) with what they work on: an optimizer op with the parameter
it updates, a view or alias with the node it reads; the rest are one <top> box per region.
Rendering needs Graphviz's `dot` (apt-get install -y graphviz, or brew install graphviz);
.dot does not."""


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {v}")
    return v


REGIONS = ("forward", "backward", "optimizer")


def _regions(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(x.strip().lower() for x in text.split(",") if x.strip()))
    bad = [x for x in names if x not in REGIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown region {', '.join(repr(b) for b in bad) or '(none)'}; "
                                         f"choose from {', '.join(REGIONS)} (several: forward,backward)")
    return names


def _positive(text: str) -> int:
    v = _non_negative(text)
    if v < 1:
        raise argparse.ArgumentTypeError("must be 1 or more, not 0")
    return v


GRAPH_OPTIONS = ("region", "module", "around", "depth", "collapse_depth", "no_clusters", "inputs")


def make_arg_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, DESCRIPTION, EPILOG)
    p.add_argument("file", nargs="?", default="-", metavar="FILE",
                   help="the artifact (or, with --pareto, the sweep CSV) to read; '-' or omitted: standard input")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="the picture: .dot, .svg, .png or .pdf for the graph (default: DOT on standard output); "
                        ".png, .svg or .pdf for --memory and --pareto (required)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--memory", action="store_true", help="draw the memory timeline instead of the graph")
    what.add_argument("--pareto", action="store_true", help="draw the Pareto curve of a sweep CSV (from acir-sweep)")
    g = p.add_argument_group("the graph picture")
    g.add_argument("--region", type=_regions, metavar="R[,R]",
                   help="only the nodes of these regions: forward, backward, optimizer (comma-separated)")
    g.add_argument("--module", metavar="PATH", help="only the nodes of this nn.Module path prefix, e.g. layer3.2")
    g.add_argument("--around", metavar="NODE", help="only the nodes within --depth edges of NODE (a name or id)")
    g.add_argument("--depth", type=_non_negative, metavar="K", help="hops around --around's NODE (default 2)")
    g.add_argument("--collapse-depth", type=_positive, metavar="N",
                   help="fold each module at depth N into one box with its totals (nodes, bytes, time)")
    g.add_argument("--no-clusters", action="store_true", help="do not group boxes by region and module path")
    g.add_argument("--inputs", action="store_true",
                   help="also draw the graph inputs and the values from outside the selection that it reads")
    p.add_argument("--against", metavar="OTHER",
                   help="with --memory on a rewritten graph: the artifact before the rewrite, drawn as the no-AC line")
    p.add_argument("--title", help="the picture's title (default: model, batch and what is drawn)")
    return p


def _check_options(args: argparse.Namespace) -> str | None:
    """Every check that needs no input; returns the output format (None: DOT on stdout)."""
    from acir.errors import VizUsageError
    from acir.viz.common import GRAPH_FORMATS, PLOT_FORMATS, find_dot, output_format

    picture = "--memory" if args.memory else "--pareto" if args.pareto else None
    if picture:
        used = [o for o in GRAPH_OPTIONS if getattr(args, o) not in (None, False)]
        if used:
            flag = "--" + used[0].replace("_", "-")
            raise VizUsageError(f"{flag} selects what of the graph to draw; it does not apply to {picture}")
        if not args.output or args.output == "-":
            raise VizUsageError(f"{picture} draws a picture: give -o OUT.png, OUT.svg or OUT.pdf")
        output_format(args.output, PLOT_FORMATS, "the memory plot" if args.memory else "the Pareto plot")
    if args.against and not args.memory:
        raise VizUsageError("--against OTHER goes with --memory (it overlays OTHER's no-AC timeline)")
    if picture:
        return None
    if args.depth is not None and args.around is None:
        raise VizUsageError("--depth needs --around NODE")
    if not args.output or args.output == "-":
        return None
    fmt = output_format(args.output, GRAPH_FORMATS, "the graph")
    if fmt != "dot":
        find_dot()  # no Graphviz: say so now, not after reading and laying out
    return fmt


def _read_raw(path: str) -> tuple[bytes, str]:
    from acir.errors import SerdeError

    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise SerdeError("no input: give a file, or pipe one in (acir-capture mlp | acir-viz -o g.svg)")
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except OSError as e:
        raise SerdeError(f"cannot read {path}: {e.strerror}") from None


def _read_module(path: str):
    """The artifact at ``path`` ('-': standard input); a sweep CSV is a usage error that says --pareto."""
    from acir.bench.sweep import is_sweep_csv
    from acir.errors import VizUsageError
    from acir.ir.artifact import read_bytes

    data, source = _read_raw(path)
    if is_sweep_csv(data):
        raise VizUsageError(f"{source} is a sweep CSV, not an artifact; draw it with --pareto -o pareto.png")
    return read_bytes(data, source)


def _pareto(args: argparse.Namespace) -> None:
    from acir.bench.sweep import is_sweep_csv, pareto, read_sweep_csv
    from acir.errors import VizUsageError
    from acir.ir.artifact import BINARY_PREFIX, TEXT_PREFIX

    data, source = _read_raw(args.file)
    if not is_sweep_csv(data):
        if data.startswith(BINARY_PREFIX) or data.lstrip().startswith(TEXT_PREFIX):
            raise VizUsageError(f"--pareto reads the sweep CSV that acir-sweep writes, and {source} is an artifact; "
                                f"run: acir-sweep {args.file if args.file != '-' else 'FILE'} | acir-viz --pareto "
                                f"-o {args.output}")
        raise VizUsageError(f"{source} is not a sweep CSV (acir-sweep's header 'planner,budget_bytes,...' missing)")
    points = read_sweep_csv(data, source)
    pareto(points, args.output, args.title)
    print(f"{PROG}: wrote {args.output} ({len(points)} sweep points)", file=sys.stderr)


def _memory(args: argparse.Namespace) -> None:
    from acir.viz.memory import memory_figure

    module = _read_module(args.file)
    against = _read_module(args.against) if args.against else None
    notes = memory_figure(module, args.output, against, args.against or "OTHER", args.title)
    for n in notes:
        print(f"{PROG}: note: {n}", file=sys.stderr)
    print(f"{PROG}: wrote {args.output}", file=sys.stderr)


#: Boxes beyond which dot may take minutes: say so, with the way out.
BIG = 3000
FOLD_OPTIMIZER = 200   # more optimizer nodes than this, with no --region: fold them per module


def _graph(args: argparse.Namespace, fmt: str | None) -> None:
    from acir.ir.graph import Region
    from acir.viz.common import render, write_text
    from acir.viz.dot import DotOptions, to_dot
    from acir.viz.select import describe_selection, select

    module = _read_module(args.file)
    region = [Region[r.upper()] for r in args.region] if args.region else None
    nodes = select(module, region, args.module, args.around, args.depth)
    what = describe_selection(region, args.module, args.around, args.depth)
    title = args.title
    if title is None:
        prov = module.header.provenance
        title = (f"{prov.model or 'model'}, batch {prov.batch_size}: {what}, {len(nodes)} of "
                 f"{len(module.graph.nodes)} nodes" + (f", modules folded at depth {args.collapse_depth}"
                                                        if args.collapse_depth else ""))
    # Without --region, the optimizer's thousands of element-wise updates would swamp the
    # picture (and dot: a ResNet-18 step takes it over ten minutes); fold them per module.
    # --region optimizer (or naming all three regions) draws them node by node.
    fold = None
    n_opt = sum(n.region is Region.OPTIMIZER for n in nodes)
    if region is None and args.collapse_depth is None and n_opt > FOLD_OPTIMIZER and n_opt < len(nodes):
        fold = {Region.OPTIMIZER: 2}
        title += ", optimizer folded per module"
    options = DotOptions(collapse_depth=args.collapse_depth, clusters=not args.no_clusters, show_inputs=args.inputs,
                         title=title, fold=fold)
    text = to_dot(module, nodes, options)
    if fmt in (None, "dot"):
        write_text(text, args.output)
        if fmt == "dot":
            print(f"{PROG}: wrote {args.output} ({what}, {len(nodes)} nodes)", file=sys.stderr)
        return
    if args.collapse_depth is None and len(nodes) > BIG:
        print(f"{PROG}: note: {len(nodes)} nodes; dot may take minutes. Narrow the graph (--region, --module, "
              "--around) or fold it (--collapse-depth 2)", file=sys.stderr)
    render(text, args.output, fmt)
    print(f"{PROG}: wrote {args.output} ({what}, {len(nodes)} nodes)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = make_arg_parser()

    def body(args: argparse.Namespace) -> int:
        fmt = _check_options(args)  # a bad option is a UsageError: run_cli prints the usage and exits 2
        if args.pareto:
            _pareto(args)
        elif args.memory:
            _memory(args)
        else:
            _graph(args, fmt)
        return 0

    return run_cli(PROG, parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
