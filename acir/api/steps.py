"""``acir.compile``: a drop-in for the training loop people write, bit for bit.

The reference a compiled step must equal is the user's own eager loop, with the optimizer
exactly as they built it::

    for batch in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)   # when asked
        optimizer.step()
        scheduler.step()                                                    # any, or none

With ``accumulate=K`` the reference is ``(loss_fn(model, batch) / K).backward()`` for each
micro-batch and, after every K-th, clipping, ``optimizer.step()`` and
``optimizer.zero_grad(set_to_none=True)``: the first micro-batch's graph hands its gradients
back as the parameters' ``.grad``, the later ones take them in (``GRADIENT`` inputs) and add
to them in place, and the K-th clips and updates; so accumulated gradients live from one
micro-batch to the next in the memory model too.

A :class:`Step` holds one captured graph per *signature* of a call, and captures a new one
(planned again with the same budget) the first time a signature is met:

* the batch's tensor shapes and its non-tensor leaves' values (the last, smaller batch of
  an epoch, another sequence length, ``(x, 3.0)`` after ``(x, 1.0)``: a number in the batch
  is never baked in silently). A batch of another structure, dtype or device is an error;
* the optimizer's branch decisions (:mod:`acir.frontend.optim`): weight decay on or off,
  a first momentum step, RAdam's rectification ...; which parameters train
  (``requires_grad``); and which modules are in training mode (``model.eval()`` turns
  dropout off and batch norm onto its running statistics: another graph).

Everything else a loop changes between calls is read at every call: the hyper-parameters
of every param group are ``HYPERPARAM`` inputs of the graph (so every scheduler, parameter
groups with their own values, ``load_state_dict`` of the optimizer), and parameters,
buffers and optimizer state are the model's and the optimizer's own tensors, looked up
anew (so ``state_dict()`` is eager's, and a run resumes bit for bit). The cache is bounded
(``max_graphs``, least recently used out), and one line on stderr says when a graph was
captured (``quiet=True`` silences it).

What cannot be honoured is refused when compiling, with one sentence: an optimizer acir
does not reproduce, or one configured in a way it does not (:mod:`acir.frontend.optim`),
hooks that the capture would drop (module forward/backward hooks, tensor hooks on
parameters, optimizer step hooks), a step whose Python side the graph would bake in (a draw
from Python's or NumPy's generator, a module attribute the forward changes, a branch on a
tensor's value: :mod:`acir.frontend.trace`), a model without parameters. A hook registered after
compiling is refused at the next call, and so is an optimizer parameter the model no longer
holds (one replaced by a new ``nn.Parameter``).
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from acir.api.distributed_steps import (
    Distributed,
    distributed_setup,
    every_rank_planned,
    make_data_parallel,
    plan_sharded,
    rank0_plan_everywhere,
    same_graph_on_every_rank,
    unsharded_stand_ins,
)
from acir.errors import AcirError, CaptureError, RunError, UsageError
from acir.frontend.optim import mark_stepped
from acir.frontend.step import SCHEDULES
from acir.ir.analyses import PLAN
from acir.ir.graph import Module, Provenance

__all__ = ["Step", "compile"]


@dataclass(frozen=True)
class _Options:
    schedule: str
    budget: str | None
    planner: str
    profile_reps: int
    clip_grad_norm: float | None
    accumulate: int
    distributed: Distributed | None
    verify: bool
    max_graphs: int
    quiet: bool


@dataclass
class _Graph:
    """One captured (and possibly rewritten) step, bound to the live model and optimizer."""

    module: Module
    bound: Any            # acir.runtime.lower.BoundStep
    updated: frozenset[str]
    grad_names: tuple[str, ...]  # a micro-batch that does not step: the gradients it returns after the loss
    seconds: float        # capture (+ plan and rewrite) time


def _leaf_key(leaf) -> tuple:
    import torch

    if isinstance(leaf, torch.Tensor):
        return ("tensor", tuple(leaf.shape))
    return ("value", type(leaf).__name__, repr(leaf))


def _structure(batch) -> tuple:
    """What may not change between batches: the pytree structure and each tensor's dtype and device."""
    import torch
    from torch.utils._pytree import tree_flatten

    leaves, spec = tree_flatten(batch)
    return spec, tuple((str(x.dtype), str(x.device)) if isinstance(x, torch.Tensor) else None for x in leaves)


class Step:
    """A compiled training step: ``loss = step(batch)`` (see the module docstring)."""

    def __init__(self, model, optimizer, loss_fn: Callable[[Any, Any], Any], example_batch, options: _Options) -> None:
        from acir.frontend.optim import check_optimizer

        self.model, self.optimizer, self.loss_fn, self.options = model, optimizer, loss_fn, options
        self._rule = check_optimizer(optimizer, model)
        self._structure = _structure(example_batch)
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._last: _Graph | None = None
        self._hooks_checked_at = -1  # _hook_stamp() when the model last passed _check_hooks
        self._updated: frozenset[str] | None = None      # what the last capture updated ...
        self._trainable: tuple[bool, ...] | None = None  # ... with these parameters trainable
        self.captures = 0
        self.last_total_norm = None
        self._micro = 0                              # micro-batches since the last update
        self._carried: tuple[str, ...] = ()          # parameters whose .grad the earlier micro-batches left

    # -- public views ------------------------------------------------------------------

    @property
    def module(self) -> Module | None:
        """The IR of the graph the last call ran (or was captured for the example batch)."""
        return self._last.module if self._last is not None else None

    @property
    def graph_module(self):
        return self._last.bound.gm if self._last is not None else None

    @property
    def plan(self):
        """The plan the last graph was rewritten to (``None`` when compiled without a budget)."""
        return self.module.analyses.get(PLAN) if self.module is not None else None

    @property
    def graphs(self) -> int:
        """How many graphs are cached now."""
        return len(self._graphs)

    # -- a call ------------------------------------------------------------------------

    def __call__(self, batch) -> Any:
        stamp = _hook_stamp()
        if stamp != self._hooks_checked_at:  # a hook registered since compiling would silently not run
            _check_hooks(self.model)
            self._hooks_checked_at = stamp
        sig, updates = self._signature_and_updates(batch)
        g = self._graphs.get(sig)
        if g is None:
            g = self._capture(sig, batch, updates)
        else:
            self._graphs.move_to_end(sig)
        self._last = g
        scalars = updates.scalar_values()
        try:
            outputs = g.bound.run(batch, {k: scalars[k] for k in g.bound.scalar_names})
        except RuntimeError as e:
            if self.options.distributed is None:
                raise
            d = self.options.distributed
            raise RunError(f"rank {d.rank} of {d.world}: the step failed while the ranks work together ({e}); "
                           "another rank may have raised or died") from e
        if self._phase().steps:
            mark_stepped(self.optimizer)
            for p in self.model.parameters():  # optimizer.zero_grad(set_to_none=True)
                p.grad = None
            self._micro, self._carried = 0, ()
            if self.options.clip_grad_norm is not None:
                self.last_total_norm = outputs[1]
        else:  # the gradients accumulated so far are the parameters' .grad, as after an eager backward()
            params = dict(self.model.named_parameters())
            for name, grad in zip(g.grad_names, outputs[1:]):
                params[name].grad = grad
            self._micro, self._carried = self._micro + 1, g.grad_names
        return outputs[0]

    def _phase(self):
        from acir.frontend.trace import Phase

        k = self.options.accumulate
        return Phase(k, self._carried, self._micro == k - 1)

    def _signature_and_updates(self, batch):
        import torch

        from acir.frontend.optim.updates import plan_updates

        structure = _structure(batch)
        if structure != self._structure:
            raise RunError(self._structure_error(structure))
        from acir.frontend.optim.updates import Updates

        trainable = tuple(p.requires_grad for p in self.model.parameters())
        phase = self._phase()
        if phase.steps:
            only = self._updated if trainable == self._trainable else None
            updates = plan_updates(self.model, self.optimizer, self._rule, only=only)
        else:  # no update in this micro-batch: the optimizer is not touched
            updates = Updates(self._rule, [])
        leaves = torch.utils._pytree.tree_leaves(batch)
        modes = tuple(m.training for m in self.model.modules())  # model.eval(): dropout off, running statistics
        sig = (tuple(_leaf_key(x) for x in leaves), trainable, updates.signature(), phase, modes)
        return sig, updates

    def _structure_error(self, got: tuple) -> str:
        spec, kinds = got
        if spec != self._structure[0]:
            return (f"the batch's structure differs from the example batch's ({spec} vs {self._structure[0]}); "
                    "compile a step for each batch structure")
        for i, (a, b) in enumerate(zip(kinds, self._structure[1])):
            if a != b:
                return (f"batch leaf {i} is {a or 'not a tensor'} where the example batch had {b or 'no tensor'}; "
                        "a compiled step keeps the dtypes and devices of its example batch (compile another)")
        return "the batch does not match the example batch"

    def _capture(self, sig: tuple, batch, updates, together: bool = False) -> _Graph:
        """Capture (and plan) the graph of ``sig``. ``together``: every rank does so now (when
        compiling), so the ranks may talk: they plan on rank 0's profile and check they captured
        the same collectives. Later captures (a new shape on one rank only, say) must not talk:
        another rank may be running its step's collectives meanwhile."""
        import torch

        from acir.api.capturing import apply_schedule
        from acir.api.planning import plan_and_rewrite
        from acir.frontend.optim import optimizer_options
        from acir.frontend.step import capture_micro_batch
        from acir.runtime.lower import BoundStep, updated_parameters

        t0 = time.perf_counter()
        o = self.options
        params = list(self.model.parameters())
        prov = Provenance(model=f"<python:{type(self.model).__name__}>",
                          optimizer=type(self.optimizer).__name__.lower(),
                          optimizer_options=optimizer_options(self.optimizer),
                          device=str(params[0].device), torch_version=torch.__version__)
        phase = sig[3]
        prov.accumulate = o.accumulate if o.accumulate > 1 else 0
        prov.clip_grad_norm = o.clip_grad_norm or 0.0
        sharded = o.distributed is not None and o.distributed.kind == "fsdp"
        if sharded:  # the single-process step on stand-ins of the full parameters, which the fsdp pass shards
            with unsharded_stand_ins(self.model, self.optimizer, updates) as (opt, full_updates):
                module, traced = capture_micro_batch(self.model, opt, self.loss_fn, batch, prov, o.clip_grad_norm,
                                                     updates=full_updates, phase=phase)
            updates.discard_created(set(traced.updated), self.optimizer.state)
        else:
            module, traced = capture_micro_batch(self.model, self.optimizer, self.loss_fn, batch, prov,
                                                 o.clip_grad_norm, updates=updates, phase=phase)
        apply_schedule(module, o.schedule)
        if o.distributed is not None:
            # DDP broadcasts buffers before a forward that follows a synchronised one: with
            # no_sync() accumulation, before each cycle's first micro-batch only
            # with a budget, FSDP2's reshard-after-forward is the planner's choice, parameter by parameter
            make_data_parallel(module, o.distributed, reduce=phase.steps, broadcast=not phase.carried,
                                reshard=o.budget is None)
        if o.verify:
            from acir.ir.verify import verify

            verify(module)
        failed: AcirError | None = None
        unplanned = None
        try:
            if o.budget is not None and sharded:
                unplanned = plan_sharded(module, self.model, self.optimizer, batch, o)
            elif o.budget is not None:
                plan_and_rewrite(module, self.model, self.optimizer, batch, o.budget, o.planner, o.profile_reps,
                                 o.verify, same_times_on_every_rank=together)
        except AcirError as e:
            if o.distributed is None or not together:
                raise
            failed = e  # the other ranks must hear of it, or they would wait for this one
        if o.distributed is not None and together:
            every_rank_planned(failed, o.distributed)
            if unplanned is not None:
                try:
                    rank0_plan_everywhere(module, unplanned, o.distributed, o.verify)
                except AcirError as e:
                    failed = e
                every_rank_planned(failed, o.distributed)
            same_graph_on_every_rank(module, o.distributed)
        g = _Graph(module, BoundStep(module, self.model, self.optimizer), frozenset(updated_parameters(module)),
                   tuple(traced.grad_names), time.perf_counter() - t0)
        if phase.steps:
            self._updated, self._trainable = g.updated, sig[1]
        self._graphs[sig] = g
        while len(self._graphs) > o.max_graphs:
            self._graphs.popitem(last=False)
        self.captures += 1
        if not o.quiet:
            shapes = [k[1] for k in sig[0] if k[0] == "tensor"]
            what = "the first step" if self.captures == 1 else _what_changed(sig, list(self._graphs)[:-1])
            plan = f", planned to {o.budget}" if o.budget is not None else ""
            print(f"acir: captured {what} (batch shapes {shapes}{plan}) in {g.seconds:.1f} s; "
                  f"{len(self._graphs)} graph(s) cached", file=sys.stderr)
        return g


def _what_changed(sig: tuple, others: list[tuple]) -> str:
    """Which part of a call's signature no cached graph had: for the one line a capture prints."""
    if not others:
        return "a step"
    near = max(others, key=lambda o: sum(a == b for a, b in zip(sig, o)))
    parts = ["a new batch shape or batch value", "a new set of trainable parameters",
             "a new optimizer decision (a first momentum step, a switched branch ...)", "another micro-batch phase",
             "modules switched between train() and eval()"]
    return " and ".join(p for p, a, b in zip(parts, sig, near) if a != b) or "a step"


def _hook_stamp() -> int:
    """torch's count of hook handles ever made (every module and tensor hook takes one): when it
    has not moved since the last check, no hook can have been registered (the check costs about
    1 ms on ResNet-152, this nothing)."""
    from torch.utils.hooks import RemovableHandle

    return RemovableHandle.next_id


def _check_hooks(model) -> None:
    """Refuse hooks a captured step would not run (or would run only while tracing)."""
    import torch
    import torch.nn.modules.module as module_mod

    globals_ = [n for n in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                            "_global_backward_pre_hooks") if getattr(module_mod, n, None)]
    if globals_:
        raise CaptureError("global module hooks are registered (torch.nn.modules.module.register_module_*_hook); "
                           "a captured step would not run them: remove them before compiling")
    for name, m in model.named_modules():
        kinds = [k for k in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
                 if getattr(m, k, None)]
        if kinds:
            where = name or "the model"
            raise CaptureError(f"{where} ({type(m).__name__}) has {kinds[0].strip('_').replace('_', ' ')}; a captured "
                               "step runs them only while tracing, not at every call: remove them before compiling")
    for name, p in model.named_parameters():
        if getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None):
            raise CaptureError(f"parameter {name} has a tensor hook (register_hook or "
                               "register_post_accumulate_grad_hook); a captured step would not call it")
        if isinstance(p, torch.Tensor) and type(p) is not torch.nn.Parameter and not isinstance(p, torch.nn.Parameter):
            raise CaptureError(f"parameter {name} is a {type(p).__name__}; acir captures plain parameters only")


def compile(model, optimizer, loss_fn: Callable[[Any, Any], Any], example_batch, *,  # noqa: A001
            budget: str | None = None, planner: str = "mutwo", clip_grad_norm: float | None = None, accumulate: int = 1,
            schedule: str = "interleaved", profile_reps: int = 3, verify: bool = True, max_graphs: int = 8,
            quiet: bool = False, distributed: str | None = None, process_group=None,
            bucket_cap_mb: float = 25) -> Step:
    """A :class:`Step` that runs ``loss_fn(model, batch).backward()``, optional
    ``clip_grad_norm_(model.parameters(), clip_grad_norm)``, ``optimizer.step()`` and
    ``optimizer.zero_grad(set_to_none=True)`` as one captured graph per batch shape; with
    ``accumulate=K`` each call is one micro-batch, ``(loss_fn(model, batch) / K).backward()``,
    and every K-th also clips and steps (the gradients in between are the parameters' own
    ``.grad``, as eagerly). With ``budget`` (bytes with a unit, ``"3GiB"``, or a percentage of
    what activation checkpointing can act on, ``"60%"``) each graph is planned by ``planner``
    and rewritten to fit it. With ``distributed="ddp"``, inside an initialised process group
    (``process_group``, default the world), the step is one rank of data-parallel training
    that equals ``DistributedDataParallel(model)`` with its defaults (``bucket_cap_mb``):
    parameters and buffers are broadcast from rank 0 now, buffers again before each forward,
    and gradients averaged across ranks in DDP's buckets (the ``ddp`` pass); with
    ``accumulate=K``, as DDP under ``no_sync()`` for all but every K-th micro-batch. With
    ``distributed="fsdp"`` it equals FSDP2, ``fully_shard`` applied to every repeated block and
    to the root: the model's parameters are sharded in place now, as DTensors exactly as
    ``fully_shard`` leaves them (the optimizer is pointed at them), and each call all-gathers
    parameters and reduce-scatters gradients per block (the ``fsdp`` pass).
    A call returns the (unscaled) loss of its batch; ``step.last_total_norm``
    is the last clipped total norm. See the module docstring for what is read at every call
    and what is refused."""
    import math

    import torch

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"acir.compile needs the model (a torch.nn.Module) first, not {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise UsageError(f"acir.compile needs the optimizer (a torch.optim.Optimizer) second, not "
                         f"{type(optimizer).__name__}")
    if not callable(loss_fn):
        raise UsageError(f"loss_fn must be callable as loss_fn(model, batch), not {type(loss_fn).__name__}")
    if not any(True for _ in model.parameters()):
        raise UsageError(f"the model ({type(model).__name__}) has no parameters to train")
    if schedule not in SCHEDULES:
        raise UsageError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    if isinstance(profile_reps, bool) or not isinstance(profile_reps, int) or profile_reps < 1:
        raise UsageError(f"profile_reps must be a whole number of at least 1, not {profile_reps!r}")
    if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
        raise UsageError(f"max_graphs must be a whole number of at least 1, not {max_graphs!r}")
    if clip_grad_norm is not None:
        if isinstance(clip_grad_norm, bool) or not isinstance(clip_grad_norm, (int, float)) \
                or not math.isfinite(clip_grad_norm) or clip_grad_norm <= 0:
            raise UsageError(f"clip_grad_norm must be a positive finite number, not {clip_grad_norm!r}")
        clip_grad_norm = float(clip_grad_norm)
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise UsageError(f"accumulate must be a whole number of micro-batches, at least 1, not {accumulate!r}")
    if budget is not None:
        from acir.analysis.budget import parse_budget
        from acir.api.planning import planner_pass

        parse_budget(str(budget))
        planner_pass(planner, str(budget))
    _check_hooks(model)
    if clip_grad_norm is not None:
        in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
        loose = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in in_opt]
        if loose:
            raise UsageError(f"{len(loose)} trainable parameters are not in the optimizer ({', '.join(loose[:3])}"
                             f"{' ...' if len(loose) > 3 else ''}): eagerly, zero_grad never clears their .grad, so "
                             "clip_grad_norm_(model.parameters()) would count their ever-growing gradients; freeze "
                             "them (requires_grad_(False)) or give them to the optimizer")
    if distributed == "fsdp" and accumulate > 1:
        raise UsageError("accumulate > 1 with distributed=\"fsdp\" is not supported yet (FSDP2 reduce-scatters "
                         "every micro-batch unless told not to); accumulate without fsdp for now")
    if distributed == "fsdp" and clip_grad_norm is not None:
        raise UsageError("clip_grad_norm with distributed=\"fsdp\" is not supported yet (the total norm of sharded "
                         "gradients is all-reduced across ranks as DTensor computes it); clip without fsdp for now")
    if distributed == "fsdp":
        from acir.frontend.optim import check_optimizer

        check_optimizer(optimizer, model)  # before the model is sharded in place
    dist_setup = distributed_setup(distributed, process_group, bucket_cap_mb, model, optimizer)
    options = _Options(schedule, None if budget is None else str(budget), planner, profile_reps, clip_grad_norm,
                       accumulate, dist_setup, verify, max_graphs, quiet)
    step = Step(model, optimizer, loss_fn, example_batch, options)
    sig, updates = step._signature_and_updates(example_batch)
    try:
        step._last = step._capture(sig, example_batch, updates, together=True)
    finally:
        updates.discard_created(set(), optimizer.state)  # no step ran: the optimizer is left as it was given
    return step
