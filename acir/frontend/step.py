"""Capture: a model by name (or the user's factory) -> an annotated acir Module.

The workload and optimizer are built inside a ``FakeTensorMode``, so capturing a batch
that would not fit in memory costs no memory. The graph is in PyTorch's order; the schedule
(``interleave-optimizer`` by default) is a pass, applied by :func:`acir.api.capture`. The provenance (model spec, sizes,
optimizer and its hyper-parameters, seed, torch version) is recorded so that
``acir-run`` can rebuild the very same model, batch and optimizer later.
"""

from __future__ import annotations

from dataclasses import dataclass

from acir import __version__
from acir.errors import CaptureError
from acir.frontend.optim.updates import Updates
from acir.ir.graph import Header, Module, Provenance


@dataclass(frozen=True)
class CaptureOptions:
    model: str
    batch_size: int = 2
    seq_len: int = 0
    image_size: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    schedule: str = "interleaved"  # or "eager": the optimizer after the whole backward


def build_workload(opts: CaptureOptions | Provenance):
    """(workload, optimizer) for ``opts`` built from ``opts.seed``, in the current tensor mode."""
    import torch

    from acir.frontend import zoo
    from acir.frontend.optim import make_optimizer

    torch.manual_seed(opts.seed)
    lr = opts.lr if isinstance(opts, CaptureOptions) else float(opts.optimizer_options.get("lr", "0.001"))
    wl = zoo.build(opts.model, opts.batch_size, opts.seq_len, opts.image_size)
    if opts.device != "cpu":
        wl.model.to(opts.device)
        from torch.utils._pytree import tree_map

        wl.batch = tree_map(lambda t: t.to(opts.device) if isinstance(t, torch.Tensor) else t, wl.batch)
    opt = make_optimizer(opts.optimizer, wl.model.parameters(), lr)
    return wl, opt


def module_from_workload(model, opt, loss_fn, batch, provenance: Provenance,
                         clip_grad_norm: float | None = None, updates: Updates | None = None) -> Module:
    """Capture one training step of ``model`` with ``opt`` exactly as built, with ``updates``
    (by default planned now: the optimizer's state is created as torch's step would create
    it); state created for parameters that get no gradient is removed again."""
    from acir.frontend.fx_import import import_step
    from acir.frontend.optim import check_optimizer
    from acir.frontend.optim.updates import plan_updates
    from acir.frontend.trace import trace_step

    if updates is None:
        updates = plan_updates(model, opt, check_optimizer(opt, model))
    traced = trace_step(model, opt, loss_fn, batch, updates, clip_grad_norm)
    updates.discard_created(set(traced.updated), opt.state)
    graph = import_step(traced)
    return Module(Header(producer=f"acir {__version__}", provenance=provenance), graph)


def capture_model(opts: CaptureOptions) -> Module:
    """Capture one training iteration of ``opts.model`` under fake tensors, in PyTorch's order
    (the optimizer after the whole backward); :func:`acir.api.capture` applies ``opts.schedule``."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from acir.frontend import zoo
    from acir.frontend.optim import optimizer_options

    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise CaptureError("--device cuda asked for, but torch sees no CUDA device on this machine")
    seq_len, image_size = zoo.effective_sizes(opts.model, opts.seq_len, opts.image_size)
    opts = CaptureOptions(**{**opts.__dict__, "seq_len": seq_len, "image_size": image_size})
    with FakeTensorMode(allow_non_fake_inputs=True):
        wl, opt = build_workload(opts)
    if opts.schedule not in SCHEDULES:
        raise CaptureError(f"unknown schedule {opts.schedule!r}; use {' or '.join(SCHEDULES)}")
    prov = Provenance(model=opts.model, batch_size=opts.batch_size, seq_len=seq_len, image_size=image_size,
                      optimizer=opts.optimizer, optimizer_options=optimizer_options(opt), seed=opts.seed,
                      device=opts.device, dtype="float32", torch_version=torch.__version__)
    return module_from_workload(wl.model, opt, wl.loss_fn, wl.batch, prov)


#: How the optimizer is scheduled in a captured step (see passes/interleave_optimizer.py).
SCHEDULES = ("interleaved", "eager")
