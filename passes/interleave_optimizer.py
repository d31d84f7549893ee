"""The ``interleave-optimizer`` pass: update each parameter as soon as its gradient is final.

Eager PyTorch runs the whole backward, then the optimizer, so every gradient is alive at
once at the end of the backward; for models whose activations are small next to their
parameters that, not the activations, sets the peak, and no recomputation can go below it
(../shared/TORCH-NOTES.md: BERT-base's floor). Moving each parameter's update into the
backward, right after the last node that needs its old value or writes its gradient —
what "optimizer in backward" does with ``register_post_accumulate_grad_hook`` — frees
each gradient early.

The schedule is derived from the graph alone. Optimizer nodes are grouped by the storages
they touch (one group per parameter with per-tensor Adam or SGD: its gradient, its state,
itself); a group moves, in its own order, to just after the latest of: the producers of
what it reads, and every backward node that reads or writes a storage the group writes
(so no backward node ever sees an updated parameter); a parameter's optimizer state is in
its group even where no op links them (Adam's step counter, whose bias corrections the host
computes). Each update reads exactly the
values it read before and nothing reads what it writes any earlier, so the step computes
the same numbers bit for bit (``acir-run --check`` proves it for every model). Groups
that share state (a ``foreach`` optimizer's lists) simply stay at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from acir.ir.graph import Graph, InputKind, Module, Region
from acir.pipeline.pass_base import Pass, PassResult


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclass(frozen=True)
class InterleaveOptimizer(Pass):
    """Run each parameter's optimizer update inside the backward, as soon as its gradient is final."""

    name: ClassVar[str] = "interleave-optimizer"

    def run(self, module: Module) -> PassResult:
        moved, groups = interleave(module.graph)
        if moved < 0:
            return PassResult(False, {"moved_groups": 0})
        return PassResult(True, {"moved_groups": moved, "groups": groups})


def interleave(g: Graph) -> tuple[int, int]:
    """Move each parameter's optimizer group to just after what it waits for (see the module
    docstring), in place; returns (groups moved, groups), or (-1, 0) when nothing moved."""
    nodes = g.nodes
    storage_of = {vid: v.storage for vid, v in g.values.items()}
    producer_rank: dict[int, int] = {}
    for r, n in enumerate(nodes):
        for vid in n.output_ids():
            producer_rank[vid] = r
    opt = [r for r, n in enumerate(nodes) if n.region is Region.OPTIMIZER]
    if not opt:
        return -1, 0
    opt_set = set(opt)
    # storages each optimizer node touches, and what it writes (outputs into an existing storage)
    uf = _UnionFind()
    touched: dict[int, set[int]] = {}
    writes: dict[int, set[int]] = {}
    for r in opt:
        n = nodes[r]
        ins = {storage_of[v] for v in n.input_ids()}
        outs = {storage_of[v] for v in n.output_ids()}
        touched[r] = ins | outs
        writes[r] = outs & ins  # in place: the output lives in a storage it was given
        first = next(iter(touched[r]), None)
        for s in touched[r]:
            uf.union(first, s)
    # a parameter's state belongs to its update even where no op links them (Adam's step counter,
    # incremented on its own, its bias corrections being the host's): one group per parameter
    param_storage = {i.name: storage_of[i.value] for i in g.inputs if i.kind is InputKind.PARAMETER}
    for i in g.inputs:
        if i.kind is InputKind.OPTIMIZER_STATE and i.name.rsplit(":", 1)[0] in param_storage:
            uf.union(param_storage[i.name.rsplit(":", 1)[0]], storage_of[i.value])
    # the last non-optimizer node that reads or writes each storage
    last_other: dict[int, int] = {}
    for r, n in enumerate(nodes):
        if r in opt_set:
            continue
        for v in n.input_ids() + n.output_ids():
            last_other[storage_of[v]] = r
    groups: dict[int, list[int]] = {}
    for r in opt:
        key = uf.find(next(iter(touched[r]))) if touched[r] else -1 - r
        groups.setdefault(key, []).append(r)
    anchor_of: dict[int, int] = {}  # group key -> rank of the non-optimizer node it follows
    for key, members in groups.items():
        anchor = -1
        for r in members:
            n = nodes[r]
            for v in n.input_ids():
                p = producer_rank.get(v, -1)
                if p not in opt_set:
                    anchor = max(anchor, p)
            for s in writes[r]:
                anchor = max(anchor, last_other.get(s, -1))
        anchor_of[key] = anchor
    # a group may not move before an earlier group it depends on (shared values across groups)
    group_of = {r: key for key, members in groups.items() for r in members}
    for key, members in groups.items():
        for r in members:
            for v in nodes[r].input_ids():
                p = producer_rank.get(v, -1)
                if p in opt_set and group_of[p] != key:
                    anchor_of[key] = max(anchor_of[key], anchor_of[group_of[p]])
    first_bw = next((r for r, n in enumerate(nodes) if n.region in (Region.BACKWARD, Region.OPTIMIZER)), len(nodes))
    after: dict[int, list[int]] = {}
    moved = 0
    for key in sorted(groups, key=lambda k: groups[k][0]):
        anchor = max(anchor_of[key], first_bw - 1)
        after.setdefault(anchor, []).extend(groups[key])
    order: list[int] = []
    for r in [-1] + [r for r in range(len(nodes)) if r not in opt_set]:
        if r >= 0:
            order.append(r)
        for m in after.get(r, ()):
            order.append(m)
    if order == list(range(len(nodes))):
        return -1, 0
    last_non_opt = max(r for r in range(len(nodes)) if r not in opt_set)
    moved = sum(1 for key in groups if max(anchor_of[key], first_bw - 1) < last_non_opt)
    g.nodes = [nodes[r] for r in order]
    return moved, len(groups)
