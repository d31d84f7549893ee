"""The least-recompute plan within a memory budget, as a mixed-integer program (HiGHS).

The heuristics (μ-TWO, the baselines) need a yardstick: how much recompute time does a
budget *really* cost? This module answers it for a :class:`~acir.analysis.problem.Problem` —
no IR, no torch, plain arrays in and a set of candidate indices out, as PyTorch's
``knapsack.py`` does — and judges its answer with the evaluator every planner is judged by
(:func:`acir.analysis.problem.evaluate`), so "optimal" means optimal under that model.
This module builds the model and runs the refinement loop; handing a model to HiGHS and
reading its answer back is :mod:`acir.passes.optimal.highs`.

The formulation
---------------

* ``x_i`` ∈ {0, 1} for each allowed candidate (recompute it); disallowed candidates have
  no variable (they are kept).
* **Ranks.** Recomputing ``i`` frees ``sizes[i]`` over its idle window ``[lo_i, hi_i)``.
  The bytes a plan saves are the same over each *segment* of ranks between two window
  ends, so one continuous ``S_c`` per segment carries them, chained by
  ``S_c = S_{c-1} + sizes of windows opening - sizes of windows closing``; every rank ``r``
  of the segment with ``base_live[r] > budget`` asks ``S_c >= base_live[r] - budget``,
  which is a bound on ``S_c`` (one per segment, the largest). Written this way each row
  has a handful of entries instead of one per covering candidate.
* **Recomputation points.** Before node ``h`` the evaluator recomputes the chosen
  candidates first used there (the *group*) and, transitively, their chosen sources that
  are dead at ``h`` (still in their own idle window), each once. ``w_hj`` says that
  candidate ``j`` is recomputed at ``h``: for a group member it is ``x_j`` itself; for a
  dead source it is ``x_j AND (some member at h reads j)``, linearised by one row per
  source edge ``i -> j``: ``w_hj >= x_j + w_hi - 1`` (``w`` continuous in [0, 1]; both
  the objective and the memory rows push it down, so it sits at the indicator).
* **Spikes.** The spike at ``h`` is ``after[h-1]`` less the savings at ``h-1`` plus every
  tensor recomputed there plus the largest replay's intermediates::

      after[h-1] - S_seg(h-1) + sum(sizes[j] * w_hj) + T_h <= budget,  T_h >= temps[j] * w_hj

* **Objective.** ``min sum(times[j] * w_hj)`` over points and candidates: each candidate's
  own recomputation, and once more at every point where it is a dead source; less, per
  overlap window (a collective in flight, :mod:`acir.analysis.problem`), the time it hides:
  ``y_w`` in ``[0, slack_w]`` with ``y_w <= sum(times[j] * w_hj)`` over the points in the
  window, and ``-y_w`` in the objective. Leaving terms out of a window's row lowers its
  ``y_w`` by at most what leaving them out of the objective saved, so the model stays a
  relaxation.

Candidates reachable from a group through dead sources are many in a deep chain (every
ancestor, at every point: quadratic), so the model starts with the groups and their
*direct* dead sources (one level of cascade: the pair terms ``x_i AND x_j``) and leaves
deeper cascades out. Leaving a ``w_hj`` out drops non-negative terms from the objective and
the spike rows, so the model is a *relaxation*: every plan that fits under
:func:`evaluate` fits the model at no more than its true cost, and HiGHS's dual bound is a
lower bound on the true optimum.

The refinement loop
-------------------

So the model's answer is always re-checked with :func:`evaluate`. If every candidate the
evaluator recomputes at each point is in the model, the model is exact on that plan: it
fits and costs what the model says, and (within HiGHS's gap) it is optimal. Otherwise the
missing ``w_hj`` are added — the model becomes exact on that plan — and the MILP is solved
again. Should a plan still overshoot with nothing left to add (float tolerance in HiGHS),
the budget the model uses is lowered by the overshoot. After a few rounds, or at the time
limit, we stop with the best plan seen.

Warm starts (μ-TWO's plan, recompute-all, chen-sqrt, ...) are evaluated exactly; the best
feasible one is handed to HiGHS as its incumbent (``setSolution``), and the best plan seen
— warm start or MILP round — is what is returned, so the result is never worse than any
warm start.

``mip_gap`` is ``(objective - bound) / objective``, ``objective`` the returned plan's true
recompute time and ``bound`` the best dual bound of a round solved at the real budget (a
valid lower bound, the model being a relaxation). When the returned plan is the MILP's own
and exact, this is HiGHS's ``mip_gap``.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from acir import progress
from acir.analysis.problem import Evaluation, Problem, evaluate
from acir.passes.optimal.highs import solve_milp

__all__ = ["OptimalSolution", "Structure", "build_model", "scales", "solve"]


@dataclass(frozen=True)
class OptimalSolution:
    chosen: tuple[int, ...]      # recomputed candidates, sorted
    feasible: bool               # evaluation.peak <= budget
    evaluation: Evaluation       # evaluate(problem, chosen)
    objective_s: float           # evaluation.recompute_s
    mip_gap: float               # relative gap to the proven lower bound; -1 when infeasible
    status: str                  # "optimal", "time limit", "round limit", "infeasible", "not solved (...)"
    solve_s: float
    lower_bound_s: float = 0.0   # proven lower bound on the least recompute time within the budget
    rounds: int = 0              # MILP solves
    source: str = "milp"         # where the plan came from: "milp", "warm start", "no recomputation", "lowest peak"
    stats: dict[str, int] = field(default_factory=dict)  # model size of the last round


# -- the problem's structure -------------------------------------------------------------


class Structure:
    """What the model needs of a problem, computed once: allowed candidates, groups, dead sources."""

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.allowed = [i for i in range(p.n_candidates) if p.allowed[i]]
        self.n = len(p.base_live)
        self._dead: dict[tuple[int, int], tuple[int, ...]] = {}
        self.groups: dict[int, list[int]] = {}
        for i in self.allowed:
            self.groups.setdefault(p.hi[i], []).append(i)

    def dead_srcs(self, i: int, h: int) -> tuple[int, ...]:
        """Allowed sources of ``i`` in their idle window at ``h`` (recomputed there if chosen)."""
        out = self._dead.get((i, h))
        if out is None:
            p = self.p
            out = self._dead[(i, h)] = tuple(dict.fromkeys(j for j in p.srcs[i] if p.allowed[j] and p.covers(j, h)))
        return out

    def before(self, h: int) -> int:
        """Bytes just before node ``h`` with nothing recomputed (``after[h-1]``)."""
        if h <= 0 or self.n == 0:
            return self.p.persistent
        return int(self.p.base_after[min(h, self.n) - 1])

    def members(self, h: int, chosen: set[int]) -> list[int]:
        """What the evaluator recomputes before ``h``: the chosen group, then their dead chosen sources."""
        order = [i for i in self.groups.get(h, ()) if i in chosen]
        seen = set(order)
        k = 0
        while k < len(order):
            for j in self.dead_srcs(order[k], h):
                if j in chosen and j not in seen:
                    seen.add(j)
                    order.append(j)
            k += 1
        return order

    def first_reach(self) -> dict[int, set[int]]:
        """Per point, the candidates the first model holds: the group and its direct dead sources."""
        reach: dict[int, set[int]] = {}
        for h, group in self.groups.items():
            r = reach[h] = set(group)
            for i in group:
                r.update(self.dead_srcs(i, h))
        return reach


# -- the model ---------------------------------------------------------------------------


@dataclass
class _Model:
    """One MILP, rowwise, in scaled units (a :class:`~acir.passes.optimal.highs.RowwiseMilp`)."""

    x: dict[int, int]                 # candidate -> column of x
    w: dict[tuple[int, int], int]     # (point, dead source) -> column of w
    seg_starts: list[int]             # first rank of each segment
    seg_col0: int                     # column of S_0; segment c is seg_col0 + c
    t: dict[int, int]                 # point -> column of T
    cost: list[float]
    lower: list[float]
    upper: list[float]
    integer: list[bool]
    row_lo: list[float] = field(default_factory=list)
    row_hi: list[float] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    infeasible: str = ""              # a rank no plan can bring under the budget
    y: list[int] = field(default_factory=list)  # overlap window -> column of the time it hides
    y_terms: list[dict[int, float]] = field(default_factory=list)  # overlap window -> {column: scaled time}

    def col(self, h: int, j: int) -> int:
        c = self.w.get((h, j))
        return self.x[j] if c is None else c

    def add_col(self, cost: float, lower: float, upper: float, integer: bool) -> int:
        self.cost.append(cost)
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(integer)
        return len(self.cost) - 1

    def add_row(self, terms: dict[int, float], lo: float, hi: float) -> None:
        self.starts.append(len(self.index))
        for c, v in terms.items():
            if v != 0.0:
                self.index.append(c)
                self.value.append(v)
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def segment(self, rank: int) -> int:
        return bisect.bisect_right(self.seg_starts, rank) - 1


def _segments(st: Structure) -> tuple[list[int], list[list[tuple[int, int]]]]:
    """Cut the ranks where a window opens or closes: per segment its first rank and the
    ``(candidate, +1 opens / -1 closes)`` events there."""
    p = st.p
    events: dict[int, list[tuple[int, int]]] = {}
    for i in st.allowed:
        if p.lo[i] < p.hi[i] and p.hi[i] > 0 and p.lo[i] < st.n:
            events.setdefault(max(p.lo[i], 0), []).append((i, 1))
            if p.hi[i] < st.n:
                events.setdefault(p.hi[i], []).append((i, -1))
    starts = sorted({0} | set(events))
    return starts, [events.get(r, []) for r in starts]


def scales(st: Structure) -> tuple[float, float]:
    """(bytes per model unit, model units per second): HiGHS works on numbers near 1."""
    p = st.p
    unit = 1.0
    big = max((p.sizes[i] for i in st.allowed), default=1)
    if big > 4096:  # bytes in units of about a thousandth of the largest candidate (a power of two)
        unit = float(2 ** (int(math.log2(big)) - 10))
    tmax = max((p.times[i] for i in st.allowed), default=0.0)
    return unit, (1.0 / tmax if tmax > 0 else 1.0)


def build_model(st: Structure, reach: dict[int, set[int]], budget: float, unit: float, tscale: float,
           anywhere: bool = False) -> _Model:
    """The model holding, per point ``h``, the candidates in ``reach[h]``, at ``budget``.

    ``anywhere``: a candidate may be recomputed anywhere from its idle window's start to its
    first backward use (a retained one runs at its first need), so it counts in every overlap
    window that range meets, not only in the one holding ``hi``."""
    p = st.p
    inf = math.inf
    m = _Model({}, {}, [], 0, {}, [], [], [], [])
    for i in st.allowed:
        m.x[i] = m.add_col(p.times[i] * tscale, 0.0, 1.0, True)
    for h in sorted(reach):
        for j in sorted(reach[h]):
            if p.hi[j] != h:
                m.w[(h, j)] = m.add_col(p.times[j] * tscale, 0.0, 1.0, False)
    size = [s / unit for s in p.sizes]

    # saved bytes per segment; the rank rows are bounds on them
    m.seg_starts, seg_events = _segments(st) if st.n else ([0], [[]])
    nseg = len(m.seg_starts)
    m.seg_col0 = len(m.cost)
    for _ in range(nseg):
        m.add_col(0.0, 0.0, inf, False)
    live = np.asarray(p.base_live, dtype=np.float64)
    total = 0
    for c, (a, ev) in enumerate(zip(m.seg_starts, seg_events)):
        sc = m.seg_col0 + c
        terms: dict[int, float] = {sc: 1.0}
        if c:
            terms[sc - 1] = -1.0
        for i, d in ev:
            terms[m.x[i]] = terms.get(m.x[i], 0.0) - d * size[i]
            total += d * p.sizes[i]
        m.add_row(terms, 0.0, 0.0)
        b = m.seg_starts[c + 1] if c + 1 < nseg else st.n
        if b > a:
            need = float(live[a:b].max()) - budget
            if need > total:
                m.infeasible = f"rank {a + int(np.argmax(live[a:b]))} stays {int(need - total)} bytes over the budget"
                return m
            m.lower[sc] = max(0.0, need / unit)
        m.upper[sc] = total / unit

    # cascades: w_hj >= x_j + w_hi - 1 for each source edge i -> j inside the model
    for h in sorted(reach):
        for i in sorted(reach[h]):
            for j in st.dead_srcs(i, h):
                if j in reach[h]:
                    m.add_row({m.w[(h, j)]: 1.0, m.x[j]: -1.0, m.col(h, i): -1.0}, -1.0, inf)

    # spikes: after[h-1] - S + sizes recomputed + T_h <= budget, T_h >= temps[j] w_hj
    room = budget / unit
    for h in sorted(reach):
        js = sorted(reach[h])
        before = st.before(h) / unit
        top = max(p.temps[j] for j in js) / unit
        if before + sum(size[j] for j in js) + top <= room:
            continue  # cannot bind: even with no savings at h-1 it fits
        terms = {m.col(h, j): size[j] for j in js}
        if top > 0:
            m.t[h] = tc = m.add_col(0.0, 0.0, top, False)
            terms[tc] = 1.0
            for j in js:
                if p.temps[j] > 0:
                    m.add_row({tc: 1.0, m.col(h, j): -p.temps[j] / unit}, 0.0, inf)
        if h > 0 and st.n:
            terms[m.seg_col0 + m.segment(min(h - 1, st.n - 1))] = -1.0
        m.add_row(terms, -inf, room - before)

    # overlap windows: y_w <= slack_w, y_w <= the replay time of the points inside the window
    window = p.window_of() if p.overlaps else {}
    inside: list[dict[int, float]] = [{} for _ in p.overlaps]
    for i in st.allowed:
        if anywhere:
            for w, (first, last, _) in enumerate(p.overlaps):
                if first <= p.hi[i] and p.lo[i] <= last:
                    inside[w][m.x[i]] = p.times[i] * tscale
        elif p.hi[i] in window:
            inside[window[p.hi[i]]][m.x[i]] = p.times[i] * tscale
    for (h, j), c in m.w.items():
        if h in window:
            inside[window[h]][c] = p.times[j] * tscale
    for (_, _, slack), terms in zip(p.overlaps, inside):
        y = m.add_col(-1.0, 0.0, slack * tscale, False)
        m.y.append(y)
        m.y_terms.append(terms)
        if terms:
            m.add_row({y: 1.0, **{c: -v for c, v in terms.items()}}, -inf, 0.0)
        else:
            m.upper[y] = 0.0
    return m


def _start(st: Structure, m: _Model, reach: dict[int, set[int]], chosen: set[int], unit: float) -> list[float]:
    """Column values of a plan (HiGHS's incumbent)."""
    p = st.p
    vals = [0.0] * len(m.cost)
    for i, c in m.x.items():
        vals[c] = 1.0 if i in chosen else 0.0
    for h in reach:
        members = set(st.members(h, chosen))
        for j in reach[h]:
            if (h, j) in m.w and j in members:
                vals[m.w[(h, j)]] = 1.0
        if h in m.t:
            vals[m.t[h]] = max((p.temps[j] for j in members & reach[h]), default=0) / unit
    for c, a in enumerate(m.seg_starts):
        vals[m.seg_col0 + c] = sum(p.sizes[i] for i in chosen if p.covers(i, a)) / unit
    for y, terms in zip(m.y, m.y_terms):  # what each window hides for this plan
        vals[y] = min(m.upper[y], sum(v * vals[c] for c, v in terms.items()))
    return vals


# -- the solver --------------------------------------------------------------------------


def solve(problem: Problem, budget: int, warm_starts: Sequence[Iterable[int]] = (),
          time_limit_s: float = 30.0, *, rel_gap: float = 1e-6, max_rounds: int = 8,
          adds_per_round: int = 0) -> OptimalSolution:
    """The plan with the least recompute time whose :func:`evaluate` peak is within ``budget``.

    ``warm_starts`` are plans to start from (invalid ones are ignored); the result is never
    worse than the best feasible one. ``time_limit_s`` bounds the whole solve (all rounds).
    ``adds_per_round`` caps the cascade terms added per refinement round (0: ``4k + 1000``).
    """
    t0 = time.perf_counter()
    p = problem
    st = Structure(p)
    budget = int(budget)
    best: tuple[float, tuple[int, ...], Evaluation, str] | None = None
    lowest: tuple[int, tuple[int, ...], Evaluation] | None = None  # least peak seen, for infeasible

    def consider(chosen: Iterable[int], source: str) -> Evaluation | None:
        nonlocal best, lowest
        plan = tuple(sorted(set(chosen)))
        if any(not (0 <= i < p.n_candidates) or not p.allowed[i] for i in plan):
            return None
        ev = evaluate(p, plan)
        if lowest is None or ev.peak < lowest[0]:
            lowest = (ev.peak, plan, ev)
        if ev.peak <= budget and (best is None or ev.recompute_s < best[0] * (1 - 1e-12) - 1e-15):
            best = (ev.recompute_s, plan, ev, source)
        return ev

    def result(status: str, bound: float, rounds: int, stats: dict[str, int]) -> OptimalSolution:
        dt = time.perf_counter() - t0
        if best is None:
            assert lowest is not None
            _, plan, ev = lowest
            return OptimalSolution(plan, False, ev, ev.recompute_s, -1.0, status, dt, bound, rounds,
                                   "lowest peak", stats)
        obj, plan, ev, source = best
        gap = 0.0 if obj <= 0 else (obj - bound) / obj
        gap = 0.0 if gap <= 1e-9 else gap  # float noise of the scaled objective
        if status == "round limit" and gap <= rel_gap:
            status = "optimal"
        return OptimalSolution(plan, True, ev, obj, gap, status, dt, max(0.0, min(bound, obj)), rounds,
                               source, stats)

    consider((), "no recomputation")
    if best is not None:  # the budget is met as it is
        return result("optimal", 0.0, 0, {})
    for ws in warm_starts:
        consider(ws, "warm start")

    unit, tscale = scales(st)
    limit = adds_per_round or 4 * len(st.allowed) + 1000

    reach = st.first_reach()
    model_budget = float(budget)
    bound = 0.0
    status = "not solved"
    stats: dict[str, int] = {}
    rounds = 0
    # the bar: seconds spent against the time limit, the round, HiGHS's gap on the current round's model
    shown = {"round": 1, "gap": math.inf}

    def show(refresh: bool = False) -> None:
        gap = "no plan yet" if not math.isfinite(shown["gap"]) else f"HiGHS gap {100 * shown['gap']:.2f}%"
        b.set_description_str(f"optimal: round {shown['round']}, {gap}", refresh=refresh)

    def on_gap(gap: float) -> None:
        shown["gap"] = gap
        show()

    with progress.bar("optimal", total=max(time_limit_s, 0.01), unit="s",
                      bar_format="{desc} |{bar}| {n:.1f}/{total:.0f} s time limit") as b, \
            progress.ticking(b, at=lambda: min(time.perf_counter() - t0, b.total)):
        while rounds < max_rounds:
            left = time_limit_s - (time.perf_counter() - t0)
            if left <= 0:
                status = "time limit"
                break
            shown["round"] = rounds + 1
            show(refresh=True)
            m = build_model(st, reach, model_budget, unit, tscale)
            exact_budget = model_budget == budget
            stats = {"binaries": len(m.x), "cascade_terms": len(m.w), "columns": len(m.cost),
                     "rows": len(m.row_lo), "nonzeros": len(m.index)}
            if m.infeasible:  # proven when the model is the relaxation at the real budget
                status = "infeasible" if exact_budget and best is None else "round limit"
                break
            start = _start(st, m, reach, set(best[1]), unit) if best is not None else None
            hs, x, dual = solve_milp(m, start, left, rel_gap, on_gap if progress.enabled() else None)
            rounds += 1
            if hs == "infeasible":
                status = "infeasible" if exact_budget and best is None else "round limit"
                break
            if exact_budget and dual is not None and math.isfinite(dual):
                bound = max(bound, dual / tscale)
            if x is None:
                status = "time limit" if hs == "time limit" else f"not solved ({hs})"
                break
            chosen = {i for i in st.allowed if x[m.x[i]] > 0.5}
            ev = consider(chosen, "milp")
            assert ev is not None
            missing = [(h, j) for h in sorted({p.hi[i] for i in chosen})
                       for j in st.members(h, chosen) if j not in reach[h]]
            if not missing and ev.peak <= budget:
                status = hs  # exact on this plan: optimal when HiGHS says so
                break
            if hs == "time limit":
                status = "time limit"
                break
            if missing:
                for h, j in missing[:limit]:  # breadth first: a source's reader comes before it
                    reach[h].add(j)
            else:
                model_budget -= ev.peak - budget  # float tolerance: nothing left to model
        else:
            status = "round limit"
    return result(status, bound, rounds, stats)
