"""Dead-code elimination: drop nodes whose results nothing reads.

Capture and rewriting leave dead nodes behind (a recomputation that was planned but
not used, shape helpers whose results fed only a removed op); each one costs run time
and, worse for activation checkpointing, memory that the simulator and the plan count.

Removing a node is only safe when running it had no effect besides its outputs, so DCE
keeps, even when unused:

* ops whose schema mutates an argument (``relu_``, ``copy_``, ``_foreach_add_``): the
  write *is* the effect;
* ops that draw random numbers (dropout, ``rand*``, ``normal`` ...): removing one shifts
  the RNG stream, so every later random op - and the gradients - would differ from the
  uncheckpointed run;
* ops outside aten/prims whose schema cannot be found: nothing is known about them;
* ``acir::keep_rng_states``: it keeps dropout's saved generator states alive for replays
  (:mod:`acir.ir.rng`);
* nodes with an output in a graph input's storage: a functionalised write-back to a
  parameter, buffer or optimizer state (the optimizer step has no other "use").

Nodes named by a kept node's ``recompute_of`` are kept too, so that link stays valid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from acir.ir.graph import Graph, Module, Node
from acir.ir.ops import is_random
from acir.ir.rng import KEEP_OP
from acir.pipeline.pass_base import Pass, PassResult

_KNOWN_NAMESPACES = ("aten", "prims")


@functools.lru_cache(maxsize=None)
def _schema_mutable(op: str) -> bool | None:
    """Whether the overload ``ns.op.overload`` mutates an argument; None when torch does not know it."""
    parts = op.split(".")
    if len(parts) < 2:
        return None
    if len(parts) == 2:
        parts.append("default")
    ns, name, overload = parts[0], ".".join(parts[1:-1]), parts[-1]
    try:
        import torch

        return bool(getattr(getattr(getattr(torch.ops, ns), name), overload)._schema.is_mutable)
    except Exception:  # unknown namespace, op or overload: torch raises several kinds
        return None


def has_side_effects(node: Node, input_storages: set[int], graph: Graph) -> bool:
    """True when removing ``node`` could change what the iteration does, beyond its outputs."""
    if is_random(node.op) or node.op == KEEP_OP:
        return True
    mutable = _schema_mutable(node.op)
    if mutable is None:
        ns = node.op.split(".", 1)[0]
        if ns not in _KNOWN_NAMESPACES:
            return True
        # an aten/prims name torch does not know (another version?): the in-place naming rule
        mutable = node.op.split(".")[1].endswith("_") if "." in node.op else True
    if mutable:
        return True
    for vid in node.output_ids():
        v = graph.values.get(vid)
        if v is not None and v.storage in input_storages:
            return True
    return False


@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Remove nodes whose outputs are never used, keeping writes and random ops.

    One reverse sweep reaches the fixed point: a node is live when a live node or a
    graph output reads one of its outputs, or when it has side effects. Values and
    storages that only dead nodes defined go with them.
    """

    name = "dce"

    def run(self, module: Module) -> PassResult:
        g = module.graph
        input_storages = {g.values[i.value].storage for i in g.inputs if i.value in g.values}
        used: set[int] = set(g.outputs)
        recomputed: set[int] = set()
        keep: list[Node] = []
        dead: list[Node] = []
        for node in reversed(g.nodes):
            live = (node.id in recomputed or any(v in used for v in node.output_ids())
                    or has_side_effects(node, input_storages, g))
            if not live:
                dead.append(node)
                continue
            keep.append(node)
            used.update(node.input_ids())
            if node.recompute_of is not None:
                recomputed.add(node.recompute_of)
        if not dead:
            return PassResult(False, {"nodes_removed": 0, "bytes_freed": 0})
        keep.reverse()
        g.nodes = keep
        defined = {i.value for i in g.inputs}
        for n in keep:
            defined.update(n.output_ids())
        removed_values = {vid for n in dead for vid in n.output_ids() if vid not in defined}
        for vid in removed_values:
            g.values.pop(vid, None)
        referenced = {v.storage for v in g.values.values()}
        freed = [s for s in g.storages if s.id not in referenced]
        g.storages = [s for s in g.storages if s.id in referenced]
        return PassResult(True, {"nodes_removed": len(dead), "values_removed": len(removed_values),
                                 "bytes_freed": sum(s.nbytes for s in freed)})


__all__ = ["DeadCodeElimination", "has_side_effects"]
