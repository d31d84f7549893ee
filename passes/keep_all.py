"""The ``keep-all`` pass: no activation checkpointing, as a baseline plan.

Every activation is kept, so the predicted peak is the no-AC peak and the added time is
zero. Written as a ``plan`` block like any planner's, so that it sits in the same tables
and plots as μ-TWO and the optimum and is judged by the same evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass

from acir.analysis.problem import Problem
from acir.passes.planner_base import FixedPlanner

__all__ = ["KeepAll"]


@dataclass(frozen=True)
class KeepAll(FixedPlanner):
    """Keep every activation (no recomputation), a baseline plan.

    Writes the ``plan`` analysis with nothing recomputed: the predicted peak is the no-AC
    peak. ``budget`` is only recorded; without one the recorded budget is that peak. The
    graph is not changed.
    """

    name = "keep-all"

    def choose(self, problem: Problem) -> tuple[int, ...]:
        return ()
