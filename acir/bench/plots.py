"""The figures of ``acir-bench``: memory and latency against batch size, and the trade-off.

Per model, peak memory as grouped bars (one group per batch size, one bar per
configuration, the change against no AC written on each bar) and median iteration latency
as lines (the overhead against no AC at each point); for all models, a scatter of each
configuration's peak change against its latency change, so that the trade-offs compare at
a glance: down and to the left is better. Failed configurations are marked where their bar
would be. Bare :class:`matplotlib.figure.Figure` objects, no pyplot state.
"""

from __future__ import annotations

import os
import re

from acir.bench.results import Result

_FAMILY_COLOURS = {
    "eager": ["#8c8c8c"], "noac": ["#303030"],
    "acir-mutwo": ["#1f5fa8", "#4a90d9", "#8fbfee", "#0b3b70"],
    "acir-optimal": ["#1e7b3a", "#4cb26a", "#98d8a8", "#0c4d22"],
    "checkpoint": ["#e07b18", "#f5b46c"],
    "torch-budget": ["#b2253a", "#e0707f", "#7a1f8c", "#c58ad6"],
}
_MARKERS = "osD^vP*Xh<>p"


def _configs(results: list[Result]) -> list[Result]:
    """One Result per configuration name, in first-seen order (the run's order)."""
    seen: dict[str, Result] = {}
    for r in results:
        seen.setdefault(r.config, r)
    return list(seen.values())


def colours(results: list[Result]) -> dict[str, str]:
    """A colour per configuration: a hue per family, shades within it."""
    out, used = {}, {}
    for r in _configs(results):
        pal = _FAMILY_COLOURS.get(r.family, ["#555555"])
        i = used.get(r.family, 0)
        used[r.family] = i + 1
        out[r.config] = pal[i % len(pal)]
    return out


def _label(r: Result) -> str:
    return "no AC (acir)" if r.config == "noac" else r.config


def _subtitle(results: list[Result]) -> str:
    r = results[0]
    how = "live tensor storages" if r.device == "cpu" else "max_memory_allocated"
    return (f"{r.device}, malloc {r.malloc}; peak: {how}, params and optimizer state included;\n"
            f"latency: median of {r.iters}, configurations interleaved")


def _mib(b: int) -> str:
    mib = b / 2**20
    return f"{mib:.0f} MiB" if mib >= 100 else f"{mib:.3g} MiB"


def memory_plot(results: list[Result], path: str, title: str) -> None:
    from matplotlib.figure import Figure

    batches = sorted({r.batch_size for r in results})
    configs = _configs(results)
    col = colours(results)
    by = {(r.config, r.batch_size): r for r in results}
    fig = Figure(figsize=(max(8.0, 1.1 * len(batches) * len(configs) * 0.45 + 3), 5.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(configs))
    top = max((r.peak_bytes for r in results if r.ok), default=1) / 2**20
    labelled: set[str] = set()
    for j, c in enumerate(configs):
        for i, b in enumerate(batches):
            r = by.get((c.config, b))
            if r is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            if not r.ok:
                ax.text(x, top * 0.02, f"{c.config}: failed", rotation=90, ha="center", va="bottom", fontsize=7,
                        color="#b00000")
                continue
            mib = r.peak_bytes / 2**20
            ax.bar(x, mib, width * 0.92, color=col[c.config], label=None if c.config in labelled else _label(c))
            labelled.add(c.config)
            text = _mib(r.peak_bytes) if r.config == "noac" or r.peak_change is None else f"{100 * r.peak_change:+.0f}%"
            ax.text(x, mib + top * 0.01, text, rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("peak memory (MiB)")
    ax.set_ylim(0, top * 1.3)
    ax.set_title(f"{title}; on each bar: change vs no AC\n{_subtitle(results)}", fontsize=9)
    ax.legend(fontsize=7, ncols=min(4, len(configs)), loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)


def latency_plot(results: list[Result], path: str, title: str) -> None:
    from matplotlib.figure import Figure

    batches = sorted({r.batch_size for r in results})
    col = colours(results)
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for k, c in enumerate(_configs(results)):
        pts = sorted((batches.index(r.batch_size), r) for r in results if r.config == c.config and r.ok)
        if not pts:
            continue
        xs = [i for i, _ in pts]
        ys = [r.latency_s * 1e3 for _, r in pts]
        ax.plot(xs, ys, marker=_MARKERS[k % len(_MARKERS)], color=col[c.config], label=_label(c), lw=1.4, ms=5)
        if c.config != "noac":
            for x, (_, r) in zip(xs, pts):
                if r.latency_change is not None:
                    ax.annotate(f"{100 * r.latency_change:+.0f}%", (x, r.latency_s * 1e3), textcoords="offset points",
                                xytext=(5, 2), fontsize=6, color=col[c.config])
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("iteration latency (ms, median)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{title}; at each point: overhead vs no AC\n{_subtitle(results)}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def scatter_plot(results: list[Result], path: str) -> None:
    """Peak change vs latency change against no AC, one panel per model."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    models = list(dict.fromkeys(r.model for r in results))
    col = colours(results)
    fig = Figure(figsize=(6.5 * len(models), 5.5), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        rs = [r for r in results if r.model == model]
        batches = sorted({r.batch_size for r in rs})
        for r in rs:
            if not r.ok or r.peak_change is None or r.latency_change is None:
                continue
            m = _MARKERS[batches.index(r.batch_size) % len(_MARKERS)]
            ax.scatter(100 * r.peak_change, 100 * r.latency_change, color=col[r.config], marker=m, s=36,
                       edgecolors="black" if r.match == "no" else "none", linewidths=0.8)
        ax.axhline(0, color="#999999", lw=0.8)
        ax.axvline(0, color="#999999", lw=0.8)
        ax.set_xlabel("peak memory vs no AC (%)")
        ax.set_ylabel("iteration latency vs no AC (%)")
        ax.set_title(_name(model), fontsize=10)
        ax.grid(alpha=0.3)
        shown = [c for c in _configs(rs) if any(r.ok and r.config == c.config for r in rs)]
        handles = [Line2D([], [], ls="", marker="o", color=col[c.config], label=_label(c)) for c in shown]
        handles += [Line2D([], [], ls="", marker=_MARKERS[i % len(_MARKERS)], color="#555555", label=f"batch {b}")
                    for i, b in enumerate(batches)]
        ax.legend(handles=handles, fontsize=7)
    fig.suptitle(f"trade-off: lower left is better (black edge: not bit-identical to no AC)\n{_subtitle(results)}",
                 fontsize=9)
    fig.savefig(path, dpi=110)


def _name(model: str) -> str:
    """A zoo name as it is, a user's ``path/to/file.py:make`` as ``file.py:make``."""
    return os.path.basename(model) if ":" in model else model


def _slug(model: str) -> str:
    base = os.path.basename(model.split(":")[0]).removesuffix(".py") if ":" in model else model
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)


def write_plots(results: list[Result], outdir: str) -> list[str]:
    """memory.png and latency.png per model (with the model's name when there are several), scatter.png."""
    os.makedirs(outdir, exist_ok=True)
    models = list(dict.fromkeys(r.model for r in results))
    paths = []
    for model in models:
        rs = [r for r in results if r.model == model]
        suffix = "" if len(models) == 1 else f"-{_slug(model)}"
        sizes = rs[0]
        what = _name(model) + (f", seq {sizes.seq_len}" if sizes.seq_len else "") + \
               (f", {sizes.image_size}x{sizes.image_size}" if sizes.image_size else "")
        for kind, fn in (("memory", memory_plot), ("latency", latency_plot)):
            p = os.path.join(outdir, f"{kind}{suffix}.png")
            fn(rs, p, f"{what}: {'peak memory' if kind == 'memory' else 'iteration latency'} vs batch size")
            paths.append(p)
    p = os.path.join(outdir, "scatter.png")
    scatter_plot(results, p)
    paths.append(p)
    return paths
