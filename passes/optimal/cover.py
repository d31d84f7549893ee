"""The cover bound: a lower bound on every plan's recompute time, and often a plan that meets it.

The cascade model of :mod:`acir.passes.optimal.solver` prices plans whose recomputed sources
are replayed again wherever they are dead; it cannot price *retained* plans (a candidate
recomputed once, at its first need, and held from there: :func:`acir.analysis.problem.schedule`),
which is how checkpointing a block runs, so its bound says nothing about them. This module
drops what retention changes and keeps what no plan escapes:

* every chosen candidate is recomputed at least once, so a plan costs at least
  ``sum(times[i] * x_i)`` (less what the overlap windows hide: a candidate may be recomputed
  anywhere from its idle window's start to its first backward use, so it may hide in any
  window that range meets, each window at most its slack);
* a chosen candidate is absent at most over its idle window ``[lo, hi)`` (retained, it comes
  back earlier), so at every rank the plan's live bytes are at least ``base_live[r]`` less
  the sizes of the chosen windows covering ``r``, and that must fit the budget.

What is left — choose ``x`` to cover, at every rank, the bytes over the budget at the least
time — is a covering knapsack over the ranks (the solver's segment rows without any
recomputation point), small and quick for HiGHS. Its optimum is a **lower bound on the
recompute time of every plan that fits**, cascading or retained: each plan's ``x`` is
feasible in it at no more than the plan's cost.

Its answer is also a plan: recompute ``x`` and retain all of it (each candidate replayed
once; then the cost *is* the bound, without overlap windows) — or, second, cascade. When that
plan fits under :func:`~acir.analysis.problem.evaluate` (its spikes and shortened windows
included) it is optimal in the whole schedule model. When neither fits, the retained plan's
peak is cut off and the model solved again, a few rounds: at a recomputation spike (a chain of
retained sources brought back together: on a deep stack, every layer at once), the source whose
keeping takes the most bytes out of it is kept, which splits the chain as checkpointing a block
does; at a rank, a row no longer counts the savings of the candidates that plan brought back
before that rank. A cut holds for plans like the one it came from, not for every plan, so those
rounds only look for a plan; the bound stays the first round's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

from acir.analysis.problem import Evaluation, Problem, evaluate, schedule
from acir.passes.optimal.highs import solve_milp
from acir.passes.optimal.solver import Structure, build_model, scales

__all__ = ["CoverSolution", "solve_cover"]


@dataclass(frozen=True)
class CoverSolution:
    chosen: tuple[int, ...]          # recomputed candidates of the plan found (sorted)
    retained: tuple[int, ...]        # those of them recomputed once and kept
    feasible: bool                   # the plan fits the budget under evaluate
    evaluation: Evaluation | None    # evaluate(problem, chosen, retained); None without a plan
    bound_s: float                   # no plan within the budget costs less (0.0 when nothing is proven)
    status: str                      # "optimal" (the plan meets the bound), "fits", "no plan", "infeasible"
    rounds: int
    solve_s: float


def solve_cover(problem: Problem, budget: int, time_limit_s: float = 30.0, *, rel_gap: float = 1e-6,
                max_rounds: int = 8, keep: Iterable[int] = ()) -> CoverSolution:
    """The cover bound of ``problem`` at ``budget`` and the plan it gives (module docstring).

    ``status`` is "infeasible" when no plan can fit (the relaxation has no solution at the
    real budget: some rank stays over it with every candidate recomputed), "optimal" when the
    plan found fits and costs the bound (within ``rel_gap``), "fits" when it fits above the
    bound, and "no plan" when no round's answer fit (the bound still holds).

    ``keep``: candidates never recomputed (the outputs of blocks, say, so that retained chains
    stop at block boundaries as checkpointing does). The model is then restricted, not relaxed:
    it proves nothing, ``bound_s`` is 0 and the status at most "fits"."""
    keep = tuple(keep)
    t0 = time.perf_counter()
    p = problem
    st = Structure(p)
    unit, tscale = scales(st)
    bound = 0.0
    rounds = 0
    best: tuple[float, tuple[int, ...], tuple[int, ...], Evaluation] | None = None

    def done(status: str) -> CoverSolution:
        nonlocal bound
        dt = time.perf_counter() - t0
        if best is None:
            return CoverSolution((), (), False, None, bound, status, rounds, dt)
        cost, chosen, retained, ev = best
        if status == "fits" and not keep and cost - bound <= rel_gap * max(cost, 1e-12):
            status = "optimal"
        if bound > cost and bound - cost <= 1e-9 * max(cost, 1e-12):
            bound = cost  # HiGHS's float noise
        return CoverSolution(chosen, retained, True, ev, bound, status, rounds, dt)

    cuts: list[tuple[str, int, tuple[int, ...]]] = []  # ("keep", j, ()) or ("rank", r, back early)
    while rounds < max_rounds:
        left = time_limit_s - (time.perf_counter() - t0)
        if left <= 0:
            break
        m = build_model(st, {}, float(budget), unit, tscale, anywhere=True)
        if m.infeasible:  # before any cut: no plan can bring that rank under the budget
            return done("infeasible")
        for kind, at, members in [("keep", j, ()) for j in keep if j in m.x] + cuts:
            _cut(st, m, kind, at, members, budget, unit)
        relaxed = not cuts and not keep
        hs, x, dual = solve_milp(m, None, left, rel_gap)
        rounds += 1
        if hs == "infeasible":
            return done("infeasible" if relaxed else "no plan")
        if relaxed and dual is not None and math.isfinite(dual):
            bound = dual / tscale  # the relaxation's: cut rounds are not relaxations
        if x is None:
            break
        chosen = tuple(i for i in st.allowed if x[m.x[i]] > 0.5)
        for retained in (chosen, ()):  # retained: each replayed once, the cost is the bound's
            ev = evaluate(p, chosen, retained)
            if ev.peak <= budget and (best is None or ev.recompute_s < best[0]):
                best = (ev.recompute_s, chosen, retained, ev)
        if best is not None or hs != "optimal":
            break
        cut = _peak_cut(p, chosen, budget)
        if cut is None or cut in cuts:
            break
        cuts.append(cut)
    return done("fits" if best is not None else "no plan")


def _peak_cut(p: Problem, chosen: tuple[int, ...], budget: int) -> tuple[str, int, tuple[int, ...]] | None:
    """What made the retained plan of ``chosen`` overshoot, as a cut for the next round.

    At a spike, the replays there chain back through retained sources, each brought back early
    because a later one reads it (a deep stack: every layer at once). The cut keeps the source
    whose keeping takes the most bytes out of that spike (the link nearest the candidates first
    used there): ``("keep", j, ())``. At a rank, the candidates the plan brought back before it
    no longer count there: ``("rank", r, back early)``."""
    ev = evaluate(p, chosen, chosen)
    s = schedule(p, chosen, chosen)
    if ev.peak_is_spike:
        members = set(next((pt.members for pt in s.points if pt.rank == ev.peak_rank), ()))
        links = [j for j in members if p.hi[j] != ev.peak_rank]  # brought here by a reader, not by its own use
        if not links:
            return None

        def behind(j: int) -> int:  # bytes of j and of the members recomputed here only through it
            seen, todo = {j}, [j]
            while todo:
                for k in p.srcs[todo.pop()]:
                    if k in members and k not in seen and p.hi[k] != ev.peak_rank:
                        seen.add(k)
                        todo.append(k)
            return sum(p.sizes[k] for k in seen)

        j = max(links, key=lambda j: (behind(j), -j))
        return ("keep", j, ())
    r = ev.peak_rank
    early = tuple(sorted(i for i, begin in s.start.items() if begin <= r < p.hi[i]))
    return ("rank", r, early) if early else None


def _cut(st: Structure, m, kind: str, at: int, members: tuple[int, ...], budget: int, unit: float) -> None:
    """Add one cut (see :func:`_peak_cut`) to the model ``m``."""
    p = st.p
    if kind == "keep":
        m.upper[m.x[at]] = 0.0
        return
    else:  # at rank ``at`` the savings of the candidates back early do not count
        terms = {m.seg_col0 + m.segment(at): 1.0}
        for j in members:
            terms[m.x[j]] = -p.sizes[j] / unit
        m.add_row(terms, (p.base_live[at] - budget) / unit, math.inf)
