"""Lowering: an acir Module -> a runnable ``torch.fx.GraphModule``, from the artifact alone.

Graph inputs become placeholders named after what they are (``p_conv1_weight``,
``s_conv1_weight_exp_avg``, ``b_input_ids``), each node one ``call_function`` of its
resolved overload, and a tuple-returning op gets a ``getitem`` only for the outputs that
are used later, so that fx's generated code frees every tensor right after its last use,
exactly as the liveness analysis assumes. Calling the module runs one training iteration:
it updates parameters, buffers and optimizer state in place (run it under ``no_grad``)
and returns the loss.

A few CPU kernels look at autograd's grad mode and return less without it: the LSTM
kernel ``mkldnn_rnn_layer`` leaves its workspace undefined (``None``), and its backward,
which takes that workspace as a plain ``Tensor``, then cannot run. Eager PyTorch runs the
forward with grad mode on, so those operators (:data:`GRAD_MODE_OPS`) run in the forward,
and in recomputations of it, with grad mode on below autograd (no graph is recorded):
:func:`call_with_grad_mode`.
"""

from __future__ import annotations

import keyword
import re
from typing import Any

from acir.ir.graph import InputKind, Module, Node, Region, ValueRef
from acir.ir.ops import resolve_op, to_torch

#: Operators whose CPU kernel reads autograd's grad mode: off, ``mkldnn_rnn_layer`` (LSTM)
#: makes no workspace, which its backward needs.
GRAD_MODE_OPS = frozenset({"aten.mkldnn_rnn_layer.default"})


def runs_with_grad_mode(node: Node) -> bool:
    """Did eager PyTorch run ``node`` with grad mode on, and does its kernel care? (the forward
    and its recomputations: the backward and the optimizer run with grad mode off)."""
    return node.op in GRAD_MODE_OPS and (node.region is Region.FORWARD or node.recompute_of is not None)


def call_with_grad_mode(op_name: str, *args, **kwargs):
    """Call the operator ``op_name`` as autograd calls it in the forward: grad mode on, dispatched
    below autograd, so its kernel makes what its backward needs and no graph is recorded."""
    import torch

    with torch.enable_grad(), torch._C._AutoDispatchBelowAutograd():
        return resolve_op(op_name)(*args, **kwargs)

_PREFIX = {InputKind.PARAMETER: "p_", InputKind.MODULE_BUFFER: "b_", InputKind.OPTIMIZER_STATE: "s_",
           InputKind.BATCH: "in_", InputKind.CONSTANT: "c_", InputKind.HYPERPARAM: "h_",
           InputKind.GRADIENT: "g_"}


def placeholder_name(kind: InputKind, name: str) -> str:
    base = name.removeprefix("batch") if kind is InputKind.BATCH else name
    s = re.sub(r"\W+", "_", base).strip("_")
    s = _PREFIX[kind] + (s or "x")
    return s + "_" if keyword.iskeyword(s) else s


def lower_graph(module: Module):
    """Build the ``torch.fx.Graph`` for ``module`` (see :func:`lower`)."""
    import operator

    import torch.fx as fx

    g = module.graph
    graph = fx.Graph()
    env: dict[int, fx.Node] = {}
    taken: set[str] = set()
    for inp in g.inputs:
        name = placeholder_name(inp.kind, inp.name)
        while name in taken:
            name += "_"
        taken.add(name)
        env[inp.value] = graph.placeholder(name)
    used: set[int] = set(g.outputs)
    for n in g.nodes:
        used.update(n.input_ids())

    def bind_outputs(tree, producer: fx.Node) -> None:
        if isinstance(tree, ValueRef):
            env[tree.id] = producer
        elif isinstance(tree, list):
            for i, sub in enumerate(tree):
                if _uses_any(sub, used):
                    bind_outputs(sub, graph.call_function(operator.getitem, (producer, i)))

    for n in g.nodes:
        op = resolve_op(n.op)
        args = tuple(to_torch(a, env.__getitem__) for a in n.args)
        kwargs = {k: to_torch(v, env.__getitem__) for k, v in n.kwargs.items()}
        if runs_with_grad_mode(n):
            fxn = graph.call_function(call_with_grad_mode, (n.op, *args), kwargs)
        else:
            fxn = graph.call_function(op, args, kwargs)
        fxn.name = n.name
        bind_outputs(n.outputs, fxn)
    graph.output(tuple(env[v] for v in g.outputs))
    graph.lint()
    return graph


def _uses_any(tree, used: set[int]) -> bool:
    if isinstance(tree, ValueRef):
        return tree.id in used
    if isinstance(tree, list):
        return any(_uses_any(t, used) for t in tree)
    return False


def lower(module: Module):
    """A ``torch.fx.GraphModule`` whose forward takes the graph inputs in order and returns the outputs."""
    import torch
    import torch.fx as fx

    gm = fx.GraphModule(torch.nn.Module(), lower_graph(module), class_name="AcirStep")
    return gm


def python_source(module: Module) -> str:
    """A standalone Python file with the step as a function ``step(*inputs)``."""
    import acir

    gm = lower(module)
    code = gm.code.replace("def forward(self, ", "def step(", 1).replace("def forward(self)", "def step()", 1)
    inputs = "\n".join(f"#   {i:5d}  {placeholder_name(x.kind, x.name):40s} {x.kind.name:16s} {x.name}"
                       for i, x in enumerate(module.graph.inputs))
    prov = module.header.provenance
    helper = "acir_runtime_lower_call_with_grad_mode"
    imports = f"from acir.runtime.lower import call_with_grad_mode as {helper}\n" if helper in code else ""
    return (f'"""One training iteration of {prov.model} (batch {prov.batch_size}), '
            f'lowered by acir {acir.__version__}.\n\n'
            "Call step(*inputs) under torch.no_grad(): it updates parameters, buffers and optimizer\n"
            'state in place and returns (loss,).\n"""\n'
            "import torch\nfrom torch import device, inf, nan  # noqa: F401 (used by the generated code)\n"
            f"{imports}\n# inputs, in order:\n{inputs}\n{code}")


def constant_tensor(module: Module, inp):
    """The tensor of a CONSTANT graph input, rebuilt from the bytes stored in the artifact."""
    import torch

    v = module.graph.values[inp.value]
    dtype = getattr(torch, v.dtype)
    device = module.graph.storage(v.storage).device
    if not inp.data:
        return torch.empty(v.shape, dtype=dtype, device=device)
    flat = torch.frombuffer(bytearray(inp.data), dtype=torch.uint8).view(dtype)
    return flat.reshape(v.shape).to(device)


def input_tensors(module: Module, model, opt, batch, constants: dict | None = None,
                  scalars: dict[str, float] | None = None) -> list[Any]:
    """The live tensors (and, for HYPERPARAM inputs, the floats in ``scalars``) to pass to the
    lowered step, in graph-input order.

    ``constants`` caches the CONSTANT inputs (by value id) so that repeated calls pass the
    same tensors, as parameters are the same tensors from call to call.
    """
    from acir.errors import RunError
    from acir.frontend.trace import batch_leaves

    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    leaves = dict(batch_leaves(batch)[0])
    out = []
    for inp in module.graph.inputs:
        if inp.kind is InputKind.PARAMETER:
            t = params.get(inp.name)
        elif inp.kind is InputKind.MODULE_BUFFER:
            t = buffers.get(inp.name)
        elif inp.kind is InputKind.OPTIMIZER_STATE:
            pname, key = inp.name.rsplit(":", 1)
            p = params.get(pname)
            t = opt.state[p].get(key) if p is not None and p in opt.state else None
        elif inp.kind is InputKind.HYPERPARAM:
            t = (scalars or {}).get(inp.name)
        elif inp.kind is InputKind.GRADIENT:
            p = params.get(inp.name.rsplit(":", 1)[0])
            t = p.grad if p is not None else None
        elif inp.kind is InputKind.CONSTANT:
            if constants is None:
                t = constant_tensor(module, inp)
            else:
                t = constants.get(inp.value)
                if t is None:
                    t = constants[inp.value] = constant_tensor(module, inp)
        else:
            t = leaves.get(inp.name)
            v = module.graph.values[inp.value]
            if t is not None and (tuple(t.shape) != v.shape or str(t.dtype).removeprefix("torch.") != v.dtype):
                raise RunError(f"{inp.name} is {str(t.dtype).removeprefix('torch.')}{list(t.shape)}, but the step was "
                               f"captured for {v.dtype}{list(v.shape)}; capture (or compile) again for this shape")
        if t is None:
            raise RunError(f"graph input {inp.name!r} ({inp.kind.name.lower()}) has no matching tensor in the "
                           "model, optimizer or batch given; was the artifact captured from this model?")
        out.append(getattr(t, "_local_tensor", t))  # a sharded (DTensor) parameter or state: its local shard
    return out


def updated_parameters(module: Module) -> set[str]:
    """The parameters whose optimizer update the graph holds (each reads at least one HYPERPARAM input)."""
    return {i.name.rsplit(":", 1)[0] for i in module.graph.inputs if i.kind is InputKind.HYPERPARAM}


def step_scalars(module: Module, model, opt) -> dict[str, float]:
    """This call's HYPERPARAM values for ``module``, read from ``opt``'s live param groups and
    state (creating the state torch's step would create); refuses an optimizer whose
    floats do not fit the graph (another optimizer, or other options)."""
    from acir.errors import RunError
    from acir.frontend.optim import check_optimizer
    from acir.frontend.optim.updates import plan_updates

    wanted = {i.name for i in module.graph.inputs if i.kind is InputKind.HYPERPARAM}
    scalars = plan_updates(model, opt, check_optimizer(opt, model), only=updated_parameters(module)).scalar_values()
    missing = sorted(wanted - set(scalars))
    if missing:
        raise RunError(f"the optimizer does not fit the captured step, which reads {', '.join(missing[:3])}: "
                       "capture again for this optimizer")
    return {k: scalars[k] for k in wanted}


class BoundStep:
    """The lowered step bound to a live model and optimizer: ``loss = step(batch)``.

    Each call reads the model's and optimizer's tensors anew (so ``load_state_dict`` between
    calls is honoured) and the optimizer's floats from its live param groups."""

    def __init__(self, module: Module, model, opt, gm=None) -> None:
        self.module = module
        self.model = model
        self.opt = opt
        self.gm = gm if gm is not None else lower(module)
        self._constants: dict = {}
        self.scalar_names = [i.name for i in module.graph.inputs if i.kind is InputKind.HYPERPARAM]

    def inputs(self, batch, scalars: dict[str, float] | None = None) -> list[Any]:
        """This call's inputs: the live tensors and the optimizer's floats (``scalars``, or read now)."""
        if scalars is None:
            scalars = step_scalars(self.module, self.model, self.opt)
        return input_tensors(self.module, self.model, self.opt, batch, self._constants, scalars)

    def run(self, batch, scalars: dict[str, float] | None = None) -> tuple:
        """Run the step; returns every graph output (the loss first)."""
        import torch

        args = self.inputs(batch, scalars)
        with torch.no_grad():
            return tuple(self.gm(*args))

    def __call__(self, batch):
        return self.run(batch)[0]
