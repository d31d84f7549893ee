"""The Pareto sweep: every planner across budgets, from the floor to the no-AC peak.

For each budget between the smallest peak recomputation can reach and the peak without
it, each budgeted planner (``mutwo``, ``optimal``) solves the same planning problem
(:mod:`acir.analysis.candidates`) and the shared evaluator predicts the peak and the added
recompute time; the budget-free baselines (``keep-all``, ``recompute-all``,
``chen-sqrt``) are one point each. So the curves compare planners on equal terms: at
equal predicted peak, less added time is better. All figures are predictions of the
simulator, not measurements.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from acir.analysis.problem import Problem, evaluate

BUDGETED = ("mutwo", "optimal")
BASELINES = ("keep-all", "recompute-all", "chen-sqrt")
PLANNERS = BUDGETED + BASELINES


@dataclass(frozen=True)
class SweepPoint:
    planner: str
    budget_bytes: int           # 0 for the budget-free baselines
    feasible: bool
    predicted_peak_bytes: int
    predicted_recompute_s: float
    recomputed: int
    solve_s: float


def _baseline(name: str, p: Problem) -> tuple[int, ...]:
    if name == "keep-all":
        return ()
    if name == "recompute-all":
        from acir.passes.recompute_all import recompute_all

        return recompute_all(p)
    from acir.passes.chen_sqrt import chen_sqrt

    return chen_sqrt(p)


def _budgeted(name: str, p: Problem, budget: int, time_limit_s: float) -> tuple[tuple[int, ...], bool]:
    if name == "mutwo":
        from acir.passes.mutwo.solver import solve

        s = solve(p, budget)
        return tuple(s.chosen), s.feasible
    from acir.passes.optimal import warm_starts
    from acir.passes.optimal.solver import solve as optimal

    s = optimal(p, budget, warm_starts(p, budget), time_limit_s=time_limit_s)
    return tuple(s.chosen), s.feasible


def budgets(p: Problem, points: int) -> list[int]:
    """``points`` budgets evenly from the lowest reachable peak to the no-AC peak (both included)."""
    from acir.passes.planner_base import lowest_reachable_peak

    lo, hi = lowest_reachable_peak(p), p.no_ac_peak
    if points < 2 or lo >= hi:
        return [hi]
    return [round(lo + (hi - lo) * k / (points - 1)) for k in range(points)]


def sweep(p: Problem, planners: tuple[str, ...] = PLANNERS, points: int = 8, time_limit_s: float = 30.0,
          progress=None) -> list[SweepPoint]:
    out: list[SweepPoint] = []
    grid = budgets(p, points)
    for name in planners:
        todo = grid if name in BUDGETED else [0]
        for b in todo:
            if progress:
                progress(f"{name} at {b} bytes" if b else name)
            t0 = time.perf_counter()
            if name in BUDGETED:
                chosen, feasible = _budgeted(name, p, b, time_limit_s)
            else:
                chosen, feasible = _baseline(name, p), True
            solve_s = time.perf_counter() - t0
            ev = evaluate(p, chosen)
            out.append(SweepPoint(name, b, feasible and (not b or ev.peak <= b), ev.peak, ev.recompute_s,
                                  len(chosen), solve_s))
    return out


def pareto_plot(points: list[SweepPoint], path: str, title: str, no_ac_peak: int) -> None:
    from matplotlib.figure import Figure

    mib = 2 ** 20
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for name in dict.fromkeys(pt.planner for pt in points):
        pts = sorted((pt for pt in points if pt.planner == name and pt.feasible), key=lambda q: q.predicted_peak_bytes)
        if not pts:
            continue
        xs = [q.predicted_peak_bytes / mib for q in pts]
        ys = [q.predicted_recompute_s for q in pts]
        style = "-o" if name in BUDGETED else "s"
        ax.plot(xs, ys, style, label=name, markersize=5)
    ax.axvline(no_ac_peak / mib, color="#888888", linestyle=":", linewidth=0.8)
    ax.set_xlabel("predicted peak (MiB)")
    ax.set_ylabel("predicted added recompute time (s)")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path)
