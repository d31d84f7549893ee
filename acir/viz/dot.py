"""The graph as Graphviz DOT: a box per node (or per folded module), edges labelled with bytes.

What a box says, and why: the node's name and op (when the name does not already say it),
its first output's dtype and shape, the bytes of the storages it creates (``+0 B`` for a
view or an in-place op: memory is per storage), and its run time when the artifact is
profiled - exactly what a planner weighs. The fill colour is the region (forward,
backward, optimizer), the border the role of the node's first output (the colours of
``acir-stats --plot``). Recompute copies (``Node.recompute_of``, made by the rewrite)
are gold, doubly framed, and linked to the node they recompute by a dashed gold edge;
with a ``plan`` block, the node that creates an activation the plan recomputes has a
thick dashed red frame, one the plan keeps a thick dark blue one (with the reason when it
must be kept). An edge carries the bytes of the values one box passes to the other.

Large graphs stay readable because the picture is of a *selection* (:func:`select`: a
region, an ``nn.Module`` path prefix, the neighbourhood of a node), grouped in clusters
by region and module path, and optionally *folded* (``collapse_depth``): every module at
that depth becomes one box with its totals (nodes, new bytes, run time, plan counts). With
both the forward and the backward drawn, the backward runs bottom-up beside the forward (a
V; the optimizer a third column), so that a saved activation is a short edge across, and
invisible edges keep boxes and sibling clusters in graph order; both are what lets dot lay
out resnet152's forward (980 nodes) in about two seconds rather than minutes of
staircased clusters. Nodes outside any module are placed with what they work on
(:func:`homes`).

The text is deterministic (ids by graph order, clusters by first appearance), so a small
graph's DOT is a golden file in the tests.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable

from acir.errors import VizUsageError
from acir.ir.analyses import PLAN, PROFILE, Decision, Plan, Profile
from acir.ir.graph import Graph, InputKind, Module, Node, Region, Role
from acir.units import format_bytes, human_time
from acir.viz.plots import ROLE_COLOURS

__all__ = ["DEFAULT_DEPTH", "REGION_FILL", "describe_selection", "find_node", "homes", "select", "to_dot"]

#: Hops around ``--around NODE`` when ``--depth`` is not given.
DEFAULT_DEPTH = 2

REGION_FILL = {Region.FORWARD: "#dbe8f7", Region.BACKWARD: "#fbe3d0", Region.OPTIMIZER: "#e3f1dc"}
REGION_LINE = {Region.FORWARD: "#4c72b0", Region.BACKWARD: "#dd8452", Region.OPTIMIZER: "#55a868"}
COPY_FILL, COPY_LINE = "#ffd54f", "#b8860b"
RECOMPUTE_LINE, KEEP_LINE = "#c44e52", "#2f4b7c"

_SUFFIX = re.compile(r"_\d+$")


# ---------------------------------------------------------------------------
# Selection


def find_node(graph: Graph, key: str) -> Node:
    """The node named ``key``, or with id ``key`` (``123`` or ``n123``, as in the text form)."""
    for n in graph.nodes:
        if n.name == key:
            return n
    m = re.fullmatch(r"n?(\d+)", key)
    if m:
        nid = int(m.group(1))
        for n in graph.nodes:
            if n.id == nid:
                return n
    close = difflib.get_close_matches(key, [n.name for n in graph.nodes], n=4)
    hint = f"; did you mean {', '.join(close)}?" if close else " (give a node name, or its id: 123 or n123)"
    raise VizUsageError(f"no node named or numbered {key!r} in the graph{hint}")


def homes(graph: Graph) -> dict[int, str]:
    """Node id -> the module path it is drawn (and selected, and folded) under.

    Its own, when it has one. A node outside any module goes with what it works on: an
    optimizer op with the module of the parameter (or its state: ``fc.weight:exp_avg`` ->
    ``fc``) it reads, else with the node that made its first input; elsewhere, a node
    that creates no storage (a view or an alias: autograd's aliases of the gradients, the
    view before the classifier) with the node that made its first input, in the same
    region. Without that the backward's hundreds of gradient aliases and the optimizer's
    thousands of ops would each be one ``<top>`` box tied to everything.
    """
    storage_of = {vid: v.storage for vid, v in graph.values.items()}
    seen = {storage_of[i.value] for i in graph.inputs if i.value in storage_of}
    owned = (InputKind.PARAMETER, InputKind.OPTIMIZER_STATE, InputKind.MODULE_BUFFER)
    input_module = {i.value: i.name.split(":")[0].rpartition(".")[0] for i in graph.inputs if i.kind in owned}
    producers: dict[int, Node] = {}
    out: dict[int, str] = {}
    for n in graph.nodes:
        outs = [storage_of.get(v) for v in n.output_ids()]
        new = any(s is not None and s not in seen for s in outs)
        seen.update(s for s in outs if s is not None)
        home = n.module
        ins = n.input_ids()
        if not home and n.region is Region.OPTIMIZER:
            home = next((input_module[v] for v in ins if v in input_module), "")
        if not home and (not new or n.region is Region.OPTIMIZER) and ins:
            p = producers.get(ins[0])
            if p is not None and p.region is n.region:
                home = out[p.id]
        out[n.id] = home
        for v in n.output_ids():
            producers[v] = n
    return out


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def _regions_text(regions: frozenset[Region]) -> str:
    return " or ".join(r.name.lower() for r in Region if r in regions)


def _module_error(graph: Graph, prefix: str, regions: frozenset[Region] | None) -> VizUsageError:
    home = homes(graph)
    paths = {home[n.id] for n in graph.nodes if home[n.id] and (regions is None or n.region in regions)}
    prefixes = set()
    for p in paths:
        parts = p.split(".")
        prefixes.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    close = difflib.get_close_matches(prefix, sorted(prefixes), n=4)
    where = f"no {_regions_text(regions)} node" if regions is not None else "no node"
    tops = list(dict.fromkeys(p.split(".")[0] for p in sorted(paths, key=lambda q: q.split(".")[0])))
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    shown = ", ".join(tops[:12]) + (", ..." if len(tops) > 12 else "")
    return VizUsageError(f"{where} has module path {prefix!r} or one under it{hint} "
                         f"(top-level module paths: {shown or 'none'})")


def select(module: Module, region: Region | Iterable[Region] | None = None, module_path: str | None = None,
           around: str | None = None, depth: int | None = None) -> list[Node]:
    """The nodes to draw, in graph order.

    ``region`` (one, or several) and ``module_path`` (an ``nn.Module`` path prefix: ``layer3.2`` takes
    ``layer3.2`` and ``layer3.2.conv1``, not ``layer3.20``) filter the nodes; ``around``
    (a node name or id) then keeps those within ``depth`` edges of it, in either
    direction, through the filtered nodes only (networkx's shortest paths).
    """
    g = module.graph
    regions = None if region is None else frozenset([region] if isinstance(region, Region) else region)
    nodes = [n for n in g.nodes if regions is None or n.region in regions]
    if module_path is not None:
        home = homes(g)
        nodes = [n for n in nodes if _under(home[n.id], module_path)]
        if not nodes:
            raise _module_error(g, module_path, regions)
    if not nodes:
        raise VizUsageError(f"the graph has no {_regions_text(regions)} nodes" if regions is not None
                            else "the graph has no nodes")
    if depth is not None and around is None:
        raise VizUsageError("--depth needs --around NODE")
    if around is None:
        return nodes
    depth = DEFAULT_DEPTH if depth is None else depth
    if depth < 0:
        raise VizUsageError(f"--depth must be 0 or more, not {depth}")
    centre = find_node(g, around)
    ids = {n.id for n in nodes}
    if centre.id not in ids:
        raise VizUsageError(f"node {centre.name} (n{centre.id}, {centre.region.name.lower()}, module "
                            f"{centre.module or '<top>'}) is not among the nodes --region/--module select")
    import networkx as nx

    ug = nx.Graph()
    ug.add_nodes_from(ids)
    producers = g.producers()
    for n in nodes:
        for vid in n.input_ids():
            p = producers.get(vid)
            if p is not None and p.id in ids and p.id != n.id:
                ug.add_edge(p.id, n.id)
    near = nx.single_source_shortest_path_length(ug, centre.id, cutoff=depth)
    return [n for n in nodes if n.id in near]


def describe_selection(region: Region | Iterable[Region] | None, module_path: str | None, around: str | None,
                       depth: int | None) -> str:
    parts = []
    if region is not None:
        regions = [region] if isinstance(region, Region) else list(region)
        parts.append(" and ".join(r.name.lower() for r in Region if r in regions))
    if module_path is not None:
        parts.append(f"module {module_path}")
    if around is not None:
        parts.append(f"around {around} (depth {DEFAULT_DEPTH if depth is None else depth})")
    return ", ".join(parts) or "whole step"


# ---------------------------------------------------------------------------
# Items: what becomes a box (a node, or a folded module)


def _q(s: str) -> str:
    """A DOT quoted string; ``\\n`` separates lines."""
    return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in s.split("\n")) + '"'


def _dtype(name: str) -> str:
    for long, short in (("bfloat", "bf"), ("float", "f"), ("uint", "u"), ("int", "i"), ("complex", "c")):
        if name.startswith(long):
            return short + name[len(long):]
    return "b8" if name == "bool" else name


def _op(op: str) -> str:
    """aten.convolution.default -> convolution; aten.add.Tensor -> add.Tensor."""
    short = op[5:] if op.startswith("aten.") else op
    return short[:-8] if short.endswith(".default") else short


@dataclass
class _Item:
    key: str                      # DOT id
    region: Region
    path: tuple[str, ...]         # the cluster it sits in (module path components)
    label: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class _Info:
    """What the boxes need from the whole graph, computed once."""

    new_bytes: dict[int, int]          # node id -> bytes of the storages it creates
    created: dict[int, list[int]]      # node id -> storages it creates
    run_s: dict[int, float] | None
    decisions: dict[int, tuple[Decision, str]]  # storage -> (decision, reason)
    names: dict[int, str]              # node id -> name


def _info(module: Module) -> _Info:
    g = module.graph
    nbytes = {s.id: s.nbytes for s in g.storages}
    storage_of = {vid: v.storage for vid, v in g.values.items()}
    seen = {storage_of[i.value] for i in g.inputs if i.value in storage_of}
    new_bytes, created = {}, {}
    for n in g.nodes:
        mine = []
        for vid in n.output_ids():
            s = storage_of.get(vid)
            if s is not None and s not in seen:
                seen.add(s)
                mine.append(s)
        created[n.id] = mine
        new_bytes[n.id] = sum(nbytes.get(s, 0) for s in mine)
    prof = module.analyses.get(PROFILE)
    plan = module.analyses.get(PLAN)
    decisions = {t.storage: (t.decision, t.reason) for t in plan.tensors} if isinstance(plan, Plan) else {}
    return _Info(new_bytes, created, prof.run_s() if isinstance(prof, Profile) else None, decisions,
                 {n.id: n.name for n in g.nodes})


def _plan_mark(info: _Info, n: Node) -> tuple[Decision, str] | None:
    """The plan's decision on a storage ``n`` creates (RECOMPUTE first), if any."""
    marks = [info.decisions[s] for s in info.created[n.id] if s in info.decisions]
    for d in marks:
        if d[0] is Decision.RECOMPUTE:
            return d
    return marks[0] if marks else None


def _node_item(g: Graph, info: _Info, n: Node, home: str) -> _Item:
    lines = []
    if n.recompute_of is not None:
        lines.append(f"RECOMPUTE COPY of {info.names.get(n.recompute_of, f'n{n.recompute_of}')}")
    lines.append(n.name)
    op = _op(n.op)
    if _SUFFIX.sub("", n.name) != op.split(".")[0]:
        lines.append(op)
    outs = [g.values[v] for v in n.output_ids() if v in g.values]
    if outs:
        v = outs[0]
        more = f" (+{len(outs) - 1})" if len(outs) > 1 else ""
        lines.append(f"{_dtype(v.dtype)}[{','.join(map(str, v.shape))}]{more}")
    lines.append("+" + format_bytes(info.new_bytes[n.id]))
    if info.run_s is not None and n.id in info.run_s:
        lines.append(human_time(info.run_s[n.id]))
    attrs = {"fillcolor": REGION_FILL[n.region]}
    role = outs[0].role if outs else Role.OTHER
    attrs["color"] = ROLE_COLOURS[role]
    style = ["rounded", "filled"]
    mark = _plan_mark(info, n)
    if mark is not None:
        decision, reason = mark
        if decision is Decision.RECOMPUTE:
            lines.append("plan: RECOMPUTE")
            attrs.update(color=RECOMPUTE_LINE, penwidth="3")
            style.append("dashed")
        else:
            lines.append(f"plan: {decision.name}" + (f" ({reason})" if reason else ""))
            attrs.update(color=KEEP_LINE, penwidth="3")
    if n.recompute_of is not None:
        attrs.update(fillcolor=COPY_FILL, color=COPY_LINE, peripheries="2", penwidth="2")
        style.append("bold")
    attrs["style"] = ",".join(style)
    attrs["tooltip"] = f"n{n.id} {n.op} @{n.module or '<top>'} ({n.region.name.lower()})"
    return _Item(f"n{n.id}", n.region, tuple(home.split(".")) if home else (), "\n".join(lines), attrs)


def _fold_items(info: _Info, groups: dict[tuple[Region, str, bool], list[Node]]) -> dict[tuple, _Item]:
    """One box per group: (region, module path prefix, whether it holds the recompute copies)."""
    out = {}
    for k, ((region, prefix, copy), members) in enumerate(groups.items()):
        count = f"{len(members)} node{'s' if len(members) != 1 else ''}"
        lines = [prefix or "<top>", f"{region.name.lower()}{' recompute' if copy else ''}, {count}",
                 "+" + format_bytes(sum(info.new_bytes[n.id] for n in members))]
        if info.run_s is not None:
            lines.append(human_time(sum(info.run_s.get(n.id, 0.0) for n in members)))
        attrs = {"fillcolor": REGION_FILL[region], "color": REGION_LINE[region], "shape": "box3d",
                 "style": "filled"}
        marks = [m for m in (_plan_mark(info, n) for n in members) if m is not None]
        rec = sum(m[0] is Decision.RECOMPUTE for m in marks)
        if marks:
            lines.append(f"plan: {rec} recompute, {len(marks) - rec} keep")
            if rec:
                attrs.update(color=RECOMPUTE_LINE, penwidth="3")
        copies = sum(n.recompute_of is not None for n in members)
        if copies:
            lines.append(f"{copies} RECOMPUTE {'COPY' if copies == 1 else 'COPIES'}")
            attrs.update(fillcolor=COPY_FILL, peripheries="2", penwidth="2")
        attrs["tooltip"] = lines[0] + f" ({lines[1]})"
        parts = tuple(prefix.split(".")) if prefix else ("",)
        out[(region, prefix, copy)] = _Item(f"m{k}", region, parts[:-1], "\n".join(lines), attrs)
    return out


# ---------------------------------------------------------------------------
# DOT text


def _attrs(d: dict[str, str]) -> str:
    return ", ".join(f"{k}={_q(v)}" for k, v in d.items())


def _legend(regions: list[Region], roles: list[Role], copies: bool, plan: bool) -> str:
    rows = [f'<tr><td bgcolor="{REGION_FILL[r]}">{r.name.lower()}</td></tr>' for r in regions]
    rows += [f'<tr><td border="2" color="{ROLE_COLOURS[r]}">{r.name.lower()} output</td></tr>' for r in roles]
    if copies:
        rows.append(f'<tr><td bgcolor="{COPY_FILL}" border="2" color="{COPY_LINE}">recompute copy</td></tr>')
    if plan:
        rows.append(f'<tr><td border="3" color="{RECOMPUTE_LINE}">plan: recompute</td></tr>')
        rows.append(f'<tr><td border="3" color="{KEEP_LINE}">plan: keep</td></tr>')
    return ('  legend [shape=plaintext, style="", label=<<table border="0" cellspacing="2" cellborder="1">'
            + "".join(rows) + "</table>>];\n")


def to_dot(module: Module, nodes: list[Node], collapse_depth: int | None = None, clusters: bool = True,
           show_inputs: bool = False, title: str | None = None, legend: bool = True,
           fold: dict[Region, int] | None = None) -> str:
    """DOT text for ``nodes`` (a selection of ``module``'s graph, in graph order).

    ``collapse_depth`` N folds the nodes into one box per region and module path cut to
    its first N components (``layer3.2.conv1`` -> ``layer3.2`` at N=2; a shorter path is
    its own box; paths as :func:`homes` gives them, and nodes with none are one ``<top>``
    box per region); ``clusters`` groups boxes by region and module path; ``show_inputs``
    also draws the graph inputs and the values from outside the selection that it reads;
    ``fold`` folds only the nodes of the given regions, at the given depth (the optimizer's
    thousands of element-wise updates, say, while the rest is drawn node by node).
    """
    if collapse_depth is not None and collapse_depth < 1:
        raise VizUsageError(f"--collapse-depth must be 1 or more, not {collapse_depth}")
    g = module.graph
    info = _info(module)
    home = homes(g)
    item_of: dict[int, _Item] = {}   # node id -> its box
    items: list[_Item] = []
    groups: dict[tuple[Region, str, bool], list[Node]] = {}
    order: list[object] = []          # node or group key, in graph order of first member
    for n in nodes:
        parts = home[n.id].split(".") if home[n.id] else []
        depth = collapse_depth if collapse_depth is not None else (fold or {}).get(n.region)
        if depth is not None:
            # a module's recompute copies are a box of their own: folded with its gradients,
            # they would tie the boxes in cycles (copies feed the backward of the module below)
            key = (n.region, ".".join(parts[:depth]), n.recompute_of is not None)
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(n)
        else:
            order.append(n)
    folded = _fold_items(info, groups)
    for x in order:
        if isinstance(x, Node):
            it = _node_item(g, info, x, home[x.id])
            item_of[x.id] = it
        else:
            it = folded[x]
            for n in groups[x]:
                item_of[n.id] = it
        items.append(it)

    # edges: one per pair of boxes, labelled with the bytes of the distinct values passed
    producers = g.producers()
    inputs = {i.value: i for i in g.inputs}
    edges: dict[tuple[str, str], dict[int, None]] = {}
    outside: dict[int, _Item] = {}
    for n in nodes:
        dst = item_of[n.id]
        for vid in dict.fromkeys(n.input_ids()):
            p = producers.get(vid)
            if p is not None and p.id in item_of:
                src = item_of[p.id]
            elif show_inputs:
                src = outside.get(vid)
                if src is None:
                    src = outside[vid] = _outside_item(g, vid, inputs.get(vid), p)
            else:
                continue
            if src is not dst:
                edges.setdefault((src.key, dst.key), {})[vid] = None
    # With both the forward and the backward drawn, the backward runs bottom-up beside the
    # forward (edges inside it are reversed, drawn with dir=back) and edges between regions
    # do not constrain ranks: a V, the classic picture of a training step, in which a saved
    # activation is a short edge across rather than one spanning the graph (which also keeps
    # dot fast: long edges are what make its crossing minimisation slow). The optimizer is a
    # third column, bottom-up too when interleaved into the backward.
    region_of = {it.key: it.region for it in items}
    region_of.update((it.key, it.region) for it in outside.values())
    v_shape = Region.FORWARD in region_of.values() and Region.BACKWARD in region_of.values()
    flipped = {Region.BACKWARD}
    ranks = {r: [k for k, x in enumerate(g.nodes) if x.region is r] for r in (Region.BACKWARD, Region.OPTIMIZER)}
    if ranks[Region.OPTIMIZER] and ranks[Region.BACKWARD] and ranks[Region.OPTIMIZER][0] < ranks[Region.BACKWARD][-1]:
        flipped.add(Region.OPTIMIZER)  # interleaved: each update runs right after its block's backward

    def kind(a: str, b: str) -> str:
        ra, rb = region_of[a], region_of[b]
        if not v_shape:
            return ""
        if ra is rb and ra in flipped:
            return "flip"
        return "loose" if ra is not rb else ""

    def line(a: str, b: str, attrs: list[str], invisible: bool = False) -> str:
        k = kind(a, b)
        if k == "flip":
            return f"  {b} -> {a} [{', '.join(attrs + ['dir=back'])}];\n"
        if k == "loose":
            if invisible:
                return ""
            if "constraint=false" not in attrs:
                attrs = attrs + ["constraint=false"]
        return f"  {a} -> {b} [{', '.join(attrs)}];\n"

    # A box that nothing drawn feeds (batch-norm's step counter reads only a buffer; a
    # creation op reads nothing) would float to the top rank and stretch its clusters
    # over the whole height, which staircases every cluster; an invisible edge from the
    # box before it in graph order (in its region) keeps it where it runs.
    fed = {b for a, b in edges if kind(a, b) != "loose"}
    anchors, before = [], {}
    for it in items:
        if it.region in before and it.key not in fed:
            anchors.append((before[it.region], it.key))
        before[it.region] = it.key
    recompute_edges = []
    for n in nodes:
        if n.recompute_of is not None and n.recompute_of in item_of:
            a, b = item_of[n.recompute_of], item_of[n.id]
            if a is not b and (a.key, b.key) not in recompute_edges:
                recompute_edges.append((a.key, b.key))

    prov = module.header.provenance
    label = title if title is not None else (
        f"{prov.model or 'model'}, batch {prov.batch_size}: {len(nodes)} of {len(g.nodes)} nodes")
    out = ["digraph acir {\n",
           f"  graph [label={_q(label)}, labelloc=t, fontname=Helvetica, fontsize=12, "
           f"nodesep=0.2, ranksep=0.3];\n",
           '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=9, margin="0.08,0.03"];\n',
           '  edge [fontname=Helvetica, fontsize=8, color="#777777", fontcolor="#444444", arrowsize=0.6];\n']
    if legend and items:
        regions = [r for r in Region if any(it.region is r for it in items)]
        roles = []
        if collapse_depth is None:  # folded boxes are framed by region, not role
            present = set()
            for n in nodes:
                outs = n.output_ids()
                present.add(g.values[outs[0]].role if outs and outs[0] in g.values else Role.OTHER)
            roles = [r for r in ROLE_COLOURS if r in present]
        out.append(_legend(regions, roles, any(n.recompute_of is not None for n in nodes), bool(info.decisions)))
    box_lines, stack = _clustered(items, clusters)
    out.extend(box_lines)
    for it in outside.values():
        out.append(f"  {it.key} [label={_q(it.label)}, {_attrs(it.attrs)}];\n")
    values = g.values
    for (a, b), vids in edges.items():
        nbytes = sum(values[v].nbytes for v in vids if v in values)
        out.append(line(a, b, [f"label={_q(format_bytes(nbytes))}"]))
    for a, b in dict.fromkeys(anchors + stack):
        if (a, b) not in edges:
            out.append(line(a, b, ["style=invis"], invisible=True))
    for a, b in recompute_edges:
        out.append(line(a, b, ["style=dashed", f'color="{COPY_LINE}"', f'fontcolor="{COPY_LINE}"',
                               'label="recomputed as"', "constraint=false"]))
    out.append("}\n")
    return "".join(out)


def _outside_item(g: Graph, vid: int, inp, producer: Node | None) -> _Item:
    v = g.values[vid]
    name = inp.name if inp is not None else f"v{vid} from {producer.name if producer else '?'}"
    label = f"{name}\n{_dtype(v.dtype)}[{','.join(map(str, v.shape))}]"
    return _Item(f"v{vid}", Region.FORWARD, (), label,
                 {"shape": "ellipse", "style": "filled", "fillcolor": "#f2f2f2", "color": ROLE_COLOURS[v.role],
                  "fontsize": "8"})


def _clustered(items: list[_Item], clusters: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Box lines, nested in clusters by region (when several) and module path.

    Only *container* modules are clusters (``layer1.0``, not ``layer1.0.relu``): a leaf
    module may run more than once (a Bottleneck's one ``relu`` runs three times), and a
    frame around all its calls would span its parent and push every sibling aside. A
    cluster is drawn only when at least two boxes sit under it, so that a frame never
    surrounds a single box.

    Also returns invisible edges that stack sibling clusters in graph order (from the last
    box of one to the first box of the next): without them a block whose last box shares
    a rank with the next block's first box sits beside it, and a ResNet stage of 36
    blocks becomes a staircase.
    """
    if not clusters:
        return [f"  {it.key} [label={_q(it.label)}, {_attrs(it.attrs)}];\n" for it in items], []
    several = len({it.region for it in items}) > 1

    containers = set()
    for it in items:  # a folded box's path is its parent's; a node's is its own module's
        folded = it.key.startswith("m")
        containers.update(it.path[:k] for k in range(1, len(it.path) + (1 if folded else 0)))

    def own(it: _Item) -> tuple[str, ...]:  # the container path a box belongs under
        return it.path if it.path in containers or it.key.startswith("m") else it.path[:-1]

    counts: dict[tuple, int] = {}
    for it in items:
        base = (it.region.name,) if several else ()
        path = own(it)
        for k in range(len(path) + 1):
            counts[base + path[:k]] = counts.get(base + path[:k], 0) + 1
    children: dict[tuple, list] = {(): []}
    first: dict[tuple, str] = {}
    last: dict[tuple, str] = {}
    for it in items:
        base = (it.region.name,) if several else ()
        path = own(it)
        at = base
        for k in range(1, len(path) + 1):
            if counts[base + path[:k]] >= 2:
                at = base + path[:k]
        for k in range(1, len(at) + 1):  # every cluster on the way, in first-appearance order
            if at[:k] not in children:
                children[at[:k]] = []
                children[at[:k - 1]].append(at[:k])
        children[at].append(it)
        for k in range(len(at) + 1):
            first.setdefault(at[:k], it.key)
            last[at[:k]] = it.key
    ids: dict[tuple, int] = {}
    lines: list[str] = []

    def emit(key: tuple, indent: str) -> None:
        for c in children[key]:
            if isinstance(c, _Item):
                lines.append(f"{indent}{c.key} [label={_q(c.label)}, {_attrs(c.attrs)}];\n")
                continue
            region_level = several and len(c) == 1
            if not region_level and len(children[c]) == 1 and not isinstance(children[c][0], _Item):
                emit(c, indent)  # a frame around a single frame (layer3 around layer3.2) says nothing
                continue
            cid = ids.setdefault(c, len(ids))
            if region_level:
                region = Region[c[0]]
                head = (f'label={_q(region.name.lower())}; style="rounded"; color="{REGION_LINE[region]}"; '
                        f'fontsize=14; fontcolor="{REGION_LINE[region]}";')
            else:
                path = ".".join(c[1:] if several else c)
                head = f'label={_q(path)}; style="rounded,dashed"; color="#999999"; fontcolor="#555555"; fontsize=10;'
            lines.append(f"{indent}subgraph cluster_{cid} {{ {head}\n")
            emit(c, indent + "  ")
            lines.append(f"{indent}}}\n")

    emit((), "  ")
    stack = []
    for kids in children.values():
        for a, b in zip(kids, kids[1:]):
            if isinstance(a, _Item) and isinstance(b, _Item):
                continue
            stack.append((a.key if isinstance(a, _Item) else last[a], b.key if isinstance(b, _Item) else first[b]))
    return lines, stack
