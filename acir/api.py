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
"""

from __future__ import annotations

from typing import Any, Callable

from acir.ir import Module, Provenance


class Step:
    """A compiled training step: ``loss = step(batch)``. ``step.module`` is its acir IR."""

    def __init__(self, module: Module, model, optimizer) -> None:
        from acir.lower_fx import BoundStep

        self.module = module
        self._bound = BoundStep(module, model, optimizer)

    @property
    def graph_module(self):
        return self._bound.gm

    def __call__(self, batch) -> Any:
        return self._bound(batch)


def compile(model, optimizer, loss_fn: Callable[[Any, Any], Any], example_batch, *, verify: bool = True,  # noqa: A001
            schedule: str = "interleaved") -> Step:
    """Capture ``zero_grad; loss_fn(model, batch).backward(); optimizer.step()`` and return it as a Step."""
    import torch

    from acir.capture_step import module_from_workload
    from acir.optim import optimizer_options, prepare

    prepare(optimizer)
    device = str(next(model.parameters()).device) if any(True for _ in model.parameters()) else "cpu"
    prov = Provenance(model=f"<python:{type(model).__name__}>", optimizer=type(optimizer).__name__.lower(),
                      optimizer_options=optimizer_options(optimizer), device=device,
                      torch_version=torch.__version__)
    module = module_from_workload(model, optimizer, loss_fn, example_batch, prov)
    if schedule == "interleaved":
        from acir.capture_step import interleave

        interleave(module)
    if verify:
        from acir.verify import verify as verify_ir

        verify_ir(module)
    return Step(module, model, optimizer)
