"""Which nodes a picture of the graph shows, and the module path each is drawn under.

A whole training step is thousands of nodes (resnet152's: about 11k), more than anyone
reads or Graphviz lays out in reasonable time, so ``acir-viz`` draws a *selection*:
:func:`select` filters by region and by ``nn.Module`` path prefix, then optionally keeps
the neighbourhood of one node. It is apart from :mod:`acir.viz.dot` because it is about
the graph, not about DOT: which nodes, and under which module (:func:`homes`), are
questions a selection and a drawing both ask, and the answers must agree - a node is
selected, clustered and folded under the same path. A bad selection is a
:class:`~acir.errors.VizUsageError` that names what would have matched (close node names,
the top-level module paths), since the user typed it against a graph they cannot see.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable

from acir.errors import VizUsageError
from acir.ir.graph import Graph, InputKind, Module, Node, Region

__all__ = ["DEFAULT_DEPTH", "describe_selection", "find_node", "homes", "select"]

#: Hops around ``--around NODE`` when ``--depth`` is not given.
DEFAULT_DEPTH = 2


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
    """The selection in words, for the picture's title and the CLI's messages (``whole step`` when none)."""
    parts = []
    if region is not None:
        regions = [region] if isinstance(region, Region) else list(region)
        parts.append(" and ".join(r.name.lower() for r in Region if r in regions))
    if module_path is not None:
        parts.append(f"module {module_path}")
    if around is not None:
        parts.append(f"around {around} (depth {DEFAULT_DEPTH if depth is None else depth})")
    return ", ".join(parts) or "whole step"
