"""Fitting a captured step to a memory budget from Python: profile on copies, plan, rewrite.

Planning needs run times, so the step is profiled first on deep copies of the model and
optimizer (the originals are not updated, and the random-number state is put back), then
``liveness``, the planner and ``rewrite`` run as in ``acir-opt``. A budget below the
smallest reachable peak raises :class:`acir.errors.InfeasibleBudget` stating that peak.
"""

from __future__ import annotations

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
    import copy

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
    passes = build_pipeline("liveness") + [plan_pass] + build_pipeline("rewrite")
    PassManager(passes, verify=verify).run(module)


def _collectives(module: Module) -> bool:
    return any(n.op.startswith("_c10d_functional.") for n in module.graph.nodes)


def _group_of(module: Module):
    """The process group the module's collectives name."""
    import torch.distributed as dist

    name = next(n.args[2] for n in module.graph.nodes if n.op == "_c10d_functional.all_reduce_.default")
    return dist.distributed_c10d._resolve_process_group(name) if name != dist.group.WORLD.group_name else None
