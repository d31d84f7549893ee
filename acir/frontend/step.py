"""Capture: a model by name (or the user's factory) -> an annotated acir Module.

The workload and optimizer are built inside a ``FakeTensorMode``, so capturing a batch
that would not fit in memory costs no memory. A factory that cannot run on fake tensors
(a weight initialiser calling ``.item()``, a checkpoint read from a file), or whose model
holds a tensor that is neither a parameter nor a buffer (the step reads its data), is
built for real and turned into fake tensors; that costs its parameter and buffer bytes for
a moment, and the header's producer records it (:func:`real_build`). The graph is in PyTorch's order; the schedule
(``interleave-optimizer`` by default) is a pass, applied by :func:`acir.api.capture`. The provenance (model spec, sizes,
optimizer and its hyper-parameters, seed, torch version) is recorded so that
``acir-run`` can rebuild the very same model, batch and optimizer later.
"""

from __future__ import annotations

from dataclasses import dataclass

from acir import __version__
from acir.errors import CaptureError
from acir.frontend.optim.updates import Updates
from acir.frontend.trace import Phase, TracedStep
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
    clip_grad_norm: float | None = None  # clip_grad_norm_(model.parameters(), this) before the update
    accumulate: int = 1  # micro-batches per optimizer step; >1 captures the last one (it clips and updates)


def build_workload(opts: CaptureOptions | Provenance, as_fake=None):
    """(workload, optimizer) for ``opts`` built from ``opts.seed``, in the current tensor mode;
    with ``as_fake`` (a ``FakeTensorMode``), built for real and then turned into its fake
    tensors, the optimizer made on those (see :func:`acir.frontend.zoo.to_fake`)."""
    import contextlib

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
    if next(iter(wl.model.parameters()), None) is None:
        raise CaptureError(f"model {opts.model} has no parameters, so a training step would have nothing to train; "
                           "acir captures training steps of models with at least one nn.Parameter")
    if as_fake is not None:
        wl.real_bytes = zoo.to_fake(wl, as_fake)
    with as_fake if as_fake is not None else contextlib.nullcontext():
        opt = make_optimizer(opts.optimizer, wl.model.parameters(), lr)
    return wl, opt


#: What the header's producer says after the version when the model had to be built for real.
REAL_BUILD_NOTE = "; model built for real ({} bytes of parameters and buffers): {}"


def _build_for_capture(opts: CaptureOptions):
    """(workload, optimizer), fake: built under fake tensors (no memory) when the factory allows
    it, else built for real and turned into fake tensors (``wl.real_bytes`` says what it held)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from acir.frontend import zoo

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    try:
        with mode:
            built = build_workload(opts)
    except Exception as e:
        if not zoo.worth_building_for_real(e):
            raise
        return _build_for_real(opts, e.__cause__ if isinstance(e, CaptureError) and e.__cause__ is not None else e)
    stray = _made_under_another_mode(built[0].model, mode)
    if stray:  # tracing would mix two fake modes: build it for real instead
        return _build_for_real(opts, f"{stray} was made under another fake-tensor mode than the rest of the "
                                     "model (a module deep-copied while it was built, as nn.TransformerEncoder "
                                     "copies its layer)")
    return built


def _made_under_another_mode(model, mode) -> str:
    """The first parameter or buffer of ``model`` that is a fake tensor of a mode other than ``mode``, or ""."""
    from torch._subclasses.fake_tensor import FakeTensor

    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if isinstance(t, FakeTensor) and t.fake_mode is not mode:
            return name
    return ""


def _build_for_real(opts: CaptureOptions, why: BaseException | str):
    """(workload, optimizer) built for real, then turned into fake tensors, because of ``why``."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    wl, opt = build_workload(opts, as_fake=FakeTensorMode(allow_non_fake_inputs=True))
    text = str(why).strip()
    text = text.splitlines()[0] if text else ""
    wl.real_build_reason = text if isinstance(why, str) else f"{type(why).__name__}: {text}"
    return wl, opt


def real_build(module: Module) -> tuple[int, str] | None:
    """(parameter and buffer bytes, why) when ``module``'s model had to be built for real to be
    captured (its factory could not run under fake tensors), else None."""
    import re

    m = re.search(r"; model built for real \((\d+) bytes of parameters and buffers\): (.*)$", module.header.producer)
    return (int(m.group(1)), m.group(2)) if m else None


def module_from_workload(model, opt, loss_fn, batch, provenance: Provenance,
                         clip_grad_norm: float | None = None, updates: Updates | None = None) -> Module:
    """Capture one training step of ``model`` with ``opt`` exactly as built, with ``updates``
    (by default planned now: the optimizer's state is created as torch's step would create
    it); state created for parameters that get no gradient is removed again."""
    return capture_micro_batch(model, opt, loss_fn, batch, provenance, clip_grad_norm, updates)[0]


def capture_micro_batch(model, opt, loss_fn, batch, provenance: Provenance, clip_grad_norm: float | None = None,
                        updates: Updates | None = None, phase: Phase = Phase()) -> tuple[Module, TracedStep]:
    """:func:`module_from_workload` for one micro-batch of gradient accumulation (``phase``); also
    returns the trace (which parameters it updated, which gradients it hands on)."""
    from acir.frontend.fx_import import import_step
    from acir.frontend.optim import check_optimizer
    from acir.frontend.optim.updates import Updates, plan_updates
    from acir.frontend.trace import trace_step

    rule = check_optimizer(opt, model)
    if updates is None:
        updates = plan_updates(model, opt, rule) if phase.steps else Updates(rule, [])
    traced = trace_step(model, opt, loss_fn, batch, updates, clip_grad_norm, phase)
    updates.discard_created(set(traced.updated), opt.state)
    graph = import_step(traced)
    return Module(Header(producer=f"acir {__version__}", provenance=provenance), graph), traced


def capture_model(opts: CaptureOptions) -> Module:
    """Capture one training iteration of ``opts.model`` under fake tensors, in PyTorch's order
    (the optimizer after the whole backward); :func:`acir.api.capture` applies ``opts.schedule``."""
    import torch

    from acir.frontend import zoo
    from acir.frontend.fx_import import ClosedOverTensor
    from acir.frontend.optim import optimizer_options

    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise CaptureError("--device cuda asked for, but torch sees no CUDA device on this machine")
    seq_len, image_size = zoo.effective_sizes(opts.model, opts.seq_len, opts.image_size)
    opts = CaptureOptions(**{**opts.__dict__, "seq_len": seq_len, "image_size": image_size})
    wl, opt = _build_for_capture(opts)
    if opts.schedule not in SCHEDULES:
        raise CaptureError(f"unknown schedule {opts.schedule!r}; use {' or '.join(SCHEDULES)}")
    if opts.accumulate < 1:
        raise CaptureError(f"accumulate must be at least 1 micro-batch, not {opts.accumulate}")
    prov = Provenance(model=opts.model, batch_size=opts.batch_size, seq_len=seq_len, image_size=image_size,
                      optimizer=opts.optimizer, optimizer_options=optimizer_options(opt), seed=opts.seed,
                      device=opts.device, dtype="float32", torch_version=torch.__version__,
                      accumulate=opts.accumulate if opts.accumulate > 1 else 0,
                      clip_grad_norm=opts.clip_grad_norm or 0.0)

    def capture_built(wl, opt) -> Module:
        phase = Phase()
        if opts.accumulate > 1:  # the last micro-batch: the gradients of the earlier ones come in, then the update
            _, first = capture_micro_batch(wl.model, opt, wl.loss_fn, wl.batch, prov,
                                           phase=Phase(opts.accumulate, (), False))
            phase = Phase(opts.accumulate, tuple(first.grad_names), True)
            params = dict(wl.model.named_parameters())
            for name in phase.carried:  # fake tensors: they stand for the gradients, and cost nothing
                params[name].grad = torch.zeros_like(params[name])
        return capture_micro_batch(wl.model, opt, wl.loss_fn, wl.batch, prov, opts.clip_grad_norm, phase=phase)[0]

    try:
        module = capture_built(wl, opt)
    except ClosedOverTensor as e:  # a tensor the model holds, made fake by the fake build: build for real
        if wl.real_bytes is not None:
            raise
        wl, opt = _build_for_real(opts, f"the model holds a tensor that is not a parameter or buffer, {e.tensor}, "
                                        "and the step reads its data")
        module = capture_built(wl, opt)
    if wl.real_bytes is not None:
        module.header.producer += REAL_BUILD_NOTE.format(wl.real_bytes, wl.real_build_reason)
    return module


#: How the optimizer is scheduled in a captured step (see passes/interleave_optimizer.py).
SCHEDULES = ("interleaved", "eager")
