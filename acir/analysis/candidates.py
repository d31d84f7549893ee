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
* a replay that would read a source after that source's last use (on a sharded step, a tied
  weight gathered for the forward and last read early in the backward): the replay would
  keep it alive past its end, which no plan prices;
* the step's output (it must stay to the end), and an activation with no idle window.

The run time of a replay is the sum of the profiled times of the nodes it replays.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from acir.analysis.loss_head import FusionStats, fused_view
from acir.analysis.problem import Problem
from acir.ir.analyses import LIVENESS, PROFILE, StorageLife, require
from acir.ir.graph import Graph, Module, Region, arg_refs
from acir.ir.ops import COLLECTIVE_PREFIX, WAIT_TENSOR, functional_variant, is_random, mutated_args, written_args
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


@dataclass
class _GraphIndex:
    """What every candidate's walk reads from the graph, computed once per :func:`build`."""

    graph: Graph
    lives: dict[int, StorageLife]       # storage -> its lifetime
    nbytes: dict[int, int]              # storage -> bytes
    storage_of: dict[int, int]          # value -> storage
    input_storages: set[int]
    output_storages: set[int]
    writers: dict[int, list[int]]       # storage -> forward ranks that output into it
    mutations: dict[int, list[int]]     # storage -> ranks that write into it in place (ascending)
    rng_states: dict[int, int]          # random op rank -> its saved state's storage
    index: dict[int, int]               # activation storage -> candidate index
    acts: list[int]                     # candidate index -> activation storage

    @classmethod
    def of(cls, g: Graph, lives: list[StorageLife]) -> _GraphIndex:
        storage_of = {vid: v.storage for vid, v in g.values.items()}
        input_storages = {g.values[i.value].storage for i in g.inputs}
        writers: dict[int, list[int]] = {}
        for r, node in enumerate(g.nodes):
            # collectives before the backward write inputs (a broadcast of buffers) or gather a
            # parameter for the forward: its replay is a re-gather from the shard
            if node.region not in (Region.FORWARD, Region.COMMUNICATION):
                break
            for vid in node.output_ids():
                sid = storage_of[vid]
                if sid not in input_storages:
                    w = writers.setdefault(sid, [])
                    if not w or w[-1] != r:
                        w.append(r)
        acts = [life.storage for life in lives if life.activation]
        return cls(g, {life.storage: life for life in lives}, {s.id: s.nbytes for s in g.storages}, storage_of,
                   input_storages, {g.values[v].storage for v in g.outputs}, writers, _mutation_ranks(g),
                   {r: storage_of[v] for r, v in linked_states(g).items()}, {sid: k for k, sid in enumerate(acts)},
                   acts)


@dataclass
class _Candidate:
    """One activation as the planners see it (one entry of each of :class:`Problem`'s arrays)."""

    size: int
    lo: int
    hi: int
    time: float
    temp: int
    srcs: tuple[int, ...]
    reason: str
    chain: tuple[int, ...]


def _candidate(ix: _GraphIndex, sid: int, run_s: dict[int, float]) -> _Candidate:
    """Walk back from activation ``sid`` through the forward nodes that wrote it: its chain (the
    ranks a replay runs), its sources (activations it reads), the bytes of the dead
    intermediates it rebuilds, and the reason it must be kept, if any."""
    life = ix.lives[sid]
    nodes = ix.graph.nodes
    reason = ""
    chain: set[int] = set()
    src: set[int] = set()
    temp = 0
    todo = [sid]
    seen = {sid}
    while todo and not reason:
        t = todo.pop()
        for r in (r for r in ix.writers.get(t, ()) if r < life.first_bw_use):
            chain.add(r)
            node = nodes[r]
            state = ix.rng_states.get(r)
            replayable = state is not None and ix.lives[state].last_use >= life.first_bw_use
            reason = (reason or _node_reason(node.op, writes_ok=True, replayable=replayable)
                      or _writes_elsewhere(node, t, ix.storage_of)
                      or _stale_read(ix, node, r, life.first_bw_use, t))
            for vid in node.output_ids():
                o = ix.storage_of[vid]
                if o != sid and o not in seen and o not in ix.index:
                    temp += ix.nbytes.get(o, 0)
            for vid in node.input_ids():
                d = ix.storage_of[vid]
                if d == t or d in ix.input_storages or d in seen:
                    continue
                seen.add(d)
                if d in ix.index:
                    src.add(ix.index[d])
                else:
                    temp += ix.nbytes.get(d, 0)
                    todo.append(d)
    reason = reason or _read_after_end(ix, src, life.first_bw_use)
    if not reason and sid in ix.output_storages:
        reason = "a step output"
    start = max(life.last_fw_use, life.defined) + 1
    if not reason and start >= life.first_bw_use:
        reason = "no idle window"
    return _Candidate(ix.nbytes.get(sid, 0), start, life.first_bw_use, sum(run_s.get(nodes[r].id, 0.0) for r in chain),
                      temp, tuple(sorted(src)), reason, tuple(sorted(chain)))


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
    lives = liveness.storages if g is module.graph else storage_lives(g, run_s)
    timeline = simulate(g, lives)
    ix = _GraphIndex.of(g, lives)
    acts = list(ix.index)
    cs = [_candidate(ix, sid, run_s) for sid in acts]
    problem = Problem(tuple(timeline.live), tuple(timeline.after), timeline.persistent_bytes,
                      tuple(c.size for c in cs), tuple(c.lo for c in cs), tuple(c.hi for c in cs),
                      tuple(c.time for c in cs), tuple(c.temp for c in cs), tuple(c.srcs for c in cs),
                      tuple(not c.reason for c in cs), overlap_windows(g, run_s))
    return Candidates(problem, tuple(acts), tuple(c.reason for c in cs), tuple(c.chain for c in cs), g,
                      liveness.simulated_peak_bytes, fused)


def overlap_windows(g: Graph, run_s: dict[int, float]) -> tuple[tuple[int, int, float], ...]:
    """The problem's overlap windows (:mod:`acir.analysis.problem`): for each collective launched
    at rank ``a`` and waited for at rank ``w`` (``torch.ops._c10d_functional``: the launch returns
    at once, ``wait_tensor`` blocks until it is done), the points before nodes ``a+1..w`` run
    while it is in flight, and its wait's profiled time is what they can hide. Windows that
    overlap (two collectives in flight at once) are merged and their waits added: what the
    replays can hide there is the time the step spent blocked in them."""
    launched: dict[int, int] = {}  # value id of a collective's output -> launch rank
    spans: list[tuple[int, int, float]] = []
    for r, node in enumerate(g.nodes):
        if node.op == WAIT_TENSOR:
            a = next((launched.pop(v) for v in node.input_ids() if v in launched), None)
            slack = run_s.get(node.id, 0.0)
            if a is not None and a + 1 <= r and slack > 0:
                spans.append((a + 1, r, slack))
        elif node.op.startswith(COLLECTIVE_PREFIX):
            for v in node.output_ids():
                launched[v] = r
    merged: list[list] = []
    for first, last, slack in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], last)
            merged[-1][2] += slack
        else:
            merged.append([first, last, slack])
    return tuple((a, b, t) for a, b, t in merged)


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


def _stale_read(ix: _GraphIndex, node, rank: int, until: int, rebuilt: int) -> str:
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
        d = ix.storage_of[vid]
        if d == rebuilt or (d not in ix.index and d not in ix.input_storages):
            continue  # rebuilt by the replay itself (it replays every forward writer in order)
        ranks = ix.mutations.get(d)
        if not ranks:
            continue
        k = bisect.bisect_right(ranks, rank)
        if k < len(ranks) and ranks[k] < until:
            w = ix.graph.nodes[ranks[k]]
            return f"reads a tensor that {w.name} ({w.op}) updates in place before the recomputation"
    return ""


def _read_after_end(ix: _GraphIndex, src: set[int], at: int) -> str:
    """Why a replay at rank ``at`` may not read its sources: one of them is past its last use
    there (the replay would keep it alive beyond its end, which no plan prices), or ""."""
    late = next((ix.acts[k] for k in sorted(src) if ix.lives[ix.acts[k]].last_use < at), None)
    return "" if late is None else f"its replay reads s{late} after that tensor's last use (a tied weight ...)"


def _schema_args(op: str):
    from acir.ir.ops import resolve_op

    return resolve_op(op)._schema.arguments


def block_paths(g: Graph) -> list[str]:
    """The outermost repeated blocks of the model, as module paths, found as acir-bench finds
    them on the model: the indexed children (``layer1.0``, ``encoder.layer.3``) of a container
    that has at least two of them with submodules of their own, from the module paths of the
    forward nodes (a lone ``Linear`` in a list is not a block)."""
    kids: dict[str, set[str]] = {}
    for n in g.nodes:
        if n.region is not Region.FORWARD or not n.module:
            continue
        parts = n.module.split(".")
        for k in range(len(parts) - 1):  # an indexed child with something under it
            if parts[k].isdigit():
                kids.setdefault(".".join(parts[:k]), set()).add(parts[k])
    blocks = {f"{parent}.{k}" if parent else k for parent, ks in kids.items() if len(ks) >= 2 for k in ks}
    return sorted((b for b in blocks if not any(b.startswith(o + ".") for o in blocks)),
                  key=lambda b: [int(x) if x.isdigit() else x for x in b.split(".")])


def candidate_blocks(cands: Candidates, blocks: list[str]) -> list[int]:
    """Per candidate, the index in ``blocks`` of the block whose forward made it (-1: none)."""
    g = cands.graph
    nodes = g.nodes
    out = []
    for chain in cands.chains:
        path = nodes[chain[-1]].module if chain else ""
        out.append(next((k for k, b in enumerate(blocks) if path == b or path.startswith(b + ".")), -1))
    return out
