"""The ``recompute-all`` pass: recompute every activation that may be, as a baseline plan.

The other end from ``keep-all``: every allowed candidate is recomputed, so the predicted
peak is the lowest recomputation alone can reach (up to the spikes of cascading
recomputations, which the evaluator counts) and the added time the largest. Written as a
``plan`` block so that it is judged by the same evaluator as every other planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.ir import Module
from acir.pass_manager import Pass, PassResult
from acir.plan_problem import Problem, evaluate

__all__ = ["RecomputeAll", "recompute_all"]


def recompute_all(problem: Problem) -> tuple[int, ...]:
    """Every allowed candidate."""
    return tuple(i for i in range(problem.n_candidates) if problem.allowed[i])


@dataclass(frozen=True)
class RecomputeAll(Pass):
    """Recompute every activation that may be recomputed, a baseline plan.

    Writes the ``plan`` analysis with every allowed activation recomputed (the others
    keep their reason). ``budget`` is only recorded; without one the recorded budget is
    the predicted peak. The graph is not changed.
    """

    name = "recompute-all"
    requires = ("profile", "liveness")
    preserves = ("profile", "liveness")

    budget: str = field(default="", metadata={"help": "a budget to record (3GiB, 60%); not used to plan"})

    def run(self, module: Module) -> PassResult:
        from acir.planning import run_planner

        return run_planner(module, self, self.budget, _solve, require_budget=False)


def _solve(problem: Problem, budget: int):
    from acir.planning import PlannerResult

    chosen = recompute_all(problem)
    return PlannerResult(chosen, evaluate(problem, chosen).peak <= budget, srcs=None, recompute_times=None)
