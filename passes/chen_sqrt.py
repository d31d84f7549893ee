"""The ``chen-sqrt`` pass: Chen et al.'s √n checkpointing, as a baseline plan.

Chen, Xu, Zhang, Guestrin, "Training Deep Nets with Sublinear Memory Cost" (2016), cut a
chain of ``n`` layers into about √n segments, keep the activation at each segment's end
and recompute the others from it in the backward: O(√n) memory for one extra forward.
It ignores sizes, run times and the budget, which is what makes it a useful baseline.

Here the chain is the allowed candidates in forward order. A candidate's forward position
is read from ``hi`` (its first backward use): the backward runs in reverse, so the
activation used last in the backward was made first in the forward; ``hi`` descending is
forward order ascending. ``hi`` is used rather than ``lo`` because ``lo`` follows the
*last* forward use, which a long-lived activation (a residual) pushes late; ties are broken
by ``lo``, then by index. ``k`` candidates are split into ``round(√k)`` contiguous segments
of near-equal length (the earlier ones one longer when ``k`` does not divide); the last
candidate of each segment is kept, the rest are recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from acir.analysis.problem import Problem
from acir.passes.planner_base import FixedPlanner

__all__ = ["ChenSqrt", "chen_sqrt"]


def chen_sqrt(problem: Problem) -> tuple[int, ...]:
    """The candidates to recompute: all allowed ones but the last of each of √k forward segments."""
    p = problem
    order = sorted((i for i in range(p.n_candidates) if p.allowed[i]), key=lambda i: (-p.hi[i], p.lo[i], i))
    k = len(order)
    if k == 0:
        return ()
    segments = max(1, round(math.sqrt(k)))
    base, extra = divmod(k, segments)
    kept = set()
    end = 0
    for s in range(segments):
        end += base + (1 if s < extra else 0)
        kept.add(order[end - 1])
    return tuple(sorted(i for i in order if i not in kept))


@dataclass(frozen=True)
class ChenSqrt(FixedPlanner):
    """Recompute all but √k evenly spaced activations (Chen et al. 2016), a baseline plan.

    Orders the recomputable activations by forward position, cuts them into about √k
    segments and keeps each segment's last one. Writes the ``plan`` analysis; the graph is
    not changed. ``budget`` is only recorded (and whether the plan meets it is visible
    in the predicted peak); without one the recorded budget is the predicted peak.
    """

    name = "chen-sqrt"

    def choose(self, problem: Problem) -> tuple[int, ...]:
        return chen_sqrt(problem)
