"""Trace one whole training iteration — forward, loss, backward, optimizer step — with make_fx.

The recipe (../shared/TORCH-NOTES.md): parameters, buffers, optimizer state and batch
leaves become explicit graph inputs (``_reparametrize_module`` with ``tie_weights`` for
models such as BERT whose embeddings are tied), then ``loss.backward()``, gradient
clipping when asked, and each parameter's update as the optimizer's rule reproduces it
(:mod:`acir.frontend.optim`) are traced inside the function; the update's floats are
stand-ins (:func:`sentinel`) that capture turns into ``HYPERPARAM`` graph inputs, so the
live hyper-parameters are read at every call. Tracing runs under fake tensors, so a batch
that would not fit in memory costs none.

Regions are recorded by position: the last graph node when the loss is computed ends the
forward, the last when ``backward()`` returns ends the backward. Module paths come from
forward hooks that note where each module's forward starts and ends in the graph; for the
backward, each autograd node is tagged in the forward with the module it was made in, and
a pre-hook notes where its backward starts (as aot_autograd preserves stack traces).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

from acir.errors import CaptureError
from acir.frontend.optim.updates import Updates
from acir.ir.graph import InputKind


@dataclass
class TracedStep:
    gm: Any                                   # torch.fx.GraphModule
    inputs: list[tuple[InputKind, str]]       # one per placeholder, in order
    forward_end: Any = None                   # last fx node of the forward
    backward_end: Any = None                  # last fx node of the backward
    module_marks: list[tuple[Any, str]] = field(default_factory=list)  # (last node before, path from then on)
    grads: list[Any] = field(default_factory=list)  # the traced p.grad tensors (fake)
    sentinels: dict[float, str] = field(default_factory=dict)  # stand-in float -> its HYPERPARAM input's name
    updated: list[str] = field(default_factory=list)  # the parameters the optimizer updated, in order
    grad_names: list[str] = field(default_factory=list)  # a micro-batch without update: its gradient outputs
    grad_of: dict[str, Any] = field(default_factory=dict)  # parameter name -> its .grad when the backward ends


def batch_leaves(batch) -> tuple[list[tuple[str, Any]], Any]:
    """The tensor leaves of ``batch`` with their names ("batch[0]", "batch['input_ids']")."""
    import torch
    from torch.utils._pytree import keystr, tree_flatten_with_path

    flat, spec = tree_flatten_with_path(batch)
    return [("batch" + keystr(path), leaf) for path, leaf in flat if isinstance(leaf, torch.Tensor)], spec


def rebuild_batch(batch, tensors: list):
    """``batch`` with its tensor leaves replaced, in order, by ``tensors``."""
    import torch
    from torch.utils._pytree import tree_flatten, tree_unflatten

    leaves, spec = tree_flatten(batch)
    it = iter(tensors)
    return tree_unflatten([next(it) if isinstance(x, torch.Tensor) else x for x in leaves], spec)


@dataclass(frozen=True)
class Phase:
    """Where a micro-batch sits in gradient accumulation (``accumulate`` micro-batches per update)."""

    accumulate: int = 1            # micro-batches per optimizer step: the loss is divided by it when > 1
    carried: tuple[str, ...] = ()  # parameters whose .grad the earlier micro-batches left (GRADIENT inputs)
    steps: bool = True             # this micro-batch ends with clipping and the optimizer's update


def step_inputs(model, opt, batch, updates: Updates,
                phase: Phase = Phase()) -> tuple[list[tuple[InputKind, str]], list]:
    """The graph inputs of a step, in order: parameters, buffers, the optimizer state of the
    parameters ``updates`` names (as its rule lists it), carried gradients, batch tensors."""
    import torch

    kinds: list[tuple[InputKind, str]] = []
    tensors: list = []
    for n, p in model.named_parameters():
        kinds.append((InputKind.PARAMETER, n))
        tensors.append(p)
    for n, b in model.named_buffers():
        kinds.append((InputKind.MODULE_BUFFER, n))
        tensors.append(b)
    for u in updates.items:
        state = opt.state.get(u.param, {})
        for key in updates.rule.state_keys(opt.param_groups[u.group]):
            t = state.get(key)
            if not isinstance(t, torch.Tensor):
                raise CaptureError(f"optimizer state {u.name}:{key} is {type(t).__name__}, not a tensor; was the "
                                   "optimizer's state changed by hand?")
            kinds.append((InputKind.OPTIMIZER_STATE, f"{u.name}:{key}"))
            tensors.append(t)
    params = dict(model.named_parameters())
    for name in phase.carried:
        grad = params[name].grad
        if not isinstance(grad, torch.Tensor):
            raise CaptureError(f"parameter {name} has no gradient to accumulate into (its .grad is None)")
        kinds.append((InputKind.GRADIENT, f"{name}:grad"))
        tensors.append(grad)
    leaves, _ = batch_leaves(batch)
    for name, t in leaves:
        kinds.append((InputKind.BATCH, name))
        tensors.append(t)
    return kinds, tensors


#: Stand-ins for the optimizer's floats while tracing: each HYPERPARAM input gets one, and
#: capture maps the float back to the input wherever an op receives it (no real constant is
#: this far out: a huge negative power of two, a different mantissa for each).
def sentinel(k: int) -> float:
    return -(2.0 ** 100) * (1.0 + k / 2.0 ** 24)


def _last_node(graph):
    return next(iter(reversed(graph.nodes)))


@contextlib.contextmanager
def _module_marks(model, marks: list):
    """Record, while tracing, where each submodule's forward begins and ends in the graph."""
    import torch
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    names = {id(m): n for n, m in model.named_modules()}
    stack: list[str] = []

    def note() -> None:
        mode = get_proxy_mode()
        if mode is not None:
            marks.append((_last_node(mode.tracer.graph), stack[-1] if stack else ""))

    def pre(mod, _args):
        if id(mod) in names:
            stack.append(names[id(mod)])
            note()

    def post(mod, _args, _out):
        if id(mod) in names and stack and stack[-1] == names[id(mod)]:
            stack.pop()
            note()

    class TagGradFns(torch.overrides.TorchFunctionMode):
        """Tag each autograd node made in the forward with the module path it was made in."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if stack:
                for t in torch.utils._pytree.tree_leaves(out):
                    fn = getattr(t, "grad_fn", None) if isinstance(t, torch.Tensor) else None
                    if fn is not None and "acir_module" not in fn.metadata:
                        fn.metadata["acir_module"] = stack[-1]
            return out

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = torch.nn.modules.module.register_module_forward_hook(post)
    try:
        with TagGradFns():
            yield
    finally:
        h1.remove()
        h2.remove()


def _mark_backward_modules(loss, marks: list) -> None:
    """Before ``backward()``: each autograd node, when it runs, notes its forward module path."""
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    seen: set = set()
    todo = [loss.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        path = fn.metadata.get("acir_module", "")

        def prehook(_grad_outputs, path=path):
            mode = get_proxy_mode()
            if mode is not None:
                marks.append((_last_node(mode.tracer.graph), path))

        fn.register_prehook(prehook)
        todo.extend(nf for nf, _ in fn.next_functions)


#: Plain attribute types a module's Python state is compared in (see _host_state_unchanged).
_PLAIN = (bool, int, float, str)


def _host_state(model) -> tuple[dict, dict]:
    """What a traced step cannot replay: the draws of Python's and NumPy's generators, and
    every module's plain Python attributes (numbers, flags, strings)."""
    import random

    rngs: dict = {"random": random.getstate()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        rngs["numpy"] = (kind, keys.tobytes(), pos, has_gauss, gauss)
    except ImportError:  # pragma: no cover - numpy comes with torch's wheels
        pass
    attrs = {(name, k): v for name, m in model.named_modules() for k, v in vars(m).items()
             if isinstance(v, _PLAIN) and not isinstance(v, type)}
    return rngs, attrs


@contextlib.contextmanager
def _host_state_unchanged(model):
    """Refuse a step whose Python side changes while it is traced: it runs once, while tracing,
    and the graph replays only its tensor ops, so a branch on ``random.random()`` (stochastic
    depth written in Python) or on a counter the forward increments would be baked in."""
    rngs, attrs = _host_state(model)
    yield
    rngs_after, attrs_after = _host_state(model)
    for name in rngs:
        if rngs_after.get(name) != rngs[name]:
            lib = "Python's random module" if name == "random" else "NumPy's global generator"
            raise CaptureError(f"the training step draws from {lib}; a captured graph replays only tensor ops, "
                               "so the draw (and any branch on it) would be the same at every call: draw with "
                               "torch (torch.rand, torch.bernoulli, nn.Dropout) inside the model instead")
    for (where, key), before in attrs.items():
        after = attrs_after.get((where, key), before)
        if after != before:
            what = f"{where}.{key}" if where else f"the model's {key}"
            raise CaptureError(f"the forward changes {what} ({before!r} -> {after!r}); a "
                               "captured graph replays only tensor ops, so anything it decides from that "
                               "attribute would be fixed at its traced value: keep such state in a buffer "
                               "(register_buffer), or change it outside the step")


@contextlib.contextmanager
def _no_fake_tensor_cache():
    """``FakeTensorMode``'s dispatch cache off (it is shared by every mode, so a second capture
    in one process hits what the first one cached)."""
    import torch._dynamo.config as dynamo_config

    with dynamo_config.patch(fake_tensor_cache_enabled=False):
        yield


@contextlib.contextmanager
def _user_checkpoints_inlined():
    """Trace a model that wraps its own blocks in ``torch.utils.checkpoint`` as if it did not.

    Traced as it is, its backward replays the block with fresh random draws (the RNG state
    checkpoint saves and restores is host state the trace does not see: dropout masks differ
    from eager). Eager checkpointing computes exactly what the block computes without it, and
    leaves the RNG where running the block once leaves it (the replay runs under ``fork_rng``),
    so inlining the block is the user's eager step, and acir plans the recomputation itself.
    One difference is kept: the reentrant form gives no gradients through a block none of whose
    tensor inputs requires grad (its forward runs under ``no_grad``), so such a block is run
    under ``no_grad`` here too."""
    import torch
    import torch.utils.checkpoint as ckpt

    real = ckpt._checkpoint_impl

    def inline(function, args, kwargs, *, use_reentrant=None, **_options):
        reentrant = True if use_reentrant is None else use_reentrant  # torch's default (it warns)
        if reentrant and not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            with torch.no_grad():
                return function(*args, **kwargs)
        return function(*args, **kwargs)

    ckpt._checkpoint_impl = inline
    try:
        yield
    finally:
        ckpt._checkpoint_impl = real


@contextlib.contextmanager
def _transformers_tracing_asked(asked: list):
    """Note each time transformers asks ``is_tracing(tensor)`` of one of the trace's fake tensors.

    transformers takes eager-only shortcuts behind that question (a causal mask skipped when
    nothing is padded, so SDPA runs ``is_causal`` with grouped-query attention inside the kernel)
    and counts a FakeTensor as tracing; its shortcuts also read the batch's values (are the
    sequences packed? padded?), which a captured graph cannot, so the trace takes the library's
    general branch: the same values, for some batches computed in another order than eager's."""
    import sys

    iu = sys.modules.get("transformers.utils.import_utils")
    real = getattr(iu, "is_tracing", None)
    if real is None:
        yield
        return

    def is_tracing(tensor=None):
        traced = real(tensor)
        if traced and tensor is not None and not real(None) and iu.is_fake_tensor(tensor):
            asked.append(type(tensor).__name__)
        return traced

    holders = [m for name, m in list(sys.modules.items())
               if name.startswith("transformers") and getattr(m, "is_tracing", None) is real]
    for m in holders:
        m.is_tracing = is_tracing
    try:
        yield
    finally:
        for m in holders:
            m.is_tracing = real


#: What a capture says when transformers took its traced branch (:func:`_transformers_tracing_asked`) in a
#: model with grouped-query attention (:func:`_grouped_query_attention`).
LIBRARY_BRANCH_WARNING = (
    "transformers took its traced branch (it asked whether the step is being traced, and eager PyTorch takes "
    "a shortcut there that depends on the batch's values, e.g. skipping the attention mask when no sequence is "
    "padded or packed); with grouped-query attention the compiled step then sums the shared key/value heads' "
    "gradients in another order than eager for batches where eager takes the shortcut, so it can differ from "
    "your eager loop in the last bits (HF models with use_cache=False or gradient checkpointing; leave "
    "use_cache on and let acir checkpoint instead)")


def trace_step(model, opt, loss_fn, batch, updates: Updates, clip_grad_norm: float | None = None,
               phase: Phase = Phase()) -> TracedStep:
    """:func:`_trace_step`, with a warning when a library took its traced branch where eager PyTorch
    would not, in a model where that changes the last bits (:data:`LIBRARY_BRANCH_WARNING`)."""
    import warnings

    asked: list = []
    traced = _trace_step(model, opt, loss_fn, batch, updates, clip_grad_norm, phase, asked)
    if asked and _grouped_query_attention(model):
        warnings.warn(LIBRARY_BRANCH_WARNING, stacklevel=2)
    return traced


def _grouped_query_attention(model) -> bool:
    """Does a transformers config in ``model`` have fewer key/value heads than attention heads?

    Where transformers takes its traced branch, the step is still eager's bit for bit when every
    head has its own keys and values (measured: BERT, RoBERTa, T5, and Llama with as many key/value
    heads as heads); with grouped-query attention the branch decides whether SDPA sums the shared
    heads' gradients inside the kernel or autograd sums them after repeating the heads, and the
    last bits differ (Llama, 2 key/value heads of 4)."""
    for m in model.modules():
        cfg = getattr(m, "config", None)
        kv, heads = getattr(cfg, "num_key_value_heads", None), getattr(cfg, "num_attention_heads", None)
        if isinstance(kv, int) and isinstance(heads, int) and 0 < kv < heads:
            return True
    return False


def _trace_step(model, opt, loss_fn, batch, updates: Updates, clip_grad_norm: float | None, phase: Phase,
                asked: list) -> TracedStep:
    """Trace ``loss_fn(model, batch).backward()`` (divided by ``phase.accumulate`` when accumulating,
    into the gradients ``phase.carried``), then, when ``phase.steps``, gradient clipping when asked
    and the optimizer's updates (``updates``: each parameter as its rule reproduces it) into an fx
    graph. A micro-batch that does not step returns its gradients after the loss."""
    import torch
    from torch.fx.experimental.proxy_tensor import get_proxy_mode, make_fx
    from torch.nn.utils.stateless import _reparametrize_module

    kinds, tensors = step_inputs(model, opt, batch, updates, phase)
    n_params = sum(1 for k, _ in kinds if k is InputKind.PARAMETER)
    n_buffers = sum(1 for k, _ in kinds if k is InputKind.MODULE_BUFFER)
    state_slots = [(n.rsplit(":", 1)) for k, n in kinds if k is InputKind.OPTIMIZER_STATE]
    param_names = [n for k, n in kinds if k is InputKind.PARAMETER]
    buffer_names = [n for k, n in kinds if k is InputKind.MODULE_BUFFER]
    n_state = sum(1 for k, _ in kinds if k is InputKind.OPTIMIZER_STATE)
    n_carried = len(phase.carried)
    traced = TracedStep(gm=None, inputs=kinds)
    scalars = updates.scalar_values()
    traced.sentinels = {sentinel(k): name for k, name in enumerate(scalars)}
    by_key = {name: s for s, name in traced.sentinels.items()}

    def step(*flat):
        params = flat[:n_params]
        buffers = flat[n_params:n_params + n_buffers]
        state = flat[n_params + n_buffers:n_params + n_buffers + n_state]
        carried = flat[n_params + n_buffers + n_state:n_params + n_buffers + n_state + n_carried]
        leaves = flat[n_params + n_buffers + n_state + n_carried:]
        by_name = dict(zip(param_names, params))
        mapping = {**by_name, **dict(zip(buffer_names, buffers))}
        new_state: dict[str, dict] = {}
        for (pname, key), t in zip(state_slots, state):
            new_state.setdefault(pname, {})[key] = t
        with _reparametrize_module(model, mapping, tie_weights=True):
            for p in params:
                p.grad = None
            for name, grad in zip(phase.carried, carried):
                by_name[name].grad = grad
            loss = loss_fn(model, rebuild_batch(batch, list(leaves)))
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise CaptureError("loss_fn must return a scalar tensor")
            graph = get_proxy_mode().tracer.graph
            traced.forward_end = _last_node(graph)
            _mark_backward_modules(loss, traced.module_marks)
            (loss / phase.accumulate if phase.accumulate > 1 else loss).backward()
            traced.module_marks.append((_last_node(graph), ""))
            traced.backward_end = _last_node(graph)
            traced.grads = [p.grad for p in params if p.grad is not None]
            traced.grad_of = {n: by_name[n].grad for n in param_names if by_name[n].grad is not None}
            if not phase.steps:
                traced.grad_names = [n for n in param_names if by_name[n].grad is not None]
                return (loss.detach(), *[by_name[n].grad for n in traced.grad_names])
            total_norm = None
            with torch.no_grad():
                if clip_grad_norm is not None:
                    total_norm = _clip(model, clip_grad_norm)
                for u in updates.items:
                    p = by_name[u.name]
                    if p.grad is None:
                        continue  # torch skips a parameter without a gradient
                    s = {k: by_key[f"{u.name}:{k}"] for k in u.step.scalars}
                    updates.rule.update(p, p.grad, new_state.get(u.name, {}), s, u.step.flags)
                    traced.updated.append(u.name)
        return (loss.detach(),) if total_norm is None else (loss.detach(), total_norm)

    try:
        with _module_marks(model, traced.module_marks):
            # without torch's fake-tensor dispatch cache: a hit rebuilds each output of a
            # multi-output op in its own storage, so outputs that share one (an LSTM's two
            # bias gradients) would be recorded apart, unlike the op; the verifier refuses that
            with _no_fake_tensor_cache(), _host_state_unchanged(model), _user_checkpoints_inlined(), \
                    _transformers_tracing_asked(asked):
                traced.gm = make_fx(step, tracing_mode="fake")(*tensors)
    except CaptureError:
        raise
    except AssertionError as e:
        if "convert all Tensors to FakeTensors" not in str(e):
            raise CaptureError(f"the training step could not be traced: AssertionError: {e}".rstrip()
                               + " (run with --traceback for where)") from e
        shape = next((m.group(1) for m in re.finditer(r"tensor\(\[.*?\], size=(\([^)]*\))", str(e))), "")
        raise CaptureError(f"the step reads a tensor{' of size ' + shape if shape else ''} that is not a parameter, "
                           "buffer, optimizer state or batch tensor (one the model or loss closes over); acir "
                           "would bake its value in and not see it change, so register it as a buffer of the "
                           "model (module.register_buffer) or pass it in the batch") from e
    except Exception as e:
        if "data-dependent" in str(e) or type(e).__name__ in ("GuardOnDataDependentSymNode",
                                                              "DataDependentOutputException"):
            raise CaptureError("the step decides something from a tensor's values (a Python `if` on a tensor, "
                               "`.item()`, `.tolist()`, a size that depends on the data); a captured graph "
                               "fixes every such decision, so it cannot be traced: express it with tensor ops "
                               "(torch.where, masking) (run with --traceback for where; torch said: "
                               f"{_first_line(e)})") from e
        raise CaptureError(f"the training step could not be traced: {type(e).__name__}: {e}".rstrip()
                           + " (run with --traceback for where)") from e
    return traced


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def _clip(model, max_norm: float):
    """``torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)`` with its defaults, as the
    eager loop calls it: on real tensors its default picks the foreach kernels, which fake
    tensors would not, so that choice is made here the way eager makes it."""
    import torch
    from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

    params = [p for p in model.parameters() if p.grad is not None]
    foreach = all(p.device.type in _get_foreach_kernels_supported_devices() + ["cpu"] for p in params) or None
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=foreach)
