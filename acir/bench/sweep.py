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

import csv
import io
import time
from dataclasses import dataclass

from acir.analysis.problem import Problem, evaluate
from acir.errors import VizError, VizUsageError

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
    from acir.passes.mutwo.solver import reachable_floor

    lo, hi = reachable_floor(p), p.no_ac_peak
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


# ---------------------------------------------------------------------------
# The Pareto picture, from the sweep acir-sweep writes


SWEEP_COLUMNS = ("planner", "budget_bytes", "feasible", "predicted_peak_bytes", "predicted_recompute_s",
                 "recomputed", "solve_s")


def is_sweep_csv(data: bytes) -> bool:
    """Does ``data`` start with the header line of ``acir-sweep``'s CSV?"""
    return data.lstrip().startswith(SWEEP_COLUMNS[0].encode() + b"," + SWEEP_COLUMNS[1].encode())


def read_sweep_csv(data: bytes, source: str):
    """The sweep points in ``acir-sweep``'s CSV (``data``, read from ``source``)."""
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise VizUsageError(f"{source}: not a sweep CSV ({e})") from None
    if not rows or any(c not in rows[0] for c in SWEEP_COLUMNS):
        raise VizUsageError(f"{source}: not a sweep CSV with rows; expected the columns {', '.join(SWEEP_COLUMNS)} "
                            "(acir-sweep FILE -o sweep.csv writes one)")
    out = []
    for k, r in enumerate(rows, start=2):
        try:
            out.append(SweepPoint(r["planner"], int(r["budget_bytes"]), r["feasible"].strip() in ("1", "True", "true"),
                                  int(r["predicted_peak_bytes"]), float(r["predicted_recompute_s"]),
                                  int(r["recomputed"]), float(r["solve_s"])))
        except (TypeError, ValueError) as e:
            raise VizUsageError(f"{source}:{k}: bad sweep row ({e})") from None
    return out


def pareto(points, path: str, title: str | None = None) -> None:
    """Draw the sweep with :func:`pareto_plot` (the picture ``acir-sweep --plot`` makes).

    The CSV does not carry the no-AC peak: keep-all's predicted peak is exactly that, and
    without a keep-all row the largest budget is (the sweep's budgets end at it).
    """
    keep = [p.predicted_peak_bytes for p in points if p.planner == "keep-all"]
    no_ac = keep[0] if keep else max((p.budget_bytes for p in points), default=0)
    if not no_ac:
        no_ac = max(p.predicted_peak_bytes for p in points)
    try:
        pareto_plot(points, path, title or "planners: predicted peak vs added recompute time", no_ac)
    except OSError as e:
        raise VizError(f"cannot write {path}: {e.strerror or e}") from None
