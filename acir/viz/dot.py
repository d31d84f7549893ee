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

Large graphs stay readable because the picture is of a *selection*
(:func:`acir.viz.select.select`: a region, an ``nn.Module`` path prefix, the neighbourhood
of a node), grouped in clusters by region and module path, and optionally *folded*
(:attr:`DotOptions.collapse_depth`): every module at that depth becomes one box with its
totals (nodes, new bytes, run time, plan counts). With both the forward and the backward
drawn, the backward runs bottom-up beside the forward (a V; the optimizer a third column),
so that a saved activation is a short edge across, and invisible edges keep boxes and
sibling clusters in graph order; both are what lets dot lay out resnet152's forward (980
nodes) in about two seconds rather than minutes of staircased clusters. Nodes outside any
module are placed with what they work on (:func:`acir.viz.select.homes`).

:func:`to_dot` is those steps in order: the boxes (:func:`_boxes`), the edges between them
(:func:`_edges`), the V (:class:`_Layout`), the invisible edges that keep graph order
(:func:`_anchors`, :func:`_clustered`), then the text (:func:`_header`, :func:`_legend`).
The text is deterministic (ids by graph order, clusters by first appearance), so a small
graph's DOT is a golden file in the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from acir.errors import VizUsageError
from acir.ir.analyses import PLAN, PROFILE, Decision, Plan, Profile
from acir.ir.graph import Graph, Module, Node, Region, Role
from acir.units import format_bytes, human_time
from acir.viz.plots import ROLE_COLOURS
from acir.viz.select import homes

__all__ = ["REGION_FILL", "DotOptions", "to_dot"]

REGION_FILL = {Region.FORWARD: "#dbe8f7", Region.BACKWARD: "#fbe3d0", Region.OPTIMIZER: "#e3f1dc",
               Region.COMMUNICATION: "#f3e0ef"}
REGION_LINE = {Region.FORWARD: "#4c72b0", Region.BACKWARD: "#dd8452", Region.OPTIMIZER: "#55a868",
               Region.COMMUNICATION: "#b0579b"}
COPY_FILL, COPY_LINE = "#ffd54f", "#b8860b"
RECOMPUTE_LINE, KEEP_LINE = "#c44e52", "#2f4b7c"

_SUFFIX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class DotOptions:
    """How :func:`to_dot` draws a selection (what is drawn is the selection's business).

    The defaults draw every node as its own box, clustered, with a legend and the default
    title. Folding (``collapse_depth``, ``fold``) cuts a node's module path (as
    :func:`~acir.viz.select.homes` gives it) to its first N components - ``layer3.2.conv1``
    -> ``layer3.2`` at N=2; a shorter path is its own box, and nodes with none are one
    ``<top>`` box per region - and draws one box per region and cut path, with its totals.
    """

    collapse_depth: int | None = None  # fold every region's nodes at this depth (1 or more); None: a box per node
    clusters: bool = True              # frame the boxes by region (when several) and module path
    show_inputs: bool = False          # also draw the graph inputs and the outside values the selection reads
    title: str | None = None           # the picture's label; None: model, batch size and nodes drawn of all
    legend: bool = True                # a key to the fill and frame colours present
    # fold only these regions, each at its depth (the optimizer's thousands of element-wise
    # updates, say, while the rest is drawn node by node); collapse_depth, when given, wins
    fold: Mapping[Region, int] | None = None

    def __post_init__(self) -> None:
        if self.collapse_depth is not None and self.collapse_depth < 1:
            raise VizUsageError(f"--collapse-depth must be 1 or more, not {self.collapse_depth}")

    def depth(self, region: Region) -> int | None:
        """The depth the nodes of ``region`` are folded at; None: not folded."""
        return self.collapse_depth if self.collapse_depth is not None else (self.fold or {}).get(region)


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


@dataclass
class _Boxes:
    """The boxes of a selection, in graph order of their first node, and the box of each node."""

    items: list[_Item]
    of: dict[int, _Item]  # node id -> its box


def _boxes(g: Graph, info: _Info, home: dict[int, str], nodes: list[Node], options: DotOptions) -> _Boxes:
    """A box per node, except in a folded region: there one per module path cut to the depth."""
    groups: dict[tuple[Region, str, bool], list[Node]] = {}
    order: list[object] = []  # node or group key, in graph order of first member
    for n in nodes:
        parts = home[n.id].split(".") if home[n.id] else []
        depth = options.depth(n.region)
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
    boxes = _Boxes([], {})
    for x in order:
        if isinstance(x, Node):
            it = boxes.of[x.id] = _node_item(g, info, x, home[x.id])
        else:
            it = folded[x]
            for n in groups[x]:
                boxes.of[n.id] = it
        boxes.items.append(it)
    return boxes


def _outside_item(g: Graph, vid: int, inp, producer: Node | None) -> _Item:
    v = g.values[vid]
    name = inp.name if inp is not None else f"v{vid} from {producer.name if producer else '?'}"
    label = f"{name}\n{_dtype(v.dtype)}[{','.join(map(str, v.shape))}]"
    return _Item(f"v{vid}", Region.FORWARD, (), label,
                 {"shape": "ellipse", "style": "filled", "fillcolor": "#f2f2f2", "color": ROLE_COLOURS[v.role],
                  "fontsize": "8"})


# ---------------------------------------------------------------------------
# Edges, and the layout they ask dot for


@dataclass
class _Edges:
    """One edge per pair of boxes, with the distinct values it carries, in first-use order."""

    values: dict[tuple[str, str], dict[int, None]]  # (source key, destination key) -> value ids
    outside: dict[int, _Item]  # value id -> its ellipse (with show_inputs: inputs, values from outside)


def _edges(g: Graph, nodes: list[Node], box_of: dict[int, _Item], show_inputs: bool) -> _Edges:
    producers = g.producers()
    inputs = {i.value: i for i in g.inputs}
    edges = _Edges({}, {})
    for n in nodes:
        dst = box_of[n.id]
        for vid in dict.fromkeys(n.input_ids()):
            p = producers.get(vid)
            if p is not None and p.id in box_of:
                src = box_of[p.id]
            elif show_inputs:
                src = edges.outside.get(vid)
                if src is None:
                    src = edges.outside[vid] = _outside_item(g, vid, inputs.get(vid), p)
            else:
                continue
            if src is not dst:
                edges.values.setdefault((src.key, dst.key), {})[vid] = None
    return edges


class _Layout:
    """The V: how an edge between two boxes is written so that dot draws the step as one.

    With both the forward and the backward drawn, the backward runs bottom-up beside the
    forward (edges inside it are reversed, drawn with dir=back) and edges between regions
    do not constrain ranks: a V, the classic picture of a training step, in which a saved
    activation is a short edge across rather than one spanning the graph (which also keeps
    dot fast: long edges are what make its crossing minimisation slow). The optimizer is a
    third column, bottom-up too when interleaved into the backward.
    """

    def __init__(self, g: Graph, boxes: Iterable[_Item]) -> None:
        self.region_of = {it.key: it.region for it in boxes}
        drawn = set(self.region_of.values())
        self.v_shape = Region.FORWARD in drawn and Region.BACKWARD in drawn
        self.flipped = {Region.BACKWARD}
        ranks = {r: [k for k, x in enumerate(g.nodes) if x.region is r] for r in (Region.BACKWARD, Region.OPTIMIZER)}
        bw, opt = ranks[Region.BACKWARD], ranks[Region.OPTIMIZER]
        if opt and bw and opt[0] < bw[-1]:
            self.flipped.add(Region.OPTIMIZER)  # interleaved: each update runs right after its block's backward

    def kind(self, a: str, b: str) -> str:
        """How edge a -> b is drawn: ``flip`` (reversed), ``loose`` (across regions: no rank) or plain (``""``)."""
        ra, rb = self.region_of[a], self.region_of[b]
        if not self.v_shape:
            return ""
        if ra is rb and ra in self.flipped:
            return "flip"
        return "loose" if ra is not rb else ""

    def line(self, a: str, b: str, attrs: list[str], invisible: bool = False) -> str:
        """The DOT line of edge a -> b; an invisible edge across regions is dropped (it would not rank)."""
        k = self.kind(a, b)
        if k == "flip":
            return f"  {b} -> {a} [{', '.join(attrs + ['dir=back'])}];\n"
        if k == "loose":
            if invisible:
                return ""
            if "constraint=false" not in attrs:
                attrs = attrs + ["constraint=false"]
        return f"  {a} -> {b} [{', '.join(attrs)}];\n"


def _anchors(items: list[_Item], edges: _Edges, layout: _Layout) -> list[tuple[str, str]]:
    """Invisible edges that keep unfed boxes where they run.

    A box that nothing drawn feeds (batch-norm's step counter reads only a buffer; a
    creation op reads nothing) would float to the top rank and stretch its clusters over
    the whole height, which staircases every cluster; an invisible edge from the box
    before it in graph order (in its region) keeps it where it runs.
    """
    fed = {b for a, b in edges.values if layout.kind(a, b) != "loose"}
    anchors, before = [], {}
    for it in items:
        if it.region in before and it.key not in fed:
            anchors.append((before[it.region], it.key))
        before[it.region] = it.key
    return anchors


def _recompute_edges(nodes: list[Node], box_of: dict[int, _Item]) -> list[tuple[str, str]]:
    """(box of the original, box of its recompute copy), once per pair of distinct boxes."""
    out = []
    for n in nodes:
        if n.recompute_of is not None and n.recompute_of in box_of:
            a, b = box_of[n.recompute_of], box_of[n.id]
            if a is not b and (a.key, b.key) not in out:
                out.append((a.key, b.key))
    return out


# ---------------------------------------------------------------------------
# DOT text


def _attrs(d: dict[str, str]) -> str:
    return ", ".join(f"{k}={_q(v)}" for k, v in d.items())


def _box_line(it: _Item, indent: str = "  ") -> str:
    return f"{indent}{it.key} [label={_q(it.label)}, {_attrs(it.attrs)}];\n"


def _header(module: Module, nodes: list[Node], title: str | None) -> list[str]:
    """The opening lines: the title, and the defaults of the graph, its boxes and edges."""
    g = module.graph
    prov = module.header.provenance
    label = title if title is not None else (
        f"{prov.model or 'model'}, batch {prov.batch_size}: {len(nodes)} of {len(g.nodes)} nodes")
    return ["digraph acir {\n",
            f"  graph [label={_q(label)}, labelloc=t, fontname=Helvetica, fontsize=12, "
            f"nodesep=0.2, ranksep=0.3];\n",
            '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=9, margin="0.08,0.03"];\n',
            '  edge [fontname=Helvetica, fontsize=8, color="#777777", fontcolor="#444444", arrowsize=0.6];\n']


def _legend(g: Graph, info: _Info, nodes: list[Node], items: list[_Item], roles: bool) -> str:
    """The key to the colours drawn: the regions present, the output roles (when ``roles``:
    folded boxes are framed by region, not role), recompute copies and plan marks if any."""
    regions = [r for r in Region if any(it.region is r for it in items)]
    rows = [f'<tr><td bgcolor="{REGION_FILL[r]}">{r.name.lower()}</td></tr>' for r in regions]
    if roles:
        present = set()
        for n in nodes:
            outs = n.output_ids()
            present.add(g.values[outs[0]].role if outs and outs[0] in g.values else Role.OTHER)
        rows += [f'<tr><td border="2" color="{ROLE_COLOURS[r]}">{r.name.lower()} output</td></tr>'
                 for r in ROLE_COLOURS if r in present]
    if any(n.recompute_of is not None for n in nodes):
        rows.append(f'<tr><td bgcolor="{COPY_FILL}" border="2" color="{COPY_LINE}">recompute copy</td></tr>')
    if info.decisions:
        rows.append(f'<tr><td border="3" color="{RECOMPUTE_LINE}">plan: recompute</td></tr>')
        rows.append(f'<tr><td border="3" color="{KEEP_LINE}">plan: keep</td></tr>')
    return ('  legend [shape=plaintext, style="", label=<<table border="0" cellspacing="2" cellborder="1">'
            + "".join(rows) + "</table>>];\n")


def to_dot(module: Module, nodes: list[Node], options: DotOptions = DotOptions()) -> str:
    """DOT text for ``nodes`` (a selection of ``module``'s graph, in graph order), drawn as ``options`` say."""
    g = module.graph
    info = _info(module)
    boxes = _boxes(g, info, homes(g), nodes, options)
    edges = _edges(g, nodes, boxes.of, options.show_inputs)
    layout = _Layout(g, [*boxes.items, *edges.outside.values()])
    out = _header(module, nodes, options.title)
    if options.legend and boxes.items:
        out.append(_legend(g, info, nodes, boxes.items, roles=options.collapse_depth is None))
    box_lines, stack = _clustered(boxes.items, options.clusters)
    out.extend(box_lines)
    out.extend(_box_line(it) for it in edges.outside.values())
    for (a, b), vids in edges.values.items():
        nbytes = sum(g.values[v].nbytes for v in vids if v in g.values)
        out.append(layout.line(a, b, [f"label={_q(format_bytes(nbytes))}"]))
    for a, b in dict.fromkeys(_anchors(boxes.items, edges, layout) + stack):
        if (a, b) not in edges.values:
            out.append(layout.line(a, b, ["style=invis"], invisible=True))
    for a, b in _recompute_edges(nodes, boxes.of):
        out.append(layout.line(a, b, ["style=dashed", f'color="{COPY_LINE}"', f'fontcolor="{COPY_LINE}"',
                                      'label="recomputed as"', "constraint=false"]))
    out.append("}\n")
    return "".join(out)


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
        return [_box_line(it) for it in items], []
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
                lines.append(_box_line(c, indent))
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
