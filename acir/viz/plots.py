"""The memory breakdown plot: simulated live bytes per node, stacked by role.

Why this picture: activation checkpointing can only shrink the activation band, so the
plot shows at a glance how much of the peak is persistent (parameters, buffers, optimizer
state, inputs), how much is activations and gradients, and where in the iteration the
peak sits relative to the forward/backward/optimizer boundaries. When the artifact is
profiled, the measured live bytes are drawn over it, which is how a simulator error shows.

Rendering uses a bare :class:`matplotlib.figure.Figure` (Agg, SVG or PDF canvas by file
extension): no pyplot state, no display. Timelines longer than :data:`MAX_POINTS` are
downsampled by keeping, in each bucket of ranks, the rank with the most live bytes, so
the peak always survives and an 11k-node step renders in about a second.
"""

from __future__ import annotations

import os

from acir.errors import StatsError
from acir.ir.graph import Module, Region, Role
from acir.viz.report import ROLE_ORDER, Facts, MiB, gather

FORMATS = ("png", "svg", "pdf")
MAX_POINTS = 4000

#: One colour per role, the same in every plot; stacked bottom-up in :data:`ROLE_ORDER`.
ROLE_COLOURS = {
    Role.PARAM: "#4c72b0", Role.BUFFER: "#8172b3", Role.OPT_STATE: "#937860", Role.INPUT: "#64b5cd",
    Role.ACTIVATION: "#dd8452", Role.GRAD: "#55a868", Role.COMM_BUFFER: "#da8bc3", Role.OTHER: "#b0b0b0",
}
assert set(ROLE_COLOURS) == set(ROLE_ORDER)


def plot_format(path: str) -> str:
    """The output format by the file's extension; a :class:`StatsError` for any other."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise StatsError(f"cannot plot to {path!r}: unknown extension {('.' + ext) if ext else '(none)'}; "
                         "use .png, .svg or .pdf")
    return ext


def bucket_ranks(totals: list[int], max_points: int = MAX_POINTS) -> list[int]:
    """Ranks to draw: all of them, or per bucket of ranks the one with the most bytes."""
    n = len(totals)
    if n <= max_points:
        return list(range(n))
    width = -(-n // max_points)
    out = []
    for start in range(0, n, width):
        stop = min(start + width, n)
        out.append(max(range(start, stop), key=totals.__getitem__))
    return out


def _boundaries(module: Module) -> list[tuple[float, str]]:
    """Where the backward and the optimizer begin, as x positions between ranks.

    When the optimizer is interleaved into the backward (``interleave-optimizer``), there is
    one boundary, labelled so, rather than two lines on top of each other.
    """
    regions = [n.region for n in module.graph.nodes]
    if Region.BACKWARD not in regions:
        return []
    start = regions.index(Region.BACKWARD)
    last_bw = len(regions) - 1 - regions[::-1].index(Region.BACKWARD)
    first_opt = regions.index(Region.OPTIMIZER) if Region.OPTIMIZER in regions else None
    if first_opt is not None and first_opt < last_bw:
        return [(start - 0.5, "backward + optimizer (interleaved)")]
    out = [(start - 0.5, "backward")]
    if first_opt is not None:
        out.append((first_opt - 0.5, "optimizer"))
    return out


def memory_plot(module: Module | Facts, path: str, title: str | None = None) -> None:
    """Write the stacked memory timeline of ``module`` to ``path`` (.png, .svg or .pdf)."""
    fmt = plot_format(path)
    facts = module if isinstance(module, Facts) else gather(module)
    m = facts.module
    tl = facts.timeline()
    totals = list(tl.live)
    ranks = bucket_ranks(totals)

    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5), layout="constrained")
    ax = fig.subplots()
    roles = [r for r in ROLE_ORDER if any(tl.by_role.get(r, ()))]
    if ranks and roles:  # steps: a node's bytes hold for its whole slot
        ax.stackplot(ranks, [[tl.by_role[r][i] / MiB for i in ranks] for r in roles], step="mid",
                     labels=[r.name for r in roles], colors=[ROLE_COLOURS[r] for r in roles], linewidth=0)
    measured: list[int] = []
    if facts.profile is not None and ranks:
        measured = [0] * len(totals)
        rank = facts.rank
        for p in facts.profile.nodes:
            if p.node in rank:
                measured[rank[p.node]] = p.peak_bytes
        xs = bucket_ranks(measured)
        ax.plot(xs, [measured[i] / MiB for i in xs], color="black", linewidth=0.8,
                drawstyle="steps-mid", label="measured")
    top = max(max(totals, default=0), max(measured, default=0)) / MiB
    for x, label in _boundaries(m):
        ax.axvline(x, color="#444444", linestyle="--", linewidth=0.8)
        ax.text(x, top * 1.02 if top else 1, f" {label}", va="bottom", ha="left", fontsize=8, color="#444444")
    if totals:
        pr = tl.peak_rank if 0 <= tl.peak_rank < len(totals) else max(range(len(totals)), key=totals.__getitem__)
        peak = totals[pr] / MiB
        node = m.graph.nodes[pr]
        ax.plot([pr], [peak], marker="v", color="#c44e52", markersize=8, linestyle="none")
        exact = f" ({totals[pr]:,} B)" if totals[pr] < MiB else ""
        right = pr > len(totals) / 2  # keep the label inside the axes
        ax.annotate(f"peak {peak:.1f} MiB{exact}\n{node.name} (rank {pr})", (pr, peak), xytext=(-8 if right else 8, -4),
                    textcoords="offset points", fontsize=8, va="top", ha="right" if right else "left")
    prov = m.header.provenance
    ax.set_title(title or f"{prov.model or 'model'}, batch {prov.batch_size}: simulated memory by role")
    ax.set_xlabel("node (rank in graph order)")
    ax.set_ylabel("live memory (MiB)")
    ax.set_xlim(-0.5, max(len(totals) - 0.5, 0.5))
    ax.set_ylim(0, top * 1.12 if top else 1)
    ax.margins(x=0)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # top of the stack first, as drawn
        ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    try:
        fig.savefig(path, format=fmt, dpi=110)
    except OSError as e:
        raise StatsError(f"cannot write {path}: {e.strerror or e}") from None


__all__ = ["FORMATS", "MAX_POINTS", "ROLE_COLOURS", "bucket_ranks", "memory_plot", "plot_format"]
