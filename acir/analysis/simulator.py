"""The static memory simulator: live storage bytes at every node, from the IR alone.

What it models, and why that is exact. acir measures memory as the live tensor-storage
bytes seen by a dispatch-level tracker while the graph, lowered to ``torch.fx`` by
:mod:`acir.runtime.lower`, runs (:mod:`acir.runtime.measure`). That run has a fully determined
memory behaviour, and the simulator replays it step by step:

* the graph inputs (parameters, buffers, optimizer state, batch, constants) exist before
  the step and are held by the caller throughout: their storages count from the start
  (``persistent_bytes``) and are never released;
* an op's result storages are registered when the op returns, so while node ``r`` runs
  the total is everything alive before it plus the storages it *defines* (whose first
  value it outputs); views and in-place results name an existing storage and add nothing;
* fx's generated code drops every variable right after its last use, and a result that
  nothing reads right after the node that made it; for a tuple-returning op the lowering
  binds ``getitem`` s only for the used elements, so the unused ones die with the tuple,
  also right after the op. A storage dies when its last tensor does, so it is released
  right after the last node that reads *any* value in it (or that outputs into it);
* the step's outputs are returned to the caller: they live to the end.

Memory is counted per storage, never per tensor, and nothing depends on timing or on the
allocator, so the simulated peak equals the measured CPU peak byte for byte; the tests
check that, node by node, on random stacks and on every tiny model. It is exact relative
to the storage sizes in the IR, which capture takes from meta kernels: a few CPU kernels
return more than their meta kernel says (a reduced ``mse_loss`` keeps its whole unreduced
buffer as the 0-dim result's storage), and the tests keep that case as an expected
failure. On CUDA the caching allocator rounds blocks and libraries take workspaces, so
there the measured peak is not byte-comparable.

Everything here is pure over the graph, O(nodes + values), with no torch import, so
planners can call it in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.ir.analyses import StorageLife
from acir.ir.graph import Graph, Region, Role, arg_refs

__all__ = ["Timeline", "simulate", "storage_lives", "storage_roles"]


@dataclass(frozen=True)
class Timeline:
    """Simulated live bytes over the node order (indices are ranks in ``graph.nodes``)."""

    live: list[int]                  # while each node runs: alive before it + what it defines
    after: list[int]                 # after the releases that follow it
    by_role: dict[Role, list[int]]   # ``live`` split by the role of each storage
    peak_bytes: int
    peak_rank: int                   # first rank reaching the peak; -1 when there are no nodes
    persistent_bytes: int            # graph-input storages, alive throughout
    persistent_by_role: dict[Role, int] = field(default_factory=dict)

    def peak_by_role(self) -> dict[Role, int]:
        """The bytes of each role at the peak (they sum to ``peak_bytes``)."""
        if self.peak_rank < 0:  # no nodes: the peak is the inputs
            return dict(self.persistent_by_role)
        return {r: v[self.peak_rank] for r, v in self.by_role.items()}


def storage_roles(graph: Graph) -> dict[int, Role]:
    """Storage id -> the role of the first value (in definition order) that lives in it."""
    values = graph.values
    out: dict[int, Role] = {}
    for inp in graph.inputs:
        v = values.get(inp.value)
        if v is not None and v.storage not in out:
            out[v.storage] = v.role
    for n in graph.nodes:
        for vid in arg_refs(n.outputs):
            v = values.get(vid)
            if v is not None and v.storage not in out:
                out[v.storage] = v.role
    for v in values.values():
        out.setdefault(v.storage, v.role)
    return out


def storage_lives(graph: Graph, run_s: dict[int, float] | None = None) -> list[StorageLife]:
    """When each storage of ``graph`` is defined, used and freed; one per storage, in order.

    Ranks are positions in ``graph.nodes``. ``defined`` is the first node that outputs a
    value in the storage (-1 for a graph input's); ``last_use`` the last node that reads a
    value in it (or outputs into it), ``len(nodes)`` for graph outputs and inputs, and the
    defining rank when nothing reads it. An *activation* is created by a forward node (or by
    a collective before the backward starts: a parameter all-gathered for the forward, which
    a sharded step may gather again instead of keeping) and read by a backward one; its
    ``inactive_s`` is the run time (``run_s``, by node id) of
    the nodes strictly between its last forward use (its definition when no forward node
    reads it) and its first backward use.
    """
    nodes = graph.nodes
    n = len(nodes)
    values = graph.values
    index = {s.id: k for k, s in enumerate(graph.storages)}
    count = len(graph.storages)
    defined = [n] * count           # n = never defined (a verifier error): never alive
    last = [-1] * count
    last_fw = [-1] * count
    first_bw = [-1] * count
    last_bw = [-1] * count
    # value id -> storage index, for every value (one dict lookup per use afterwards)
    vidx = {vid: index.get(v.storage, -1) for vid, v in values.items()}
    for inp in graph.inputs:
        k = vidx.get(inp.value, -1)
        if k >= 0:
            defined[k] = -1
            last[k] = n
    FW, BW = Region.FORWARD, Region.BACKWARD
    for r, node in enumerate(nodes):
        region = node.region
        for vid in node.input_ids():
            k = vidx.get(vid, -1)
            if k < 0:
                continue
            if last[k] < r:
                last[k] = r
            if region is FW:
                last_fw[k] = r
            elif region is BW:
                if first_bw[k] < 0:
                    first_bw[k] = r
                last_bw[k] = r
        for vid in arg_refs(node.outputs):
            k = vidx.get(vid, -1)
            if k < 0:
                continue
            if defined[k] == n:
                defined[k] = r
            if last[k] < r:
                last[k] = r
    for vid in graph.outputs:
        k = vidx.get(vid, -1)
        if k >= 0:
            last[k] = n

    prefix: list[float] | None = None
    if run_s is not None:  # prefix[i] = total run time of nodes[:i]
        prefix = [0.0] * (n + 1)
        acc = 0.0
        for r, node in enumerate(nodes):
            acc += run_s.get(node.id, 0.0)
            prefix[r + 1] = acc

    bw_start = next((r for r, node in enumerate(nodes) if node.region is BW), n)
    out: list[StorageLife] = []
    for k, s in enumerate(graph.storages):
        d = defined[k]
        act = 0 <= d < n and first_bw[k] >= 0 and (
            nodes[d].region is FW or (nodes[d].region is Region.COMMUNICATION and d < bw_start))
        inactive = 0.0
        if act and prefix is not None:
            start = max(last_fw[k], d)
            if first_bw[k] > start + 1:
                inactive = prefix[first_bw[k]] - prefix[start + 1]
        out.append(StorageLife(s.id, d, last[k] if last[k] >= 0 else d, last_fw[k], first_bw[k], last_bw[k],
                               act, inactive))
    return out


def simulate(graph: Graph, lives: list[StorageLife] | None = None) -> Timeline:
    """Walk the nodes in order and count live storage bytes (see the module docstring)."""
    if lives is None:
        lives = storage_lives(graph)
    n = len(graph.nodes)
    nbytes = {s.id: s.nbytes for s in graph.storages}
    roles = storage_roles(graph)
    present = sorted({roles.get(life.storage, Role.OTHER) for life in lives}, key=lambda r: r.value)
    add = [0] * n
    free = [0] * (n + 1)
    role_add = {r: [0] * n for r in present}
    role_free = {r: [0] * (n + 1) for r in present}
    role_persistent = dict.fromkeys(present, 0)
    persistent = 0
    for life in lives:
        b = nbytes.get(life.storage, 0)
        if not b:
            continue
        role = roles.get(life.storage, Role.OTHER)
        d = life.defined
        if d < 0:
            persistent += b
            role_persistent[role] += b
            continue
        if d >= n:  # never defined: never alive
            continue
        add[d] += b
        role_add[role][d] += b
        end = min(max(life.last_use, d), n)  # released right after ``end``; n: kept to the end
        free[end] += b
        role_free[role][end] += b

    live = [0] * n
    after = [0] * n
    cur = persistent
    for r in range(n):
        x = cur + add[r]
        live[r] = x
        cur = x - free[r]
        after[r] = cur
    peak = max(live) if n else persistent  # the inputs are never freed, so no rank is below them
    peak_rank = live.index(peak) if n else -1
    by_role: dict[Role, list[int]] = {}
    for role in present:
        ra, rf = role_add[role], role_free[role]
        c = role_persistent[role]
        series = [0] * n
        for r in range(n):
            c += ra[r]
            series[r] = c
            c -= rf[r]
        by_role[role] = series
    return Timeline(live, after, by_role, peak, peak_rank, persistent, role_persistent)
