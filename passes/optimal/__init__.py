"""The ``optimal`` pass: the least-recompute plan within the budget, by MILP, as the yardstick.

The heuristics are judged against it: on the same :class:`~acir.analysis.problem.Problem`
and under the same evaluator, it finds the plan with the least added recompute time whose
predicted peak fits the budget (:mod:`acir.passes.optimal.solver`), and records how far
from proven optimal it is (``optimality_gap`` in the plan block). It starts from the
heuristics' own plans — μ-TWO's, recompute-all's and chen-sqrt's, where they fit — so it
is never worse than any of them, even when the time limit stops it early.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.analysis.problem import Problem, evaluate
from acir.ir.analyses import LIVENESS, PLAN, PROFILE
from acir.ir.graph import Module
from acir.pipeline.pass_base import Pass, PassResult

__all__ = ["Optimal", "best_plan", "warm_starts"]


def warm_starts(problem: Problem, budget: int) -> list[tuple[int, ...]]:
    """The heuristics' plans that fit ``budget``: μ-TWO (when installed), recompute-all, chen-sqrt."""
    from acir.passes.chen_sqrt import chen_sqrt
    from acir.passes.recompute_all import recompute_all

    plans: list[tuple[int, ...]] = []
    try:
        from acir.passes.mutwo.solver import solve as mutwo
    except ImportError:
        mutwo = None
    if mutwo is not None:
        s = mutwo(problem, budget)
        if s.feasible:
            plans.append(tuple(s.chosen))
    for plan in (recompute_all(problem), chen_sqrt(problem)):
        if evaluate(problem, plan).peak <= budget:
            plans.append(plan)
    return plans


@dataclass(frozen=True)
class Optimal(Pass):
    """Choose the activations to recompute that fit the budget at the least recompute time (MILP, HiGHS).

    Solves the mixed-integer program of :mod:`acir.passes.optimal.solver` on the shared
    planning problem, warm-started from the μ-TWO, recompute-all and chen-sqrt plans, and
    checks its answer with the common evaluator. Writes the ``plan`` analysis with the
    remaining optimality gap (0 when proven optimal); the graph is not changed. A budget
    no plan can reach is an error that states the lowest reachable peak.
    """

    name = "optimal"
    requires = (PROFILE, LIVENESS)
    preserves = (PROFILE, LIVENESS)
    ensures = (PLAN,)

    budget: str = field(metadata={
        "help": "bytes with a unit (3GiB, 512MiB) or a percentage of what AC can act on (60%)"})
    time_limit: float = field(default=30.0, metadata={"help": "seconds for the solver; the best plan so far is kept",
                                                      "min": 0, "finite": True})

    def run(self, module: Module) -> PassResult:
        from acir.analysis.candidates import build
        from acir.passes.block_checkpoint import block_boundaries
        from acir.passes.mutwo import block_start, floor_with  # the warm start's planner knows the floor
        from acir.passes.planner_base import run_planner

        cands = build(module)
        starts = block_start(cands)
        bounds = block_boundaries(cands)
        return run_planner(module, self, self.budget,
                           lambda p, b: best_plan(p, b, starts, self.time_limit, boundaries=bounds),
                           floor_with(starts), cands=cands)


def best_plan(problem: Problem, budget: int, starts=(), time_limit_s: float = 30.0, boundaries=()):
    """The ``optimal`` pass's answer on a problem: the cover bound's plan when it meets the bound
    (:mod:`acir.passes.optimal.cover`: proven optimal in the whole schedule model, retention
    included), else the cheapest of the cascade MILP's plan (:mod:`acir.passes.optimal.solver`),
    the cover plan, the cover plan with the block ``boundaries`` kept (retained chains then stop
    there, as checkpointing does: near the floor, where a chain through every layer would be
    replayed at once), the ``starts`` (a checkpointed block's schedule) and μ-TWO's
    retained plan.
    Its gap is against the cover bound, which holds for every plan, so it is a gap to the
    optimum of the model every planner is judged by (-1 only when nothing fits)."""
    import time

    from acir.passes.mutwo.solver import solve as mutwo
    from acir.passes.optimal.cover import solve_cover
    from acir.passes.optimal.solver import solve
    from acir.passes.planner_base import PlannerResult

    t0 = time.perf_counter()
    cover = solve_cover(problem, budget, time_limit_s)
    plans: list[tuple[float, tuple[int, ...], tuple[int, ...]]] = []  # (recompute s, chosen, retained)
    if cover.feasible:
        plans.append((cover.evaluation.recompute_s, cover.chosen, cover.retained))
    fallback = None
    if cover.status != "optimal":
        if boundaries and cover.status != "infeasible":
            split = solve_cover(problem, budget, max(0.0, time_limit_s - (time.perf_counter() - t0)),
                                keep=boundaries)
            if split.feasible:
                plans.append((split.evaluation.recompute_s, split.chosen, split.retained))
        left = max(0.0, time_limit_s - (time.perf_counter() - t0))
        s = solve(problem, budget, warm_starts(problem, budget), time_limit_s=left)
        fallback = PlannerResult(s.chosen, s.feasible, srcs=None, recompute_times=None)
        if s.feasible:
            plans.append((s.objective_s, s.chosen, ()))
        m = mutwo(problem, budget, starts=starts)
        for chosen, retained in list(starts) + ([(m.chosen, m.retained)] if m.feasible and m.retained else []):
            e = evaluate(problem, chosen, retained)
            if e.peak <= budget:
                plans.append((e.recompute_s, tuple(chosen), tuple(retained)))
    if not plans:  # nothing fits: the cascade MILP's lowest peak, for the error
        return fallback
    cost, chosen, retained = min(plans, key=lambda t: t[0])
    gap = 0.0 if cost <= 0 else max(0.0, (cost - cover.bound_s) / cost)
    return PlannerResult(chosen, True, srcs=None, recompute_times=None, optimality_gap=0.0 if gap <= 1e-9 else gap,
                         retained=retained)
