"""From an annotated graph to the planners' :class:`~acir.analysis.problem.Problem`.

A *candidate* is an activation: a storage created in the forward and read in the
backward (liveness). Recomputing it means replaying, just before its first backward use,
the forward nodes that wrote it — its defining op, then any views and in-place ops on it
— from values that are still around: graph inputs, and other activations (its *sources*).
Forward values that are not activations are dead by then, so the nodes that made them
are replayed too, as temporaries (their bytes are the candidate's ``temp``).

What may not be replayed, and why (the reason is recorded in the plan):

* an op that draws random numbers, unless capture saved the generator state before it
  (:mod:`acir.ir.rng`: dropout's ``bernoulli_``), which the replay then draws from; and the
  saved state itself;
* an op that writes to a graph input or to another value (other than the batch-norm
  running statistics, which a replay leaves alone by passing none, and other than
  in-place ops on the tensor being rebuilt, which a replay runs in their functional form):
  a replay would apply the update twice;
* an in-place op with no functional variant, or one that writes anything but the tensor
  being rebuilt (a replay runs on fresh copies only);
* a replay that would read a tensor after it has been updated in place: a source or a
  parameter that a later node (another in-place op, or the optimizer's update interleaved
  into the backward) writes before the recomputation point;
* the step's output (it must stay to the end), and an activation with no idle window.

The run time of a replay is the sum of the profiled times of the nodes it replays.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from acir.analysis.loss_head import FusionStats, fused_view
from acir.analysis.problem import Problem
from acir.ir.analyses import LIVENESS, PROFILE, require
from acir.ir.graph import Graph, Module, Region, arg_refs
from acir.ir.ops import functional_variant, is_random, mutated_args, written_args
from acir.ir.rng import STATE_OP, linked_states

#: Batch-norm overloads whose running statistics a replay can leave out (pass None).
BATCH_NORMS = {"aten.native_batch_norm.default": ("running_mean", "running_var"),
               "aten._native_batch_norm_legit.default": ("running_mean", "running_var")}


@dataclass(frozen=True)
class Candidates:
    problem: Problem
    storages: tuple[int, ...]          # candidate index -> storage id
    reasons: tuple[str, ...]           # why a candidate must be kept; "" when it may be recomputed
    chains: tuple[tuple[int, ...], ...]  # candidate index -> ranks of the nodes its replay runs, in order
    graph: Graph | None = None           # the graph the problem describes: the module's, or its fused view
    no_ac_peak: int = 0                  # the module's own simulated peak (what budget percentages refer to)
    fused: FusionStats = field(default_factory=FusionStats)  # loss heads fused in ``graph``


def _node_reason(op: str, writes_ok: bool, replayable: bool = False) -> str:
    if op == STATE_OP:
        return "a saved random-number state"
    if replayable:
        return ""  # a random op with its saved state: replayed in place with the same draws (acir.ir.rng)
    if is_random(op):
        return f"random op ({op})"
    mutated = mutated_args(op)
    if mutated is None:
        return f"unknown op ({op})"
    allowed = set(BATCH_NORMS.get(op, ()))
    if set(mutated) - allowed:
        if writes_ok and functional_variant(op) is not None:
            return ""
        return f"in-place op without a functional variant ({op})" if writes_ok else f"writes its inputs ({op})"
    return ""


def build(module: Module) -> Candidates:
    """The candidates of ``module`` (needs fresh ``profile`` and ``liveness`` analyses), planned
    on the module's graph with its loss heads fused in place (:mod:`acir.analysis.loss_head`), as the
    ``rewrite`` pass will run it."""
    from acir.analysis.simulator import simulate, storage_lives

    fix = "add it before the planner, e.g. -p 'profile,liveness,mutwo{budget=60%}'"
    profile = require(module, PROFILE, "planning", fix)
    liveness = require(module, LIVENESS, "planning", fix)
    run_s = profile.run_s()
    g, fused = fused_view(module.graph)
    storage_list = liveness.storages if g is module.graph else storage_lives(g, run_s)
    nodes = g.nodes
    lives = {life.storage: life for life in storage_list}
    timeline = simulate(g, storage_list)
    nbytes = {s.id: s.nbytes for s in g.storages}
    input_storages = {g.values[i.value].storage for i in g.inputs}
    output_storages = {g.values[v].storage for v in g.outputs}
    storage_of = {vid: v.storage for vid, v in g.values.items()}
    writers: dict[int, list[int]] = {}   # storage -> forward ranks that output into it
    for r, node in enumerate(nodes):
        if node.region is not Region.FORWARD:
            break
        for vid in node.output_ids():
            sid = storage_of[vid]
            if sid not in input_storages:
                w = writers.setdefault(sid, [])
                if not w or w[-1] != r:
                    w.append(r)
    mutations = _mutation_ranks(g)
    rng_states = {r: storage_of[v] for r, v in linked_states(g).items()}  # random op rank -> its state's storage
    acts = [life.storage for life in storage_list if life.activation]
    index = {sid: k for k, sid in enumerate(acts)}

    sizes, lo, hi, times, temps, srcs, allowed, reasons, chains = [], [], [], [], [], [], [], [], []
    for sid in acts:
        life = lives[sid]
        reason = ""
        chain: set[int] = set()
        src: set[int] = set()
        temp = 0
        todo = [sid]
        seen = {sid}
        while todo and not reason:
            t = todo.pop()
            ranks = [r for r in writers.get(t, ()) if r < life.first_bw_use]
            for r in ranks:
                chain.add(r)
                node = nodes[r]
                state = rng_states.get(r)
                replayable = state is not None and lives[state].last_use >= life.first_bw_use
                reason = reason or _node_reason(node.op, writes_ok=True, replayable=replayable)
                reason = reason or _writes_elsewhere(node, t, storage_of)
                reason = reason or _stale_read(node, r, life.first_bw_use, t, index, input_storages,
                                               storage_of, mutations, nodes)
                for vid in node.output_ids():
                    o = storage_of[vid]
                    if o != sid and o not in seen and o not in index:
                        temp += nbytes.get(o, 0)
                for vid in node.input_ids():
                    d = storage_of[vid]
                    if d == t or d in input_storages or d in seen:
                        continue
                    seen.add(d)
                    if d in index:
                        src.add(index[d])
                    else:
                        temp += nbytes.get(d, 0)
                        todo.append(d)
        if not reason and sid in output_storages:
            reason = "a step output"
        start = max(life.last_fw_use, life.defined) + 1
        if not reason and start >= life.first_bw_use:
            reason = "no idle window"
        sizes.append(nbytes.get(sid, 0))
        lo.append(start)
        hi.append(life.first_bw_use)
        times.append(sum(run_s.get(nodes[r].id, 0.0) for r in chain))
        temps.append(temp)
        srcs.append(tuple(sorted(src)))
        allowed.append(not reason)
        reasons.append(reason)
        chains.append(tuple(sorted(chain)))
    problem = Problem(tuple(timeline.live), tuple(timeline.after), timeline.persistent_bytes, tuple(sizes),
                      tuple(lo), tuple(hi), tuple(times), tuple(temps), tuple(srcs), tuple(allowed))
    return Candidates(problem, tuple(acts), tuple(reasons), tuple(chains), g, liveness.simulated_peak_bytes, fused)


def _mutation_ranks(g: Graph) -> dict[int, list[int]]:
    """Storage id -> ranks of the nodes that write into it in place (ascending)."""
    out: dict[int, list[int]] = {}
    for r, node in enumerate(g.nodes):
        if not mutated_args(node.op):
            continue
        written = written_args(node.op, node.args, node.kwargs) or {}
        for name, arg in written.items():
            if name in BATCH_NORMS.get(node.op, ()):
                continue
            for vid in arg_refs(arg):
                ranks = out.setdefault(g.values[vid].storage, [])
                if not ranks or ranks[-1] != r:
                    ranks.append(r)
    return out


def _writes_elsewhere(node, rebuilt: int, storage_of: dict[int, int]) -> str:
    """A replay may write only into the storage it is rebuilding (batch-norm statistics aside)."""
    written = written_args(node.op, node.args, node.kwargs)
    if written is None:
        return f"unknown op ({node.op})"
    for name, arg in written.items():
        if name in BATCH_NORMS.get(node.op, ()):
            continue
        if any(storage_of[v] != rebuilt for v in arg_refs(arg)):
            return f"writes a tensor other than the one it makes ({node.op} at {node.name})"
    return ""


def _stale_read(node, rank: int, until: int, rebuilt: int, index: dict[int, int], input_storages: set[int],
                storage_of: dict[int, int], mutations: dict[int, list[int]], nodes) -> str:
    """Does ``node`` (replayed before rank ``until``) read a source or graph input that is
    updated in place after it ran in the forward, so that a replay would see new data?"""
    skip = set(BATCH_NORMS.get(node.op, ()))
    refs: list[int] = []
    if skip:
        names = [a.name for a in _schema_args(node.op)]
        for i, a in enumerate(node.args):
            if i >= len(names) or names[i] not in skip:
                refs.extend(arg_refs(a))
        for k, a in node.kwargs.items():
            if k not in skip:
                refs.extend(arg_refs(a))
    else:
        refs = node.input_ids()
    for vid in refs:
        d = storage_of[vid]
        if d == rebuilt or (d not in index and d not in input_storages):
            continue  # rebuilt by the replay itself (it replays every forward writer in order)
        ranks = mutations.get(d)
        if not ranks:
            continue
        k = bisect.bisect_right(ranks, rank)
        if k < len(ranks) and ranks[k] < until:
            w = nodes[ranks[k]]
            return f"reads a tensor that {w.name} ({w.op}) updates in place before the recomputation"
    return ""


def _schema_args(op: str):
    from acir.ir.ops import resolve_op

    return resolve_op(op)._schema.arguments
