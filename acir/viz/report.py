"""What ``acir-stats`` reports about an artifact: a summary, one JSON object, CSV rows.

Why one module of pure functions: the text summary, the JSON and the CSV files must never
disagree, and tests must check numbers without parsing printed tables. Everything starts
from :func:`gather`, which picks the analyses to trust once (a missing or stale liveness
block is recomputed with the simulator, a stale profile is ignored, each with a note);
then each :class:`Section` builds its JSON keys from those :class:`Facts` and describes
its own keys as text. Adding a section (say, the ``plan``) is one entry in
:data:`SECTIONS`; the keys of existing sections never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from acir.analysis.simulator import simulate, storage_lives, storage_roles
from acir.errors import StatsError
from acir.ir.analyses import LIVENESS, PLAN, PROFILE, Decision, Liveness, Plan, Profile
from acir.ir.graph import Graph, Module, Node, Region, Role, ValueRef

#: Roles of memory that lives for the whole iteration (what AC cannot shrink).
PERSISTENT_ROLES = (Role.PARAM, Role.BUFFER, Role.OPT_STATE, Role.INPUT)
#: Every role, persistent ones first: the order of tables, JSON objects and plot stacks.
ROLE_ORDER = PERSISTENT_ROLES + (Role.ACTIVATION, Role.GRAD, Role.COMM_BUFFER, Role.OTHER)
MiB = 2 ** 20


@dataclass
class Facts:
    """An artifact with the analyses a report may trust, resolved once."""

    module: Module
    liveness: Liveness
    liveness_source: str          # "artifact", "computed" (none there) or "recomputed" (stale)
    profile: Profile | None       # None when absent or stale
    notes: list[str]
    rank: dict[int, int]          # Node.id -> position in graph order
    storage_role: dict[int, Role]
    storage_bytes: dict[int, int]
    _timeline: Any = field(default=None, repr=False)

    @property
    def graph(self) -> Graph:
        return self.module.graph

    def timeline(self):
        """The simulator's :class:`Timeline` (per-role bytes per node), simulated on first use."""
        if self._timeline is None:
            self._timeline = simulate(self.graph)
        return self._timeline

    def node(self, node_id: int) -> Node | None:
        r = self.rank.get(node_id)
        return None if r is None else self.graph.nodes[r]


def _compute_liveness(module: Module, run_s: dict[int, float] | None):
    """What the ``liveness`` pass would store, computed now and not stored."""
    graph = module.graph
    lives = storage_lives(graph, run_s)
    tl = simulate(graph, lives)
    peak_node = graph.nodes[tl.peak_rank].id if tl.peak_rank >= 0 else -1
    return Liveness(module.header.revision, lives, list(tl.live), tl.peak_bytes, peak_node, tl.peak_by_role(),
                    tl.persistent_bytes, run_s is not None), tl


def gather(module: Module) -> Facts:
    """Resolve which analyses to use; never modifies ``module``."""
    rev = module.header.revision
    notes: list[str] = []
    profile = module.analyses.get(PROFILE)
    if profile is not None and profile.revision != rev:
        notes.append(f"profile: ignored, it is stale (computed at revision {profile.revision}, the graph is at "
                     f"revision {rev}); re-run acir-opt -p profile")
        profile = None
    run_s = None if profile is None else profile.run_s()
    liveness = module.analyses.get(LIVENESS)
    if liveness is None:
        source = "computed"
        notes.append("liveness: computed now (the artifact has no liveness block)")
    elif liveness.revision != rev:
        source = "recomputed"
        notes.append(f"liveness: recomputed now (the artifact's block is stale: revision {liveness.revision}, "
                     f"graph revision {rev})")
    else:
        source = "artifact"
    timeline = None
    if source != "artifact":
        liveness, timeline = _compute_liveness(module, run_s)
    return Facts(module, liveness, source, profile, notes, {n.id: i for i, n in enumerate(module.graph.nodes)},
                 storage_roles(module.graph), {s.id: s.nbytes for s in module.graph.storages}, timeline)


def _facts(x: Module | Facts) -> Facts:
    return x if isinstance(x, Facts) else gather(x)


# ---------------------------------------------------------------------------
# Sections: JSON keys, and the text that describes them.


def mib(b: int | float | None) -> str:
    return "-" if b is None else f"{b / MiB:.1f} MiB"


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f} ms"


def node_info(facts: Facts, node_id: int) -> dict | None:
    n = facts.node(node_id)
    if n is None:
        return None
    return {"id": n.id, "rank": facts.rank[n.id], "name": n.name, "op": n.op, "module": n.module,
            "region": n.region.name}


def _describe_node(d: dict | None) -> str:
    if d is None:
        return "(no node)"
    return f"node {d['id']} {d['name']} ({d['op']}, {d['module'] or '<top>'}, {d['region'].lower()})"


def _overview(f: Facts) -> dict:
    prov, nodes = f.module.header.provenance, f.graph.nodes
    return {"model": prov.model, "batch_size": prov.batch_size, "device": prov.device,
            "revision": f.module.header.revision, "pipeline": list(f.module.header.pipeline),
            "nodes": len(nodes), "nodes_by_region": {r.name: sum(n.region is r for n in nodes) for r in Region},
            "recompute_nodes": sum(n.recompute_of is not None for n in nodes),
            "liveness_source": f.liveness_source, "notes": list(f.notes)}


def _overview_text(d: dict) -> list[str]:
    regions = ", ".join(f"{k.lower()} {v}" for k, v in d["nodes_by_region"].items())
    lines = [f"model         {d['model'] or '?'}, batch {d['batch_size']}, {d['device']} "
             f"(graph revision {d['revision']}, pipeline: {','.join(d['pipeline']) or '-'})",
             f"nodes         {d['nodes']} ({regions}; {d['recompute_nodes']} recompute)"]
    return lines + [f"note: {n}" for n in d["notes"]]


def _memory(f: Facts) -> dict:
    persistent = dict.fromkeys((r.name for r in PERSISTENT_ROLES), 0)
    values = f.graph.values
    for sid in sorted({values[i.value].storage for i in f.graph.inputs if i.value in values}):
        role = f.storage_role[sid].name
        persistent[role] = persistent.get(role, 0) + f.storage_bytes.get(sid, 0)
    live = f.liveness
    by_role = live.peak_by_role
    if not by_role and f.graph.nodes:  # an older block without the breakdown
        tl, r = f.timeline(), f.rank.get(live.peak_node, 0)
        by_role = {role: b[r] for role, b in tl.by_role.items()}
    return {"persistent_bytes": sum(persistent.values()), "persistent_bytes_by_role": persistent,
            "simulated_peak_bytes": live.simulated_peak_bytes, "peak_node": node_info(f, live.peak_node),
            "bytes_by_role_at_peak": {r.name: int(by_role.get(r, 0)) for r in ROLE_ORDER}}


def _memory_text(d: dict) -> list[str]:
    lines = [f"{'memory by role':<14}{'persistent':>12}{'at peak':>12}{'peak bytes':>14}"]
    for role, at_peak in d["bytes_by_role_at_peak"].items():
        p = d["persistent_bytes_by_role"].get(role)
        lines.append(f"  {role:<12}{mib(p) if p is not None else '':>12}{mib(at_peak):>12}{at_peak:>14,}")
    lines.append(f"  {'total':<12}{mib(d['persistent_bytes']):>12}{mib(d['simulated_peak_bytes']):>12}"
                 f"{d['simulated_peak_bytes']:>14,}")
    lines.append(f"peak (sim)    {mib(d['simulated_peak_bytes'])} at {_describe_node(d['peak_node'])}")
    return lines


def _measured(f: Facts) -> dict:
    p = f.profile
    if p is None:
        return dict.fromkeys(("profile", "measured_peak_bytes", "measured_peak_node", "simulator_error",
                              "time_by_region_s", "iteration_s", "profiled_time_s", "profiled_over_iteration"))
    run_s = p.run_s()
    by_region = {r.name: 0.0 for r in Region}
    for n in f.graph.nodes:
        by_region[n.region.name] += run_s.get(n.id, 0.0)
    total = sum(run_s.values())
    sim = f.liveness.simulated_peak_bytes
    return {"profile": {"device": p.device, "method": p.method, "reps": p.reps, "warmup": p.warmup,
                        "malloc": p.malloc},
            "measured_peak_bytes": p.measured_peak_bytes, "measured_peak_node": node_info(f, p.peak_node),
            "simulator_error": abs(sim - p.measured_peak_bytes) / p.measured_peak_bytes
            if p.measured_peak_bytes else None,
            "time_by_region_s": by_region, "iteration_s": p.iteration_s, "profiled_time_s": total,
            "profiled_over_iteration": total / p.iteration_s if p.iteration_s else None}


def _measured_text(d: dict) -> list[str]:
    if d["profile"] is None:
        return ["measured      - (not profiled: acir-opt -p profile adds run times and the measured peak)"]
    t, p = d["time_by_region_s"], d["profile"]
    err = "-" if d["simulator_error"] is None else f"{d['simulator_error'] * 100:.1f}%"
    ratio = "-" if d["profiled_over_iteration"] is None else f"{d['profiled_over_iteration']:.2f}"
    if not d["measured_peak_bytes"]:  # a profile carried over a rewrite: times only
        peak = ("peak (meas.)  - (not measured since the graph changed; node times carried over; "
                "acir-run --measure measures it)")
    else:
        peak = (f"peak (meas.)  {mib(d['measured_peak_bytes'])} at {_describe_node(d['measured_peak_node'])}; "
                f"simulator error {err}")
    return [peak,
            f"time          forward {ms(t['FORWARD'])}, backward {ms(t['BACKWARD'])}, "
            f"optimizer {ms(t['OPTIMIZER'])} (sum of node medians {ms(d['profiled_time_s'])})",
            f"iteration     {ms(d['iteration_s'])} un-instrumented; node sum / iteration = {ratio} "
            f"({p['device']}, {p['method']}, {p['reps']} reps, malloc: {p['malloc'] or '-'})"]


def _activations(f: Facts) -> dict:
    acts = [s for s in f.liveness.storages if s.activation]
    return {"activations": {"count": len(acts), "bytes": sum(f.storage_bytes.get(s.storage, 0) for s in acts)}}


def _activations_text(d: dict) -> list[str]:
    a = d["activations"]
    return [f"activations   {a['count']} storages kept for the backward, {mib(a['bytes'])} ({a['bytes']:,} bytes)"]


def _plan(f: Facts) -> dict:
    plan = f.module.analyses.get(PLAN)
    if not isinstance(plan, Plan):
        return {"plan": None}
    recomputed = plan.recomputed()
    reasons: dict[str, int] = {}
    for t in plan.tensors:
        if t.decision is Decision.KEEP and t.reason:
            reasons[t.reason] = reasons.get(t.reason, 0) + 1
    return {"plan": {
        "planner": plan.planner, "revision": plan.revision, "stale": plan.revision != f.module.header.revision,
        "rewritten": _rewritten_after(f.module.header.pipeline, plan.planner),
        "budget_bytes": plan.budget_bytes, "predicted_peak_bytes": plan.predicted_peak_bytes,
        "predicted_recompute_s": plan.predicted_recompute_s, "solve_s": plan.solve_s,
        "no_ac_peak_bytes": plan.no_ac_peak_bytes, "floor_bytes": plan.floor_bytes,
        "tensors": len(plan.tensors), "recomputed": len(recomputed),
        "recomputed_bytes": sum(f.storage_bytes.get(t.storage, 0) for t in recomputed),
        "kept_for_reason": {"count": sum(reasons.values()), "by_reason": dict(sorted(reasons.items()))},
        "optimality_gap": None if plan.optimality_gap < 0 else plan.optimality_gap}}


def _rewritten_after(pipeline: list[str], planner: str) -> bool:
    """Did a ``rewrite`` run after the pass that made the plan?"""
    last = max((k for k, spec in enumerate(pipeline) if spec == planner), default=None)
    return last is not None and "rewrite" in pipeline[last + 1:]


def _pct(part: float, whole: float | None) -> str:
    return "-" if not whole else f"{part / whole * 100:.1f}%"


def _plan_text(d: dict) -> list[str]:
    p = d["plan"]
    if p is None:
        return ["plan          - (no plan: a planner pass adds one, e.g. acir-opt -p 'liveness,mutwo{budget=60%}')"]
    stale = (f" (stale: made at revision {p['revision']}, the graph is at revision {d['revision']})"
             if p["stale"] else "")
    if p["stale"] and p["rewritten"]:
        stale = (f" (realised by the rewrite: {d['recompute_nodes']} recompute nodes; simulated peak now "
                 f"{mib(d['simulated_peak_bytes'])})")
    peak, budget, no_ac = p["predicted_peak_bytes"], p["budget_bytes"], p["no_ac_peak_bytes"]
    fits = "within" if peak <= budget else "OVER"
    gap = "" if p["optimality_gap"] is None else f", optimality gap {p['optimality_gap'] * 100:.2f}%"
    added = ms(p["predicted_recompute_s"])
    if d.get("iteration_s"):
        added += f" ({_pct(p['predicted_recompute_s'], d['iteration_s'])} of the {ms(d['iteration_s'])} iteration)"
    kept = p["kept_for_reason"]
    lines = [f"plan          {p['planner'] or '?'}{stale}; solved in {p['solve_s']:.3f} s{gap}",
             f"  budget      {mib(budget)} ({budget:,} bytes); floor {mib(p['floor_bytes'])}",
             f"  peak        {mib(peak)} ({peak:,} bytes) predicted, {fits} the budget; no-AC peak {mib(no_ac)}, "
             f"{_pct(no_ac - peak, no_ac)} saved",
             f"  added time  {added}",
             f"  recomputed  {p['recomputed']} of {p['tensors']} activations, {mib(p['recomputed_bytes'])} "
             f"({p['recomputed_bytes']:,} bytes)"]
    if kept["count"]:
        why = ", ".join(f"{r} {n}" for r, n in kept["by_reason"].items())
        lines.append(f"  kept        {kept['count']} must stay: {why}")
    return lines


def _communication(f: Facts) -> dict:
    """Each collective of a data-parallel step: bytes, and (profiled) the launch and the wait."""
    g = f.graph
    run = f.profile.run_s() if f.profile is not None else {}
    waits = {n.args[0].id: n for n in g.nodes
             if n.op == "_c10d_functional.wait_tensor.default" and n.args and isinstance(n.args[0], ValueRef)}
    rows = []
    for n in g.nodes:
        if not n.op.startswith("_c10d_functional.") or n.op.endswith("wait_tensor.default"):
            continue
        out = n.output_ids()
        wait = waits.get(out[0]) if out else None
        nbytes = f.storage_bytes.get(g.values[n.args[0].id].storage, 0) if isinstance(n.args[0], ValueRef) else 0
        rows.append({"node": n.name, "op": n.op.split(".")[1], "bytes": nbytes,
                     "launch_s": run.get(n.id), "wait_s": run.get(wait.id) if wait is not None else None})
    return {"collectives": rows}


def _communication_text(d: dict) -> list[str]:
    rows = d["collectives"]
    if not rows:
        return []
    reduces = [r for r in rows if r["op"] == "all_reduce_"]
    timed = all(r["launch_s"] is not None for r in rows)
    total = sum((r["launch_s"] or 0) + (r["wait_s"] or 0) for r in rows) if timed else None
    lines = [f"collectives   {len(reduces)} gradient buckets ({mib(sum(r['bytes'] for r in reduces))}), "
             f"{len(rows) - len(reduces)} buffer broadcasts" + (f"; {ms(total)} launched + waited" if timed else "")]
    for r in reduces:
        t = f"  launch {ms(r['launch_s'])}, wait {ms(r['wait_s'])}" if timed else ""
        lines.append(f"  {r['node']:<24}{mib(r['bytes']):>12}{t}")
    return lines


@dataclass(frozen=True)
class Section:
    """A part of the report: JSON keys built from :class:`Facts`, and text describing them."""

    name: str
    build: Callable[[Facts], dict]
    describe: Callable[[dict], list[str]]


SECTIONS: list[Section] = [
    Section("overview", _overview, _overview_text),
    Section("memory", _memory, _memory_text),
    Section("measured", _measured, _measured_text),
    Section("activations", _activations, _activations_text),
    Section("plan", _plan, _plan_text),
    Section("communication", _communication, _communication_text),
]


def report_json(x: Module | Facts) -> dict:
    """The report as one JSON-ready dict, sections in order."""
    f = _facts(x)
    out: dict = {}
    for s in SECTIONS:
        out.update(s.build(f))
    return out


def summary(x: Module | Facts | dict) -> str:
    """The human summary; from the dict of :func:`report_json`, so both always agree."""
    d = x if isinstance(x, dict) else report_json(x)
    lines: list[str] = []
    for s in SECTIONS:
        lines.extend(s.describe(d))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# CSV rows


NODE_COLUMNS = ["rank", "id", "name", "op", "region", "module", "run_s", "alloc_bytes", "freed_bytes",
                "live_bytes_after", "simulated_live_bytes"]
ACTIVATION_COLUMNS = ["storage", "bytes", "defined_rank", "node", "op", "module", "last_fw_use", "first_bw_use",
                      "last_bw_use", "inactive_s", "recompute_chain_s"]


def node_rows(x: Module | Facts) -> list[dict]:
    """One row per node, graph order; measured columns empty when not profiled."""
    f = _facts(x)
    prof = {} if f.profile is None else {p.node: p for p in f.profile.nodes}
    tl = f.liveness.timeline
    rows = []
    for r, n in enumerate(f.graph.nodes):
        p = prof.get(n.id)
        rows.append({"rank": r, "id": n.id, "name": n.name, "op": n.op, "region": n.region.name,
                     "module": n.module, "run_s": "" if p is None else p.run_s,
                     "alloc_bytes": "" if p is None else p.alloc_bytes,
                     "freed_bytes": "" if p is None else p.freed_bytes,
                     "live_bytes_after": "" if p is None else p.live_bytes,
                     "simulated_live_bytes": tl[r] if r < len(tl) else ""})
    return rows


def recompute_chain_s(graph: Graph, rank: int, stop_storages: set[int], run_s: dict[int, float],
                      producers: dict[int, Node] | None = None) -> float:
    """Run time of recomputing what node ``graph.nodes[rank]`` produced from kept values.

    That is its own run time plus, transitively, that of the producers of its inputs whose
    storages are not in ``stop_storages`` (activations, kept for the backward, and graph
    inputs, always there); each node counts once. Pass ``producers`` (``graph.producers()``)
    when calling it for many nodes.
    """
    producers = graph.producers() if producers is None else producers
    start = graph.nodes[rank]
    seen = {start.id}
    total = run_s.get(start.id, 0.0)
    stack = list(start.input_ids())
    while stack:
        v = graph.values.get(stack.pop())
        if v is None or v.storage in stop_storages:
            continue
        p = producers.get(v.id)
        if p is None or p.id in seen:
            continue
        seen.add(p.id)
        total += run_s.get(p.id, 0.0)
        stack.extend(p.input_ids())
    return total


def activation_rows(x: Module | Facts) -> list[dict]:
    """One row per activation storage, by definition rank; times empty when not profiled."""
    f = _facts(x)
    g, producers = f.graph, f.graph.producers()
    run_s = None if f.profile is None else f.profile.run_s()
    acts = sorted((s for s in f.liveness.storages if s.activation), key=lambda s: (s.defined, s.storage))
    stops = {s.storage for s in acts} | {g.values[i.value].storage for i in g.inputs if i.value in g.values}
    rows = []
    for s in acts:
        n = g.nodes[s.defined] if 0 <= s.defined < len(g.nodes) else None
        rows.append({"storage": s.storage, "bytes": f.storage_bytes.get(s.storage, 0), "defined_rank": s.defined,
                     "node": n.name if n else "", "op": n.op if n else "", "module": n.module if n else "",
                     "last_fw_use": s.last_fw_use, "first_bw_use": s.first_bw_use, "last_bw_use": s.last_bw_use,
                     "inactive_s": s.inactive_s if f.liveness.used_profile else "",
                     "recompute_chain_s": recompute_chain_s(g, s.defined, stops, run_s, producers)
                     if run_s is not None and n is not None else ""})
    return rows


__all__ = ["ACTIVATION_COLUMNS", "NODE_COLUMNS", "PERSISTENT_ROLES", "ROLE_ORDER", "SECTIONS", "Facts", "Section",
           "StatsError", "activation_rows", "gather", "mib", "ms", "node_rows", "recompute_chain_s", "report_json",
           "summary"]
