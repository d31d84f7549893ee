"""The ``rewrite`` pass: realise a plan by copying forward subgraphs into the backward.

For every activation the ``plan`` block marks RECOMPUTE, the forward nodes that made it
(its *chain*, see :mod:`acir.analysis.candidates`: its defining op, the views and in-place ops
on it, and the intermediates they need that are dead by the backward) are copied into
the backward just before its first backward use, reading its recompute sources; every
backward use then reads the copy, so the original is freed after its last forward use.

The schedule is exactly the one :func:`acir.analysis.problem.schedule` gives and
:func:`~acir.analysis.problem.evaluate` prices, so that the simulated peak after the rewrite
can be checked against the plan's prediction:

* all recomputations before one backward node form one *recomputation point*; each
  forward node is copied at most once per point, however many tensors of the point need it;
* a retained tensor is recomputed once, at the first point that needs it, and its copy
  serves every later use (a checkpointed block's forward, replayed once);
* a source that is itself recomputed, not retained, and still in its idle window at that
  point is dead: it is recomputed there too, transiently (its copy serves only this point
  and dies with it), and again later at its own first backward use — the plan's recompute
  count;
* a copy is a node of region BACKWARD whose ``recompute_of`` names the forward node it
  replays, with that node's module path (a collective's copy stays COMMUNICATION: on a
  sharded step, a parameter gathered again from its shard instead of kept).

Hazards, and how each is handled:

* views and aliases: the chain replays the view ops on the copied base, and a backward
  view of a recomputed tensor is re-homed into the copy's storage;
* in-place ops in a chain are replayed in place on the fresh copy, which nothing else
  shares (the planner keeps any activation whose chain writes elsewhere, or reads a tensor
  that is updated in place before the replay — such as a parameter whose optimizer update
  was interleaved into the backward);
* batch-norm in training mode is replayed without its running statistics (``None``), so
  they are updated once, by the forward: the batch statistics and output are the same;
* a random op (dropout's ``bernoulli_``) is replayed from the generator state capture
  saved before it, which puts the generator back afterwards (:mod:`acir.ir.rng`): the same
  draws, and no later draw changes; random ops without a saved state are never in a chain;
* ops with several outputs are copied once, and every output used later is bound;
* the optimizer region is not touched.

Before any of that, the loss heads are computed in place (:mod:`acir.analysis.loss_head`): the
planners planned on that fused view, so the rewrite realises it too.

The graph revision is bumped; a ``profile`` block at the new revision carries each
copy's run time from its original (the other nodes keep theirs), and the manager
recomputes ``liveness`` after it (the pass ``ensures`` it), so ``acir-stats`` shows the
simulated peak after the rewrite beside the plan's prediction (the ``plan`` block is kept
as the record of what was asked, at its revision).
"""

from __future__ import annotations

import copy
from collections import ChainMap
from dataclasses import dataclass, field

from acir.analysis.candidates import BATCH_NORMS, Candidates, build
from acir.analysis.problem import Point, schedule
from acir.errors import InternalError, PassFailed
from acir.ir import analyses
from acir.ir.analyses import LIVENESS, PLAN, PROFILE
from acir.ir.graph import (
    Graph,
    Module,
    Node,
    Region,
    Storage,
    Value,
    ValueRef,
    arg_refs,
)
from acir.ir.rng import REPLAY, linked_states, replay_call
from acir.pipeline.pass_base import Pass, PassResult

__all__ = ["Rewrite", "rewrite"]

#: Batch-norm overloads whose replay must drop the running statistics, and how:
#: (overload to call instead or None to keep it, argument positions to drop or set to None).
_NO_STATS = {
    "aten.native_batch_norm.default": ("aten.native_batch_norm.default", (3, 4), False),
    "aten._native_batch_norm_legit.default": ("aten._native_batch_norm_legit.no_stats", (3, 4), True),
}


@dataclass
class RewriteStats:
    recomputed: int = 0         # activations recomputed (plan RECOMPUTE)
    points: int = 0             # recomputation points (backward nodes that get copies before them)
    copies: int = 0             # nodes added
    transient: int = 0          # nested recomputations of dead sources
    rehomed: int = 0            # backward values moved into a copy's storage (views of a recomputed tensor)
    extended: int = 0           # kept tensors a replay reads after their last use (kept alive longer)
    fused: int = 0              # loss-head places computed in place (acir.analysis.loss_head)
    absorbed: dict[int, int] = field(default_factory=dict)  # node id removed by the fusion -> the node doing its work


def _chosen(module: Module, cands: Candidates) -> tuple[list[int], list[int]]:
    """The plan's recomputed candidates, and those of them it retains."""
    plan = module.analyses[PLAN]
    index = {sid: i for i, sid in enumerate(cands.storages)}
    chosen, retained = [], []
    for t in plan.tensors:
        i = index.get(t.storage)
        if i is None:
            raise PassFailed(f"the plan names storage s{t.storage}, which is not an activation of this graph; "
                             "was the plan made for another graph? re-run the planner")
        if t.decision is analyses.Decision.RECOMPUTE:
            if not cands.problem.allowed[i]:
                raise PassFailed(f"the plan recomputes s{t.storage}, which must be kept: {cands.reasons[i]}")
            chosen.append(i)
            if t.retained:
                retained.append(i)
    return chosen, retained


class _Builder:
    """Fresh ids and copies of nodes, values and storages."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.next_node = max((n.id for n in g.nodes), default=-1) + 1
        self.next_value = max(g.values, default=-1) + 1
        self.next_storage = max((s.id for s in g.storages), default=-1) + 1
        self.names = {n.name for n in g.nodes}

    def storage(self, like: Storage) -> int:
        sid = self.next_storage
        self.next_storage += 1
        self.g.storages.append(Storage(sid, like.nbytes, like.device))
        return sid

    def value(self, like: Value, storage: int) -> int:
        vid = self.next_value
        self.next_value += 1
        self.g.values[vid] = Value(vid, like.shape, like.dtype, like.strides, storage, like.storage_offset,
                                   like.nbytes, like.role)
        return vid

    def name(self, base: str) -> str:
        k = 1
        name = f"{base}_rc"
        while name in self.names:
            k += 1
            name = f"{base}_rc{k}"
        self.names.add(name)
        return name


def _remap(arg, env):
    if isinstance(arg, ValueRef):
        return ValueRef(env.get(arg.id, arg.id))
    if isinstance(arg, list):
        return [_remap(a, env) for a in arg]
    return arg


def _replay_call(node: Node, rng_state: int | None = None) -> tuple[str, list, dict]:
    """The op and arguments a replay of ``node`` runs (batch-norm without running statistics,
    a random op from its saved generator state ``rng_state``)."""
    args, kwargs = list(node.args), dict(node.kwargs)
    if node.op in REPLAY:
        if rng_state is None:
            raise InternalError(f"{node.name} ({node.op}) is replayed without its saved random-number state")
        return replay_call(node, ValueRef(rng_state))
    spec = _NO_STATS.get(node.op)
    if spec is None:
        if node.op in BATCH_NORMS:
            raise PassFailed(f"no replay without running statistics is known for {node.op}")
        return node.op, args, kwargs
    op, positions, drop = spec
    names = ("running_mean", "running_var")
    if drop:
        args = [a for i, a in enumerate(args) if i not in positions]
        for k in names:
            kwargs.pop(k, None)
    else:
        args = [None if i in positions else a for i, a in enumerate(args)]
        for k in names:
            if k in kwargs:
                kwargs[k] = None
    return op, args, kwargs


@dataclass
class _Copies:
    """What the recomputation points made so far, for the next point and the final splice."""

    latest: dict[int, int] = field(default_factory=dict)          # original value -> its persistent copy
    home: dict[int, int] = field(default_factory=dict)            # recomputed storage -> the copy's storage
    inserted: dict[int, list[Node]] = field(default_factory=dict)  # rank -> copies to run just before it
    extended: set[int] = field(default_factory=set)               # kept storages a replay reads after their last use


class _Rewriter:
    """The plan's recomputations, one recomputation point at a time (see the module docstring)."""

    def __init__(self, g: Graph, cands: Candidates, chosen: set[int]) -> None:
        from acir.analysis.simulator import storage_lives

        self.g, self.cands, self.chosen = g, cands, chosen
        self.storage_of = {vid: v.storage for vid, v in g.values.items()}
        self.storages = {s.id: s for s in g.storages}
        self.input_storages = {g.values[i.value].storage for i in g.inputs}
        self.chosen_storages = {cands.storages[i] for i in chosen}
        self.last_use = {life.storage: life.last_use for life in storage_lives(g)}
        self.rng_states = linked_states(g)
        self.builder = _Builder(g)
        self.done = _Copies()

    def point(self, pt: Point, stats: RewriteStats) -> None:
        """Copy, before node ``pt.rank``, the chains of the point's members (those it keeps and the
        dead sources it needs for now), each forward node once."""
        h, nodes, members = pt.rank, self.g.nodes, pt.members
        stats.points += 1
        stats.transient += len(pt.transient)
        local: dict[int, int] = {}
        env = ChainMap(local, self.done.latest)  # this point's copies, then earlier persistent ones
        fresh: dict[int, int] = {}               # original storage -> this point's copy storage
        copies: list[Node] = []
        for r in sorted(set().union(*(self.cands.chains[m] for m in members))):
            new = self._copy(nodes[r], r, h, env, fresh)
            local.update(zip(nodes[r].output_ids(), new.output_ids()))
            copies.append(new)
        stats.copies += len(copies)
        self.done.inserted[h] = copies
        # the persistent members' copies serve every later use; dead sources' copies die here
        kept = {self.cands.storages[m] for m in pt.persistent}
        for sid in kept:
            self.done.home[sid] = fresh[sid]
        self.done.latest.update({vid: new for vid, new in local.items() if self.storage_of.get(vid) in kept})

    def _copy(self, node: Node, r: int, h: int, env: ChainMap, fresh: dict[int, int]) -> Node:
        """The replay of forward ``node`` (rank ``r``) before rank ``h``, reading ``env``'s copies
        and writing fresh storages (one per original storage at this point)."""
        b = self.builder
        op, args, kwargs = _replay_call(node, self.rng_states.get(r))
        for vid in arg_refs(args) + arg_refs(list(kwargs.values())):
            if vid in env:
                continue
            s = self.storage_of[vid]
            if s in self.chosen_storages:
                raise InternalError(f"the replay of {node.name} before {self.g.nodes[h].name} reads s{s}, "
                                    "which is recomputed but has no copy there")
            if s not in self.input_storages and self.last_use[s] < h:
                self.done.extended.add(s)
        out_env: dict[int, int] = {}
        for vid in node.output_ids():
            s = self.storage_of[vid]
            if s in self.input_storages:
                raise InternalError(f"replay of {node.name} would write graph input storage s{s}")
            if s not in fresh:
                fresh[s] = b.storage(self.storages[s])
            out_env[vid] = b.value(self.g.values[vid], fresh[s])
        new = Node(id=b.next_node, name=b.name(node.name), op=op, args=_remap(args, env),
                   kwargs={k: _remap(v, env) for k, v in kwargs.items()}, outputs=_remap(node.outputs, out_env),
                   region=Region.COMMUNICATION if node.region is Region.COMMUNICATION else Region.BACKWARD,
                   module=node.module, recompute_of=node.id)
        b.next_node += 1
        return new

    def splice(self, stats: RewriteStats) -> None:
        """Insert every point's copies and point the backward at them."""
        out: list[Node] = []
        first_point = min(self.done.inserted)
        latest = self.done.latest
        for r, node in enumerate(self.g.nodes):
            out.extend(self.done.inserted.get(r, ()))
            if r >= first_point:
                node.args = _remap(node.args, latest)
                node.kwargs = {k: _remap(v, latest) for k, v in node.kwargs.items()}
                if node.region is not Region.FORWARD:
                    stats.rehomed += _rehome_views(self.g, node, self.done.home)
            out.append(node)
        self.g.nodes = out
        stats.extended = len(self.done.extended)


def rewrite(module: Module) -> RewriteStats:
    """Fuse the loss heads and insert the plan's recomputations into ``module.graph`` (see the
    module docstring)."""
    cands = build(module)
    module.graph = g = cands.graph   # the fused view the plan was made on (the module's own graph if none)
    chosen, retained = _chosen(module, cands)
    stats = RewriteStats(recomputed=len(chosen), fused=cands.fused.total, absorbed=dict(cands.fused.absorbed))
    if not chosen:
        return stats
    rw = _Rewriter(g, cands, set(chosen))
    for pt in schedule(cands.problem, chosen, retained).points:
        rw.point(pt, stats)
    rw.splice(stats)
    return stats


def _rehome_views(g: Graph, node: Node, home: dict[int, int]) -> int:
    """A backward view (or in-place result) of a recomputed tensor lives in the copy's
    storage, not the original's, which must die after its last forward use."""
    moved = 0
    for vid in node.output_ids():
        s = g.values[vid].storage
        if s in home:
            g.values[vid].storage = home[s]
            moved += 1
    return moved


def _carry_profile(module: Module, revision: int, absorbed: dict[int, int]) -> analyses.Profile:
    """The old profile's node times, each copy carrying its original's and a fused node the
    time of the node it absorbed too; byte fields and the measured peak belong to the old
    graph and are left for the simulator (zeros)."""
    old = module.analyses[PROFILE]
    times = dict(old.run_s())
    for gone, into in absorbed.items():
        times[into] = times.get(into, 0.0) + times.get(gone, 0.0)
    nodes = [analyses.NodeProfile(n.id, times.get(n.recompute_of if n.recompute_of is not None else n.id, 0.0),
                                  0, 0, 0, 0) for n in module.graph.nodes]
    new = copy.copy(old)
    new.revision = revision
    new.nodes = nodes
    new.method = old.method if old.method.endswith("(recompute copies: originals' times)") \
        else f"{old.method} (recompute copies: originals' times)"
    new.measured_peak_bytes = 0
    new.peak_node = -1
    return new


@dataclass(frozen=True)
class Rewrite(Pass):
    """Insert the plan's recomputations into the backward, so that the step runs within the budget.

    For each activation the ``plan`` recomputes, copies the forward nodes that made it
    into the backward just before its first backward use (one copy per recomputation
    point, serving every later use), points the backward at the copy and lets the
    original die after its last forward use. Copies are BACKWARD nodes with
    ``recompute_of`` set. Batch-norm replays leave the running statistics alone; dropout
    is replayed from its saved generator state. Bumps the revision, carries node times to
    the copies in a new ``profile`` block; ``liveness`` is recomputed after it (``ensures``).
    """

    name = "rewrite"
    requires = (PROFILE, LIVENESS, PLAN)
    ensures = (PROFILE, LIVENESS)  # the profile carried to the copies; liveness recomputed by the manager

    def run(self, module: Module) -> PassResult:
        plan = module.analyses[PLAN]
        s = rewrite(module)
        if s.recomputed == 0 and s.fused == 0:
            return PassResult(False, {"recomputed": 0})
        module.analyses[PROFILE] = _carry_profile(module, module.header.revision, s.absorbed)
        # the manager recomputes liveness after this pass (``ensures``); its stats join these
        return PassResult(True, {"loss_heads_fused": s.fused, "recomputed": s.recomputed, "points": s.points,
                                 "copies": s.copies, "transient": s.transient, "rehomed": s.rehomed,
                                 "extended": s.extended, "predicted_peak_bytes": plan.predicted_peak_bytes,
                                 "budget_bytes": plan.budget_bytes})
