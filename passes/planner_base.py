"""Running any planner as a pass: one path from budget to plan block, shared by all of them.

Every planner pass (``mutwo``, ``optimal``, ``keep-all``, ``recompute-all``,
``chen-sqrt``) builds the same :class:`~acir.analysis.problem.Problem` from the graph
(:mod:`acir.analysis.candidates`), resolves its budget the same way (DESIGN.md: bytes, or a
percentage of what activation checkpointing can act on), hands the problem to its pure
solver, and has the answer judged by the same evaluator (:func:`acir.analysis.problem.evaluate`)
before it is written as the ``plan`` block. So plans compare on equal terms, and a budget
below what recomputation can reach is one error that states the smallest reachable peak.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

from acir.analysis.problem import Problem, evaluate, known_floor
from acir.ir.analyses import LIVENESS, PLAN, PROFILE
from acir.ir.graph import Module
from acir.pipeline.pass_base import Pass, PassResult


@dataclass(frozen=True)
class PlannerResult:
    chosen: tuple[int, ...]
    feasible: bool
    srcs: tuple[tuple[int, ...], ...] | None = None          # per candidate, when the planner tracks them
    recompute_times: tuple[float, ...] | None = None          # per candidate, when the planner tracks them
    optimality_gap: float = -1.0
    retained: tuple[int, ...] = ()                            # chosen candidates recomputed once and kept


SolveFn = Callable[[Problem, int], PlannerResult]
#: The smallest peak a planner knows to be reachable on a problem (recorded in the plan, and
#: stated when a budget is below it); each planner pass passes its own.
FloorFn = Callable[[Problem], int]


def resolve_budget(text: str, problem: Problem, no_ac_peak: int = 0) -> int:
    """``text`` in bytes; a percentage refers to ``no_ac_peak`` (the graph as given; default:
    the problem's own no-AC peak)."""
    from acir.analysis.budget import parse_budget

    return parse_budget(text).resolve(problem.persistent, no_ac_peak or problem.no_ac_peak)


def run_planner(module: Module, pass_: Pass, budget_text: str, solve: SolveFn, floor: FloorFn = known_floor,
                require_budget: bool = True, cands=None) -> PassResult:
    """Plan ``module`` with ``solve`` and write the ``plan`` analysis block; ``floor`` gives the
    smallest reachable peak the plan records and an infeasible budget's error states."""
    from acir.analysis.candidates import build
    from acir.errors import InfeasibleBudget, PassFailed
    from acir.ir import analyses

    if budget_text:  # a plan that promises a peak: only as good as the sizes it is made of
        check_simulator_against_profile(module, pass_.name)
    cands = build(module) if cands is None else cands
    p = cands.problem
    if not budget_text and require_budget:
        raise PassFailed(f"{pass_.name} needs a budget, e.g. {pass_.name}{{budget=60%}} or {pass_.name}{{budget=3GiB}}")
    budget = resolve_budget(budget_text, p, cands.no_ac_peak) if budget_text else None
    floor_bytes = floor(p)
    t0 = time.perf_counter()
    result = solve(p, budget if budget is not None else p.no_ac_peak)
    solve_s = time.perf_counter() - t0
    ev = evaluate(p, result.chosen, result.retained)
    floor_bytes = min(floor_bytes, ev.peak)  # the plan itself is reachable, and can be below the floor known
    if budget is not None and require_budget and (not result.feasible or ev.peak > budget):
        raise InfeasibleBudget(budget, floor_bytes, pass_.name)
    chosen, retained = set(result.chosen), set(result.retained)
    tensors = []
    for i, sid in enumerate(cands.storages):
        src = result.srcs[i] if result.srcs is not None else p.srcs[i]
        rt = result.recompute_times[i] if result.recompute_times is not None else p.times[i]
        tensors.append(analyses.TensorPlan(
            storage=sid, decision=analyses.Decision.RECOMPUTE if i in chosen else analyses.Decision.KEEP,
            reason=cands.reasons[i], srcs=[cands.storages[j] for j in src], recompute_s=rt,
            recompute_count=ev.counts[i], retained=i in retained))
    module.analyses[PLAN] = analyses.Plan(
        revision=module.header.revision, planner=pass_.spec(), budget_bytes=budget if budget is not None else ev.peak,
        predicted_peak_bytes=ev.peak, predicted_recompute_s=ev.recompute_s, solve_s=solve_s,
        no_ac_peak_bytes=cands.no_ac_peak or p.no_ac_peak, floor_bytes=floor_bytes, tensors=tensors,
        optimality_gap=result.optimality_gap, profile=profile_used(module))
    extra = {"loss_heads_fused": cands.fused.total} if cands.fused.total else {}
    if retained:
        extra["retained"] = len(retained)
    if p.overlaps and chosen:  # what the collectives in flight hide of the replays (acir.analysis.problem)
        bare = evaluate(replace(p, overlaps=()), result.chosen, result.retained).recompute_s
        if bare > ev.recompute_s:
            extra["hidden_behind_collectives_s"] = round(bare - ev.recompute_s, 6)
    return PassResult(False, {**extra, "recomputed": len(chosen), "predicted_peak_bytes": ev.peak,
                              "predicted_recompute_s": round(ev.recompute_s, 6), "solve_s": round(solve_s, 4)})


#: How far the measured peak may exceed the simulated one before planning is refused (the larger of
#: this and 1% of the simulated peak): small known mismatches (a bf16 layer norm's statistics,
#: kept in fp32 by the CPU kernel: 256 bytes each) are not worth refusing a model for.
UNDERSTATED_TOLERANCE_BYTES = 64 * 1024


def check_simulator_against_profile(module: Module, planner: str) -> None:
    """Refuse to plan when the profile measured more memory than the simulator predicts
    (by more than :data:`UNDERSTATED_TOLERANCE_BYTES` or 1% of the peak, whichever is larger).

    A plan's peak is the simulator's (exact on every model acir was built on); it is only as
    right as the storage sizes the capture recorded, which come from torch's meta kernels. An op
    whose real kernel returns more than its meta kernel says (oneDNN's LSTM workspace, recorded
    as 0 bytes; a reduced ``mse_loss`` whose CPU result keeps the unreduced buffer) makes every
    plan's peak too low, and a budget would be broken silently. A measured profile of the same
    graph shows it: the first node whose measured live bytes exceed the simulator's is named."""
    from acir.errors import PassFailed

    prof, live = module.analyses.get(PROFILE), module.analyses.get(LIVENESS)
    if prof is None or live is None or not prof.measured_peak_bytes or prof.method == "analytic":
        return
    if prof.revision != module.header.revision or live.revision != module.header.revision:
        return
    over = prof.measured_peak_bytes - live.simulated_peak_bytes
    if over <= max(UNDERSTATED_TOLERANCE_BYTES, live.simulated_peak_bytes // 100):
        return
    nodes = module.graph.nodes
    first = next((r for r, (n, sim) in enumerate(zip(prof.nodes, live.timeline)) if n.peak_bytes > sim), None)
    where = ""
    if first is not None:
        node = nodes[first]
        extra = prof.nodes[first].peak_bytes - live.timeline[first]
        where = (f"; the first node measured above it is {node.name} ({node.op}, {node.module or '<top>'}, "
                 f"{extra:,} bytes more)")
    raise PassFailed(
        f"{planner}: the profile measured a peak of {prof.measured_peak_bytes:,} bytes where the simulator predicts "
        f"{live.simulated_peak_bytes:,} ({over:,} more){where}. Some op returns more memory than its shape-only "
        f"(meta) kernel says, so the capture recorded its storage too small, and a plan made from it would not hold "
        f"its budget; acir refuses to plan this step rather than break the budget silently. Replace that op "
        f"(e.g. an unreduced loss then .mean(), or a different recurrent layer), or report it with the artifact.")


def profile_used(module: Module) -> str:
    """Which profile a plan of ``module`` is made from, for the plan block: its method, reps and
    malloc setting and a digest of its node times (two profiles with one digest have the same
    times, so a planner makes the same plan from both); "" without a profile."""
    import hashlib
    import struct

    prof = module.analyses.get(PROFILE)
    if prof is None:
        return ""
    h = hashlib.sha256()
    for n in prof.nodes:
        h.update(struct.pack("<qd", n.node, n.run_s))
    return f"method={prof.method} reps={prof.reps} malloc={prof.malloc or '-'} times=sha256:{h.hexdigest()[:16]}"


@dataclass(frozen=True)
class FixedPlanner(Pass):
    """Base of the baselines whose plan does not depend on the budget (it is only recorded).

    A subclass sets ``name`` and a docstring and implements :meth:`choose`; the budget, when
    given, is resolved and recorded like every planner's, so the plan block says whether the
    baseline meets it.
    """

    requires = (PROFILE, LIVENESS)
    preserves = (PROFILE, LIVENESS)
    ensures = (PLAN,)

    budget: str = field(default="", metadata={"help": "a budget to record (3GiB, 60%); not used to plan"})

    def choose(self, problem: Problem) -> tuple[int, ...]:
        raise NotImplementedError

    def retain(self, problem: Problem, chosen: tuple[int, ...]) -> tuple[int, ...]:
        """Which of ``chosen`` to recompute once and keep (none, unless a baseline says otherwise)."""
        return ()

    def run(self, module: Module) -> PassResult:
        return run_planner(module, self, self.budget, self._solve, require_budget=False)

    def _solve(self, problem: Problem, budget: int) -> PlannerResult:
        chosen = self.choose(problem)
        retained = self.retain(problem, chosen)
        return PlannerResult(chosen, evaluate(problem, chosen, retained).peak <= budget, retained=retained)
