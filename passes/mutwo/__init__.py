"""The ``mutwo`` pass: μ-TWO's greedy recomputation plan, written as the ``plan`` analysis.

The algorithm lives in :mod:`acir.passes.mutwo.solver` as a pure function of a
:class:`~acir.analysis.problem.Problem`; this module only adapts it to the shared planner
path (:func:`acir.passes.planner_base.run_planner`), which builds the problem from the graph,
resolves the budget, judges the answer with the common evaluator and writes the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.analysis.problem import Problem
from acir.ir.analyses import LIVENESS, PLAN, PROFILE
from acir.ir.graph import Module
from acir.pipeline.pass_base import Pass, PassResult

__all__ = ["MuTwo"]


def _solve(problem: Problem, budget_bytes: int, starts=()):
    from acir.passes.mutwo.solver import solve
    from acir.passes.planner_base import PlannerResult

    s = solve(problem, budget_bytes, starts=starts)
    return PlannerResult(chosen=s.chosen, feasible=s.feasible, srcs=s.srcs, recompute_times=s.recompute_times,
                         retained=s.retained)


def floor_with(starts):
    """μ-TWO's reachable floor, or a start's peak where that is lower (a retained plan can go below
    what the cascading greedy reaches)."""
    from acir.analysis.problem import evaluate
    from acir.passes.mutwo.solver import reachable_floor

    return lambda p: min([reachable_floor(p)] + [evaluate(p, c, r).peak for c, r in starts])


def block_start(cands) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Checkpointing every block, as a start for a planner (none when the model has no blocks)."""
    from acir.passes.block_checkpoint import block_plan

    chosen, _ = block_plan(cands)
    return [(chosen, chosen)] if chosen else []


@dataclass(frozen=True)
class MuTwo(Pass):
    """Choose activations to recompute with μ-TWO's greedy ratio rule until the peak fits the budget.

    Candidates are taken by bytes freed per second of replay (Purandare et al., MLSys 2023,
    Appendix A), among those whose idle window can lower the current simulated peak, with
    Capuchin's bookkeeping of recompute sources and counts; it stops as soon as the
    predicted peak is within ``budget``, then cleans the plan up, retains what is replayed
    more than once where that pays, and keeps checkpointing every block instead when that
    fits and costs less. Writes the ``plan`` analysis; the graph is not changed. A budget
    it cannot reach is an error that states the lowest reachable peak.
    """

    name = "mutwo"
    requires = (PROFILE, LIVENESS)
    preserves = (PROFILE, LIVENESS)
    ensures = (PLAN,)

    budget: str = field(metadata={
        "help": "bytes with a unit (3GiB, 512MiB) or a percentage of what AC can act on (60%)"})

    def run(self, module: Module) -> PassResult:
        from acir.analysis.candidates import build
        from acir.passes.planner_base import run_planner

        cands = build(module)
        starts = block_start(cands)
        return run_planner(module, self, self.budget, lambda p, b: _solve(p, b, starts), floor_with(starts),
                           cands=cands)
