"""Fitting a captured step to a memory budget from Python: profile on copies, plan, rewrite.

Planning needs run times, so the step is profiled first on deep copies of the model and
optimizer (the originals are not updated, and the random-number state is put back), then
``liveness``, the planner and ``rewrite`` run as in ``acir-opt``. A budget below the
smallest reachable peak raises :class:`acir.errors.InfeasibleBudget` stating that peak. Unlike
``acir-opt``, the rewritten step's simulated peak is what must fit, not the plan's prediction
(:func:`plan_within` plans again where the two differ).
"""

from __future__ import annotations

import copy

from acir.ir.analyses import PROFILE
from acir.ir.graph import Module


def planner_pass(planner: str, budget: str):
    """The planner pass ``planner{budget=...}``, or a ParseError naming the planners."""
    from acir.errors import ParseError
    from acir.pipeline.registry import instantiate, pass_class
    from acir.pipeline.syntax import PassSpec

    cls = pass_class(planner)
    if "budget" not in [o.key for o in cls.options()]:
        raise ParseError(f"{planner!r} is not a planner; use mutwo, optimal, chen-sqrt, recompute-all or keep-all")
    return instantiate(PassSpec(planner, {"budget": str(budget)}))


def plan_and_rewrite(module: Module, model, optimizer, batch, budget: str, planner: str, reps: int,
                     verify: bool, same_times_on_every_rank: bool = False) -> None:
    """Profile ``module`` on copies of ``model`` and ``optimizer``, plan it to ``budget`` and rewrite it."""

    import torch

    from acir.passes.profile import profile_step
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    plan_pass = planner_pass(planner, budget)
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        work_model, work_opt = copy.deepcopy((model, optimizer))
        for p, q in zip(model.parameters(), work_model.parameters()):  # a Parameter's deepcopy drops .grad,
            q.grad = None if p.grad is None else p.grad.clone()        # which an accumulating step reads
        module.analyses[PROFILE] = profile_step(module, work_model, work_opt, batch, reps, 1)
        del work_model, work_opt
    finally:
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    if same_times_on_every_rank and _collectives(module):  # every rank plans on rank 0's times: one graph
        import torch.distributed as dist

        shared = [module.analyses[PROFILE]]
        dist.broadcast_object_list(shared, src=0, group=_group_of(module))
        module.analyses[PROFILE] = shared[0]
    module.header.pipeline.append(f"profile{{reps={reps},warmup=1}}")
    PassManager(build_pipeline("liveness"), verify=verify).run(module)
    plan_within(module, plan_pass, verify)


#: Plans made again, each to a budget lowered by what the last one's rewrite overshot.
TIGHTENINGS = 5


def plan_within(module: Module, plan_pass, verify: bool) -> None:
    """Plan ``module`` (profiled, with liveness) with ``plan_pass`` and rewrite it so that its
    simulated peak is within the budget asked, not only the plan's prediction.

    The two agree byte for byte wherever the schedule model describes what the rewrite does
    (every step measured so far, sharded ones included since gathered parameters are priced
    sources); should they differ, the plan is made again from the module as it was, to the budget minus
    the overshoot (twice it the second time, and so on), at most :data:`TIGHTENINGS` times;
    the plan block records the budget the last plan was made to. A budget that still cannot
    be met raises RewriteOverBudget (an InfeasibleBudget) stating the lowest simulated peak
    reached, which is not a floor: plans differ with the budget."""
    from acir.errors import InfeasibleBudget, RewriteOverBudget
    from acir.ir.analyses import LIVENESS, PLAN
    from acir.passes.planner_base import FixedPlanner
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    pristine = _snapshot(module)
    target = None
    lowest = None
    plans = 0
    for attempt in range(TIGHTENINGS + 1):
        try:
            PassManager([plan_pass] + build_pipeline("rewrite"), verify=verify).run(module)
        except InfeasibleBudget:
            if target is None:
                raise
            break  # a tightened budget below the planner's floor: the budget asked is what failed
        plans += 1
        plan, peak = module.analyses[PLAN], module.analyses[LIVENESS].simulated_peak_bytes
        target = plan.budget_bytes if target is None else target
        lowest = peak if lowest is None else min(lowest, peak)
        if peak <= target or isinstance(plan_pass, FixedPlanner):  # a baseline only records its budget
            return
        if attempt == TIGHTENINGS:
            break
        asked = plan.budget_bytes - (peak - target) * (attempt + 1)  # larger steps: a new plan can overshoot more
        if asked <= 0:
            break
        module.header, module.graph, module.analyses = _snapshot(pristine)
        plan_pass = type(plan_pass)(**{**_options(plan_pass), "budget": f"{asked}B"})
    raise RewriteOverBudget(target, lowest, plan_pass.name, plans)


def _snapshot(m) -> tuple:
    """(header, graph, analyses) of ``m`` (a module or such a tuple) to restore a module from: a
    structural copy of the graph (a deepcopy of a 7.8k-node module costs ~0.8 s, this ~0.04 s)
    and of each analysis block (the pass manager restamps blocks in place)."""
    from acir.ir.graph import copy_graph

    header, graph, analyses = (m.header, m.graph, m.analyses) if isinstance(m, Module) else m
    return copy.deepcopy(header), copy_graph(graph), {k: copy.copy(v) for k, v in analyses.items()}


def _options(p) -> dict:
    import dataclasses

    return {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}


def _collectives(module: Module) -> bool:
    return any(n.op.startswith("_c10d_functional.") for n in module.graph.nodes)


def _group_of(module: Module):
    """The process group the module's collectives name."""
    import torch.distributed as dist

    name = next(n.args[2] for n in module.graph.nodes  # (buffer, op or source rank, group, ...)
                if n.op in ("_c10d_functional.all_reduce_.default", "_c10d_functional.broadcast_.default"))
    return dist.distributed_c10d._resolve_process_group(name) if name != dist.group.WORLD.group_name else None
