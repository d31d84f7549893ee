"""The memory timeline with activation checkpointing: before and after, against the budget.

``acir-stats --plot`` draws one timeline; this picture answers the planner's question -
what does the plan do to memory? The stack is the liveness simulator's live bytes per node
split by role (the colours of :mod:`acir.viz.plots`). On top of it:

* with a ``plan`` on a graph not yet rewritten, the *predicted* timeline with AC: the
  no-AC timeline minus each recomputed activation's bytes over its idle window, from the
  first rank after its last forward use to its first backward use (the model of
  :mod:`acir.analysis.problem`, built by :mod:`acir.analysis.candidates`), and the budget line. The
  plan's predicted peak can sit a little above that line: it also counts the transient
  spike of each recomputation, which the line does not draw;
* on a rewritten graph (it has recompute copies, ``Node.recompute_of``) the stack already
  *is* the AC timeline; ``against`` (the artifact before the rewrite) overlays the no-AC
  timeline, node by node (matched by id and op, the rewrite keeps both for the nodes it
  does not add), and otherwise the plan's no-AC peak is a reference line. The budget line
  is drawn whenever a plan block is there, stale or not (the rewrite makes it stale).

Long timelines are downsampled as in :mod:`acir.viz.plots` (per bucket of ranks, the one with
the most bytes), so the peaks survive and an 11k-node step draws in about a second.
"""

from __future__ import annotations

from acir.analysis.simulator import simulate
from acir.errors import VizError, VizUsageError
from acir.ir.analyses import LIVENESS, PLAN, Decision, Liveness, Plan
from acir.ir.graph import Graph, Module, Region
from acir.viz.common import PLOT_FORMATS, output_format
from acir.viz.plots import ROLE_COLOURS, bucket_ranks
from acir.viz.report import ROLE_ORDER, MiB

__all__ = ["align", "memory_figure", "predicted_ac", "require_liveness"]


def require_liveness(module: Module, what: str = "--memory", name: str = "FILE") -> Liveness:
    """The artifact's fresh liveness block, or a :class:`VizUsageError` that says how to add it."""
    live = module.analyses.get(LIVENESS)
    fix = f"e.g. acir-opt {name} -p liveness | acir-viz --memory -o mem.png"
    if not isinstance(live, Liveness):
        raise VizUsageError(f"{what} needs a liveness analysis, and {name} has none; add it, {fix}")
    if live.revision != module.header.revision:
        raise VizUsageError(f"{what} needs a fresh liveness analysis, and {name}'s is stale (revision "
                            f"{live.revision}, the graph is at revision {module.header.revision}); re-run it, {fix}")
    return live


def predicted_ac(graph: Graph, liveness: Liveness, plan: Plan, base: list[int]) -> list[int]:
    """``base`` (the no-AC live bytes per rank) minus each RECOMPUTE activation's bytes over its
    idle window ``[max(last forward use, definition) + 1, first backward use)``."""
    n = len(base)
    nbytes = {s.id: s.nbytes for s in graph.storages}
    lives = {life.storage: life for life in liveness.storages}
    delta = [0] * (n + 1)
    for t in plan.tensors:
        life = lives.get(t.storage)
        if t.decision is not Decision.RECOMPUTE or life is None or not life.activation:
            continue
        lo, hi = max(life.last_fw_use, life.defined) + 1, min(life.first_bw_use, n)
        if 0 <= lo < hi:
            b = nbytes.get(t.storage, 0)
            delta[lo] += b
            delta[hi] -= b
    out, saved = [], 0
    for r in range(n):
        saved += delta[r]
        out.append(base[r] - saved)
    return out


def align(graph: Graph, other: Graph, name: str = "OTHER") -> list[int]:
    """For each rank of ``graph``, the rank of the same node in ``other`` (-1 for a node it
    lacks, such as a recompute copy); nodes match by id and op."""
    where = {(n.id, n.op): r for r, n in enumerate(other.nodes)}
    out = [where.get((n.id, n.op), -1) for n in graph.nodes]
    matched = sum(r >= 0 for r in out)
    if other.nodes and matched < len(other.nodes) // 2:
        raise VizUsageError(f"--against {name}: only {matched} of its {len(other.nodes)} nodes are in this graph "
                            "(matched by id and op); give the artifact from just before the rewrite")
    return out


def _region_lines(graph: Graph) -> list[tuple[float, str]]:
    """Where the backward and the optimizer begin (one line when they are interleaved)."""
    regions = [n.region for n in graph.nodes]
    if Region.BACKWARD not in regions:
        return []
    bw = regions.index(Region.BACKWARD)
    last_bw = len(regions) - 1 - regions[::-1].index(Region.BACKWARD)
    opt = regions.index(Region.OPTIMIZER) if Region.OPTIMIZER in regions else None
    if opt is not None and opt < last_bw:
        return [(bw - 0.5, "backward + optimizer (interleaved)")]
    return [(bw - 0.5, "backward")] + ([(opt - 0.5, "optimizer")] if opt is not None else [])


def memory_figure(module: Module, path: str, against: Module | None = None, against_name: str = "OTHER",
                  title: str | None = None) -> list[str]:
    """Write the memory picture of ``module`` (see the module docstring); returns notes for people."""
    fmt = output_format(path, PLOT_FORMATS, "the memory plot")
    g = module.graph
    live = require_liveness(module)
    tl = simulate(g, live.storages)
    totals = list(tl.live)
    n = len(totals)
    plan = module.analyses.get(PLAN)
    plan = plan if isinstance(plan, Plan) else None
    rewritten = any(x.recompute_of is not None for x in g.nodes)
    notes: list[str] = []
    lines: list[tuple[list[int], str, dict]] = []   # full-length series drawn as lines
    hlines: list[tuple[int, str, dict]] = []
    if against is not None and not rewritten:
        raise VizUsageError("--against is for a rewritten graph (one with recompute copies), to compare with the "
                            "artifact before the rewrite; this graph has no recompute copies")
    if not rewritten and plan is not None:
        if plan.revision != module.header.revision:
            notes.append(f"the plan is stale (revision {plan.revision}, graph revision {module.header.revision}); "
                         "its prediction is drawn anyway")
        ac = predicted_ac(g, live, plan, totals)
        lines.append((ac, f"predicted with AC ({plan.planner}; plan's peak {plan.predicted_peak_bytes / MiB:.1f} MiB)",
                      {"color": "#c44e52", "linewidth": 1.2}))
    if rewritten and against is not None:
        other = simulate(against.graph).live
        ranks = align(g, against.graph, against_name)
        no_ac, last = [], other[0] if other else 0
        for r in ranks:  # a recompute copy holds the value of the node before it
            last = other[r] if r >= 0 else last
            no_ac.append(last)
        lines.append((no_ac, f"without AC ({against_name}; peak {max(other, default=0) / MiB:.1f} MiB)",
                      {"color": "#333333", "linewidth": 1.0}))
    elif rewritten and plan is not None:
        hlines.append((plan.no_ac_peak_bytes, f"no-AC peak (plan) {plan.no_ac_peak_bytes / MiB:.1f} MiB",
                       {"color": "#333333", "linestyle": ":"}))
    if plan is not None:
        hlines.append((plan.budget_bytes, f"budget {plan.budget_bytes / MiB:.1f} MiB",
                       {"color": "#c44e52", "linestyle": "--"}))
    elif rewritten and against is None:
        notes.append("no plan block and no --against: drawing the AC timeline alone")

    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5), layout="constrained")
    ax = fig.subplots()
    ranks = bucket_ranks(totals)
    roles = [r for r in ROLE_ORDER if any(tl.by_role.get(r, ()))]
    if ranks and roles:
        ax.stackplot(ranks, [[tl.by_role[r][i] / MiB for i in ranks] for r in roles], step="mid",
                     labels=[r.name for r in roles], colors=[ROLE_COLOURS[r] for r in roles], linewidth=0)
    top = max(totals, default=0)
    for series, label, style in lines:
        xs = bucket_ranks(series)
        ax.plot(xs, [series[i] / MiB for i in xs], drawstyle="steps-mid", label=label, **style)
        top = max(top, max(series, default=0))
    for y, label, style in hlines:
        ax.axhline(y / MiB, label=label, linewidth=1.0, **style)
        top = max(top, y)
    top /= MiB
    for x, label in _region_lines(g):
        ax.axvline(x, color="#444444", linestyle="--", linewidth=0.8)
        ax.text(x, top * 1.02 if top else 1, f" {label}", va="bottom", ha="left", fontsize=8, color="#444444")
    if totals:
        pr = tl.peak_rank
        ax.plot([pr], [totals[pr] / MiB], marker="v", color="#c44e52", markersize=8, linestyle="none")
        right = pr > n / 2
        ax.annotate(f"peak {totals[pr] / MiB:.1f} MiB\n{g.nodes[pr].name} (rank {pr})", (pr, totals[pr] / MiB),
                    xytext=(-8 if right else 8, -4), textcoords="offset points", fontsize=8, va="top",
                    ha="right" if right else "left")
    prov = module.header.provenance
    what = "with AC (rewritten graph)" if rewritten else "without AC" + (", and the plan's prediction" if plan else "")
    ax.set_title(title or f"{prov.model or 'model'}, batch {prov.batch_size}: simulated memory by role, {what}")
    ax.set_xlabel("node (rank in graph order)")
    ax.set_ylabel("live memory (MiB)")
    ax.set_xlim(-0.5, max(n - 0.5, 0.5))
    ax.set_ylim(0, top * 1.12 if top else 1)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    try:
        fig.savefig(path, format=fmt, dpi=110)
    except OSError as e:
        raise VizError(f"cannot write {path}: {e.strerror or e}") from None
    return notes
