"""The ``keep-all`` pass: no activation checkpointing, as a baseline plan.

Every activation is kept, so the predicted peak is the no-AC peak and the added time is
zero. Written as a ``plan`` block like any planner's, so that it sits in the same tables
and plots as μ-TWO and the optimum and is judged by the same evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.ir import Module
from acir.pass_manager import Pass, PassResult
from acir.plan_problem import Problem

__all__ = ["KeepAll"]


@dataclass(frozen=True)
class KeepAll(Pass):
    """Keep every activation (no recomputation), a baseline plan.

    Writes the ``plan`` analysis with nothing recomputed: the predicted peak is the no-AC
    peak. ``budget`` is only recorded; without one the recorded budget is that peak. The
    graph is not changed.
    """

    name = "keep-all"
    requires = ("profile", "liveness")
    preserves = ("profile", "liveness")

    budget: str = field(default="", metadata={"help": "a budget to record (3GiB, 60%); not used to plan"})

    def run(self, module: Module) -> PassResult:
        from acir.planning import run_planner

        return run_planner(module, self, self.budget, _solve, require_budget=False)


def _solve(problem: Problem, budget: int):
    from acir.planning import PlannerResult

    return PlannerResult((), problem.no_ac_peak <= budget, srcs=None, recompute_times=None)
