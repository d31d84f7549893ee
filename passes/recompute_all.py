"""The ``recompute-all`` pass: recompute every activation that may be, as a baseline plan.

The other end from ``keep-all``: every allowed candidate is recomputed, so the predicted
peak is the lowest recomputation alone can reach (up to the spikes of cascading
recomputations, which the evaluator counts) and the added time the largest. Written as a
``plan`` block so that it is judged by the same evaluator as every other planner.
"""

from __future__ import annotations

from dataclasses import dataclass

from acir.analysis.problem import Problem
from acir.passes.planner_base import FixedPlanner

__all__ = ["RecomputeAll", "recompute_all"]


def recompute_all(problem: Problem) -> tuple[int, ...]:
    """Every allowed candidate."""
    return tuple(i for i in range(problem.n_candidates) if problem.allowed[i])


@dataclass(frozen=True)
class RecomputeAll(FixedPlanner):
    """Recompute every activation that may be recomputed, a baseline plan.

    Writes the ``plan`` analysis with every allowed activation recomputed (the others
    keep their reason). ``budget`` is only recorded; without one the recorded budget is
    the predicted peak. The graph is not changed.
    """

    name = "recompute-all"

    def choose(self, problem: Problem) -> tuple[int, ...]:
        return recompute_all(problem)
