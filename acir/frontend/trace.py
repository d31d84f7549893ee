"""Trace one whole training iteration — forward, loss, backward, optimizer step — with make_fx.

The recipe (../shared/TORCH-NOTES.md): parameters, buffers, optimizer state and batch
leaves become explicit graph inputs (``_reparametrize_module`` with ``tie_weights`` for
models such as BERT whose embeddings are tied; the optimizer's param groups and state are
swapped for the traced tensors while the step runs), then ``loss.backward()`` and
``opt.step()`` are traced inside the function. Tracing runs under fake tensors, so a batch
that would not fit in memory costs none.

Regions are recorded by position: the last graph node when the loss is computed ends the
forward, the last when ``backward()`` returns ends the backward. Module paths come from
forward hooks that note where each module's forward starts and ends in the graph; for the
backward, each autograd node is tagged in the forward with the module it was made in, and
a pre-hook notes where its backward starts (as aot_autograd preserves stack traces).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from acir.errors import CaptureError
from acir.ir.graph import InputKind


@dataclass
class TracedStep:
    gm: Any                                   # torch.fx.GraphModule
    inputs: list[tuple[InputKind, str]]       # one per placeholder, in order
    forward_end: Any = None                   # last fx node of the forward
    backward_end: Any = None                  # last fx node of the backward
    module_marks: list[tuple[Any, str]] = field(default_factory=list)  # (last node before, path from then on)
    grads: list[Any] = field(default_factory=list)  # the traced p.grad tensors (fake)


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


def step_inputs(model, opt, batch) -> tuple[list[tuple[InputKind, str]], list]:
    """The graph inputs of a step, in order: parameters, buffers, optimizer state, batch."""
    params = dict(model.named_parameters())
    names_of = {id(p): n for n, p in params.items()}
    kinds: list[tuple[InputKind, str]] = []
    tensors: list = []
    for n, p in params.items():
        kinds.append((InputKind.PARAMETER, n))
        tensors.append(p)
    for n, b in model.named_buffers():
        kinds.append((InputKind.MODULE_BUFFER, n))
        tensors.append(b)
    for group in opt.param_groups:
        for p in group["params"]:
            if id(p) not in names_of:
                raise CaptureError("the optimizer holds a parameter that is not in the model")
            for key, t in opt.state[p].items():
                if not isinstance(t, __import__("torch").Tensor):
                    raise CaptureError(f"optimizer state {names_of[id(p)]}:{key} is not a tensor; "
                                       "acir needs tensor state (capturable optimizers)")
                kinds.append((InputKind.OPTIMIZER_STATE, f"{names_of[id(p)]}:{key}"))
                tensors.append(t)
    leaves, _ = batch_leaves(batch)
    for name, t in leaves:
        kinds.append((InputKind.BATCH, name))
        tensors.append(t)
    return kinds, tensors


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


def trace_step(model, opt, loss_fn, batch) -> TracedStep:
    """Trace ``zero_grad; loss_fn(model, batch).backward(); opt.step()`` into an fx graph."""
    import torch
    from torch.fx.experimental.proxy_tensor import get_proxy_mode, make_fx
    from torch.nn.utils.stateless import _reparametrize_module

    from acir.frontend.optim import cpu_capturable

    kinds, tensors = step_inputs(model, opt, batch)
    n_params = sum(1 for k, _ in kinds if k is InputKind.PARAMETER)
    n_buffers = sum(1 for k, _ in kinds if k is InputKind.MODULE_BUFFER)
    state_slots = [(n.rsplit(":", 1)) for k, n in kinds if k is InputKind.OPTIMIZER_STATE]
    param_names = [n for k, n in kinds if k is InputKind.PARAMETER]
    buffer_names = [n for k, n in kinds if k is InputKind.MODULE_BUFFER]
    traced = TracedStep(gm=None, inputs=kinds)

    def step(*flat):
        params = flat[:n_params]
        buffers = flat[n_params:n_params + n_buffers]
        state = flat[n_params + n_buffers:n_params + n_buffers + len(state_slots)]
        leaves = flat[n_params + n_buffers + len(state_slots):]
        by_name = dict(zip(param_names, params))
        mapping = {**by_name, **dict(zip(buffer_names, buffers))}
        orig = dict(model.named_parameters())
        new_of = {id(orig[n]): by_name[n] for n in param_names}
        saved_groups = [g["params"] for g in opt.param_groups]
        saved_state = opt.state
        new_state: dict = {}
        for (pname, key), t in zip(state_slots, state):
            new_state.setdefault(by_name[pname], {})[key] = t
        try:
            for g in opt.param_groups:
                g["params"] = [new_of[id(p)] for p in g["params"]]
            opt.state = new_state
            with _reparametrize_module(model, mapping, tie_weights=True):
                for p in params:
                    p.grad = None
                loss = loss_fn(model, rebuild_batch(batch, list(leaves)))
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise CaptureError("loss_fn must return a scalar tensor")
                graph = get_proxy_mode().tracer.graph
                traced.forward_end = _last_node(graph)
                _mark_backward_modules(loss, traced.module_marks)
                loss.backward()
                traced.module_marks.append((_last_node(graph), ""))
                traced.backward_end = _last_node(graph)
                traced.grads = [p.grad for p in params if p.grad is not None]
                with cpu_capturable():
                    opt.step()
            return (loss.detach(),)
        finally:
            for g, ps in zip(opt.param_groups, saved_groups):
                g["params"] = ps
            opt.state = saved_state

    try:
        with _module_marks(model, traced.module_marks):
            traced.gm = make_fx(step, tracing_mode="fake")(*tensors)
    except CaptureError:
        raise
    except Exception as e:
        raise CaptureError(f"the training step could not be traced: {type(e).__name__}: {e}".rstrip()
                           + " (run with --traceback for where)") from e
    return traced
