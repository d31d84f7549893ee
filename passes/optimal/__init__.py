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

__all__ = ["Optimal", "warm_starts"]


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
        from acir.passes.mutwo import block_start, floor_with  # the warm start's planner knows the floor
        from acir.passes.planner_base import run_planner

        cands = build(module)
        starts = block_start(cands)
        return run_planner(module, self, self.budget, lambda p, b: self._solve(p, b, starts), floor_with(starts),
                           cands=cands)

    def _solve(self, problem: Problem, budget: int, starts=()):
        from acir.passes.mutwo.solver import solve as mutwo
        from acir.passes.optimal.solver import solve
        from acir.passes.planner_base import PlannerResult

        s = solve(problem, budget, warm_starts(problem, budget), time_limit_s=self.time_limit)
        best = PlannerResult(s.chosen, s.feasible, srcs=None, recompute_times=None, optimality_gap=s.mip_gap)
        # plans that retain (a checkpointed block's schedule, μ-TWO's retained plan) are outside the MILP's
        # model: when one fits and costs less, it is the answer, and the MILP's gap says nothing about it (-1)
        best_s = evaluate(problem, s.chosen).recompute_s if s.feasible else float("inf")
        m = mutwo(problem, budget, starts=starts)
        for chosen, retained in list(starts) + ([(m.chosen, m.retained)] if m.feasible and m.retained else []):
            e = evaluate(problem, chosen, retained)
            if e.peak <= budget and e.recompute_s < best_s:
                best, best_s = PlannerResult(tuple(chosen), True, retained=tuple(retained)), e.recompute_s
        return best
