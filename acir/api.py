"""``acir.compile``: the captured step for a user's own training loop.

    step = acir.compile(model, optimizer, loss_fn, example_batch)
    for batch in loader:
        loss = step(batch)      # forward, backward and optimizer step, in place

The step is traced once from the live model (under fake tensors, so tracing allocates no
activations) and runs the lowered graph on the model's own parameters and optimizer
state. Adam/AdamW are switched to ``capturable=True`` and every parameter's optimizer
state is created up front if it does not exist yet (as a first step would create it),
so one graph serves every iteration; an eager step with that same optimizer gives
bit-identical results. Each parameter is updated as soon as its gradient is final
(``schedule="interleaved"``, the default; ``"eager"`` keeps PyTorch's order). Batches must keep the example batch's structure, shapes and dtypes.

With a ``budget`` (bytes with a unit, ``"3GiB"``, or a percentage of what activation
checkpointing can act on, ``"60%"``), the step is planned and rewritten to fit it:

    step = acir.compile(model, optimizer, loss_fn, example_batch, budget="60%", planner="mutwo")
    step.plan.predicted_peak_bytes, step.plan.budget_bytes

Planning needs run times: the step is profiled first on deep copies of the model and
optimizer (so the originals are not updated, and the RNG state is restored), then
``liveness``, the planner and ``rewrite`` run as in ``acir-opt``. The updates stay
bit-identical to eager PyTorch; a budget below the smallest reachable peak raises
:class:`acir.errors.InfeasibleBudget` saying what that peak is.
"""

from __future__ import annotations

from typing import Any, Callable

from acir.frontend.step import SCHEDULES, CaptureOptions
from acir.ir.analyses import PLAN, PROFILE
from acir.ir.graph import Module, Provenance

__all__ = ["CaptureOptions", "SCHEDULES", "Step", "apply_schedule", "capture", "compile"]


def apply_schedule(module: Module, schedule: str) -> None:
    """Schedule the optimizer of a freshly captured ``module``: ``"interleaved"`` runs the
    ``interleave-optimizer`` pass (recorded in the header's pipeline), ``"eager"`` keeps
    PyTorch's order."""
    from acir.errors import CaptureError

    if schedule not in SCHEDULES:
        raise CaptureError(f"unknown schedule {schedule!r}; use {' or '.join(SCHEDULES)}")
    if schedule == "interleaved":
        from acir.pipeline.manager import PassManager
        from acir.pipeline.registry import build_pipeline

        PassManager(build_pipeline("interleave-optimizer")).run(module)


def capture(opts: CaptureOptions) -> Module:
    """Capture one training iteration of ``opts.model`` under fake tensors (no memory), with
    the optimizer scheduled as ``opts.schedule`` says."""
    from acir.frontend.step import capture_model

    module = capture_model(opts)
    apply_schedule(module, opts.schedule)
    return module


class Step:
    """A compiled training step: ``loss = step(batch)``. ``step.module`` is its acir IR."""

    def __init__(self, module: Module, model, optimizer) -> None:
        from acir.runtime.lower import BoundStep

        self.module = module
        self._bound = BoundStep(module, model, optimizer)

    @property
    def graph_module(self):
        return self._bound.gm

    @property
    def plan(self):
        """The plan the step was rewritten to (``None`` when compiled without a budget)."""
        return self.module.analyses.get(PLAN)

    def __call__(self, batch) -> Any:
        return self._bound(batch)


def compile(model, optimizer, loss_fn: Callable[[Any, Any], Any], example_batch, *, verify: bool = True,  # noqa: A001
            schedule: str = "interleaved", budget: str | None = None, planner: str = "mutwo",
            profile_reps: int = 3) -> Step:
    """Capture ``zero_grad; loss_fn(model, batch).backward(); optimizer.step()`` and return it as a Step;
    with ``budget``, planned by ``planner`` and rewritten to fit it."""
    import torch

    from acir.frontend.optim import optimizer_options, prepare
    from acir.frontend.step import module_from_workload

    prepare(optimizer)
    device = str(next(model.parameters()).device) if any(True for _ in model.parameters()) else "cpu"
    prov = Provenance(model=f"<python:{type(model).__name__}>", optimizer=type(optimizer).__name__.lower(),
                      optimizer_options=optimizer_options(optimizer), device=device,
                      torch_version=torch.__version__)
    module = module_from_workload(model, optimizer, loss_fn, example_batch, prov)
    apply_schedule(module, schedule)
    if verify:
        from acir.ir.verify import verify as verify_ir

        verify_ir(module)
    if budget is not None:
        _plan_and_rewrite(module, model, optimizer, example_batch, budget, planner, profile_reps, verify)
    return Step(module, model, optimizer)


def _plan_and_rewrite(module: Module, model, optimizer, batch, budget: str, planner: str, reps: int,
                      verify: bool) -> None:
    import copy

    import torch

    from acir.errors import ParseError
    from acir.passes.profile import profile_step
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import instantiate, pass_class
    from acir.pipeline.syntax import PassSpec

    cls = pass_class(planner)
    if "budget" not in [o.key for o in cls.options()]:
        raise ParseError(f"{planner!r} is not a planner; use mutwo, optimal, chen-sqrt, recompute-all or keep-all")
    plan_pass = instantiate(PassSpec(planner, {"budget": str(budget)}))
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        work_model, work_opt = copy.deepcopy((model, optimizer))
        module.analyses[PROFILE] = profile_step(module, work_model, work_opt, batch, reps, 1)
        del work_model, work_opt
    finally:
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    module.header.pipeline.append(f"profile{{reps={reps},warmup=1}}")
    passes = [instantiate(PassSpec("liveness", {})), plan_pass, instantiate(PassSpec("rewrite", {}))]
    PassManager(passes, verify=verify).run(module)
