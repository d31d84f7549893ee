"""Replaying random ops with the random numbers they drew: dropout becomes recomputable.

A dropout mask is drawn from the device's generator (``bernoulli_`` into an empty tensor).
Replaying it in the backward would draw different numbers, so the planners had to keep
every mask and everything they feed, which is most of what ``torch.utils.checkpoint``
recomputes in a transformer layer (it saves and restores the generator state around each
segment for that reason). acir does the same per op, in the graph:

The operators are defined in :mod:`acir.ir.acir_ops`; this module places them in a graph.

* capture (:mod:`acir.frontend.fx_import`) puts ``acir::rng_state(like)`` just before every forward
  op that :data:`REPLAY` can replay. It returns a copy of the generator state of
  ``like``'s device (a small CPU tensor: 5056 bytes for the CPU generator, 16 for a CUDA
  one) and does not advance it; ``like`` is the op's first argument, which links the two;
* one ``acir::keep_rng_states(states)`` after the last backward node reads them all, so
  each state lives until the backward is over in every graph, with or without
  recomputation: the planners' model stays exact, and the cost is those few bytes per op;
* a replay (:mod:`passes.rewrite`) runs ``acir::bernoulli_replay_(self, p, state)``: it
  sets the generator to ``state``, draws in place, and puts the generator back where it
  was, so the forward's numbers come back bit for bit and no later draw changes.

Other random ops (``rand_like``, ``native_dropout`` when not decomposed ...) are not in
:data:`REPLAY`; the planners still keep what they make.
"""

from __future__ import annotations

from acir.ir.acir_ops import KEEP_OP, REPLAY, STATE_OP, state_bytes
from acir.ir.graph import Graph, Node, Region, Storage, Value, ValueRef


def insert_state_nodes(g: Graph) -> None:
    """Give every forward op in :data:`REPLAY` a saved state (see the module docstring).
    Node ids are renumbered in order, as capture leaves them."""
    nodes: list[Node] = []
    states: list[ValueRef] = []
    last_bw = max((r for r, n in enumerate(g.nodes) if n.region is Region.BACKWARD), default=-1)
    names = {n.name for n in g.nodes}
    sizes: dict[str, int] = {}
    vid = max(g.values, default=-1)
    for r, node in enumerate(g.nodes):
        if _replayable(node) and last_bw >= 0:
            like = node.args[0]
            device = g.storages[g.values[like.id].storage].device
            if device not in sizes:
                sizes[device] = state_bytes(device)
            sid = len(g.storages)
            g.storages.append(Storage(sid, sizes[device], "cpu"))
            vid += 1
            g.values[vid] = Value(vid, (sizes[device],), "uint8", (1,), sid, 0, sizes[device],
                                  g.values[like.id].role)
            name = _fresh(f"{node.name}_rng_state", names)
            nodes.append(Node(id=0, name=name, op=STATE_OP, args=[ValueRef(like.id)], kwargs={},
                              outputs=ValueRef(vid), region=Region.FORWARD, module=node.module))
            states.append(ValueRef(vid))
        nodes.append(node)
        if r == last_bw and states:
            nodes.append(Node(id=0, name=_fresh("keep_rng_states", names), op=KEEP_OP, args=[list(states)],
                              kwargs={}, outputs=None, region=Region.BACKWARD, module=node.module))
    for i, node in enumerate(nodes):
        node.id = i
    g.nodes = nodes


def _fresh(base: str, names: set[str]) -> str:
    name, k = base, 1
    while name in names:
        k += 1
        name = f"{base}_{k}"
    names.add(name)
    return name


def replay_call(node: Node, state: ValueRef) -> tuple[str, list, dict]:
    """The replay op and its arguments for the random ``node`` (one of :data:`REPLAY`)."""
    p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
    return REPLAY[node.op], [node.args[0], p, state], {}


def _replayable(node: Node) -> bool:
    return (node.region is Region.FORWARD and node.op in REPLAY and bool(node.args)
            and isinstance(node.args[0], ValueRef) and node.kwargs.get("generator") is None)


def linked_states(g: Graph) -> dict[int, int]:
    """Forward rank of a replayable random op -> the value id of its saved state (the
    ``rng_state`` node just before it, on the same first argument)."""
    out: dict[int, int] = {}
    nodes = g.nodes
    for r in range(1, len(nodes)):
        node, prev = nodes[r], nodes[r - 1]
        if prev.op != STATE_OP or not _replayable(node):
            continue
        if prev.args and isinstance(prev.args[0], ValueRef) and node.args[0].id == prev.args[0].id \
                and isinstance(prev.outputs, ValueRef):
            out[r] = prev.outputs.id
    return out
