"""Convert a traced training step (an fx graph of aten ops with fake-tensor metadata) to the IR.

What happens here: every tensor in ``node.meta["val"]`` becomes a :class:`~acir.ir.graph.Value`
whose storage is found by identity of the (fake) storage, so views and in-place results
share their base's storage; ``getitem`` nodes fold into their producer's output tree (every
tensor an op returns gets a value, used or not, because it is allocated either way);
profiler bookkeeping nodes are dropped. Roles follow storages: a graph input's storage has
its input's role, a new storage takes the role of where it is created (forward:
activation; backward: gradient when it ends as a parameter's ``.grad``, else other;
optimizer: other). Every dropout draw gets a saved random-number state
(:func:`acir.ir.rng.insert_state_nodes`), so that a recomputation can replay it.
"""

from __future__ import annotations

import operator
from typing import Any

from acir.errors import CaptureError
from acir.frontend.trace import TracedStep
from acir.ir.graph import (
    INPUT_ROLE,
    Device,
    DType,
    Graph,
    GraphInput,
    InputKind,
    Layout,
    MemoryFormat,
    Node,
    Region,
    Role,
    Storage,
    Value,
    ValueRef,
)
from acir.ir.ops import DEVICE_SIZED_OUTPUTS, OWN_STORAGE_OUTPUTS


class ClosedOverTensor(CaptureError):
    """The step reads a tensor that is neither a parameter, a buffer nor a batch tensor, and that
    was made under fake tensors, so its data is lost (capture builds such a model for real)."""

    def __init__(self, message: str, tensor: str) -> None:
        super().__init__(message)
        self.tensor = tensor  # which: "_tensor_constant0, shape (4,)"


#: Constants the step creates are stored in the artifact; past this size they should be buffers.
MAX_CONSTANT_BYTES = 1 << 20

#: Namespaces whose nodes are bookkeeping with no effect on the numbers (record_function).
_DROPPED_NAMESPACES = ("profiler",)


class _Importer:
    def __init__(self) -> None:
        from torch.multiprocessing.reductions import StorageWeakRef

        self._weakref = StorageWeakRef
        self.graph = Graph()
        self.storage_of: dict[Any, int] = {}   # StorageWeakRef -> storage id
        self.storage_role: dict[int, Role] = {}
        self.keepalive: list = []
        self.grad_storages: set = set()
        self.sentinels: dict[float, str] = {}      # stand-in float -> HYPERPARAM input name
        self.hyperparams: dict[str, ValueRef] = {}
        self.constants: dict[str, ValueRef] = {}   # get_attr target -> its CONSTANT input (fx reads one twice)

    def storage_key(self, t):
        return self._weakref(t.untyped_storage())

    def new_value(self, t, role_if_new: Role) -> ValueRef:
        import torch

        if not isinstance(t, torch.Tensor):
            raise CaptureError(f"an op produced a {type(t).__name__}, not a tensor; acir captures tensor programs only")
        if t.layout != torch.strided:
            raise CaptureError(f"an op produced a {t.layout} tensor; only strided tensors are supported")
        key = self.storage_key(t)
        sid = self.storage_of.get(key)
        if sid is None:
            sid = len(self.graph.storages)
            self.storage_of[key] = sid
            self.keepalive.append(t)
            self.graph.storages.append(Storage(sid, t.untyped_storage().nbytes(), str(t.device)))
            self.storage_role[sid] = role_if_new
        vid = len(self.graph.values)
        dtype = str(t.dtype).removeprefix("torch.")
        self.graph.values[vid] = Value(vid, tuple(t.shape), dtype, tuple(t.stride()), sid, t.storage_offset(),
                                       t.numel() * t.element_size(), self.storage_role[sid])
        return ValueRef(vid)

    def constant(self, name: str, t) -> ValueRef:
        """A tensor constant of the traced step, stored inline as a CONSTANT graph input (one per name)."""
        import torch

        if name in self.constants:
            return self.constants[name]

        if not isinstance(t, torch.Tensor) or t.numel() * t.element_size() > MAX_CONSTANT_BYTES:
            raise CaptureError(f"the step creates a constant {name} larger than {MAX_CONSTANT_BYTES} bytes "
                               "(or not a tensor); create it as a registered buffer of the model instead")
        from torch._subclasses.fake_tensor import FakeTensor

        if isinstance(t, FakeTensor):  # a real tensor the step closes over: make_fx kept only its fake
            what = f"{name}, shape {tuple(t.shape)}"
            raise ClosedOverTensor(f"the step reads a tensor it closes over ({what}), not a parameter, buffer or "
                                   "batch tensor; register it as a buffer of the model (module.register_buffer) or "
                                   "pass it in the batch", what)
        t = t.detach().contiguous()
        data = t.reshape(-1).view(torch.uint8).cpu().numpy().tobytes() if t.numel() else b""
        ref = self.new_value(t, Role.INPUT)
        self.graph.inputs.append(GraphInput(ref.id, InputKind.CONSTANT, name, data))
        self.constants[name] = ref
        return ref

    def hyperparam(self, name: str) -> ValueRef:
        """The HYPERPARAM graph input ``name``, made on its first use: a Python number at run time,
        so a 0-d float64 value whose storage has no bytes."""
        ref = self.hyperparams.get(name)
        if ref is None:
            sid = len(self.graph.storages)
            self.graph.storages.append(Storage(sid, 0, "cpu"))
            vid = len(self.graph.values)
            self.graph.values[vid] = Value(vid, (), "float64", (), sid, 0, 0, Role.INPUT)
            self.graph.inputs.append(GraphInput(vid, InputKind.HYPERPARAM, name))
            ref = self.hyperparams[name] = ValueRef(vid)
        return ref

    def outputs(self, val, role_if_new: Role):
        if val is None:
            return None
        if isinstance(val, (tuple, list)):
            return [self.outputs(v, role_if_new) for v in val]
        return self.new_value(val, role_if_new)


def _size_on_device(g, op_name: str, fxn, outs) -> None:
    """Record the real sizes of the outputs of ``fxn`` whose device kernel sizes them, not its meta
    kernel (:data:`acir.ir.ops.DEVICE_SIZED_OUTPUTS`): the op is run once on zeros shaped as its inputs,
    as autograd runs it in the forward (grad mode on, below autograd), and each such output's new
    storage takes the bytes the kernel returned. Outputs on another device keep the meta size."""
    import torch
    import torch.fx as fx
    from torch.utils._python_dispatch import _disable_current_modes

    sized = DEVICE_SIZED_OUTPUTS[op_name]
    val = fxn.meta.get("val")
    vals = list(val) if isinstance(val, (tuple, list)) else [val]
    todo = {i: dev for i, dev in sized.items() if i < len(vals) and isinstance(vals[i], torch.Tensor)
            and vals[i].device.type == dev}
    if not todo:
        return

    def real(a):
        if isinstance(a, fx.Node):
            t = a.meta.get("val")
            if isinstance(t, torch.Tensor):
                return torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype).zero_()
            return t
        if isinstance(a, (list, tuple)):
            return type(a)(real(x) for x in a)
        return a

    with _disable_current_modes(), torch.no_grad():
        args = [real(a) for a in fxn.args]
        kwargs = {k: real(v) for k, v in fxn.kwargs.items()}
        with torch.enable_grad(), torch._C._AutoDispatchBelowAutograd():
            got = fxn.target(*args, **kwargs)
    got = list(got) if isinstance(got, (tuple, list)) else [got]
    flat = outs if isinstance(outs, list) else [outs]
    for i in todo:
        ref = flat[i] if i < len(flat) else None
        if isinstance(ref, ValueRef) and isinstance(got[i], torch.Tensor):
            st = g.storages[g.values[ref.id].storage]
            st.nbytes = max(st.nbytes, got[i].untyped_storage().nbytes())


def _own_storage_on_device(g, op_name: str, fxn, outs) -> None:
    """Add to a storage the bytes of an output the meta kernel put in it beside another output of
    the same node, where the device gives that output a storage of its own
    (:data:`acir.ir.ops.OWN_STORAGE_OUTPUTS`)."""
    import torch

    val = fxn.meta.get("val")
    vals = list(val) if isinstance(val, (tuple, list)) else [val]
    flat = outs if isinstance(outs, list) else [outs]
    for i, dev in OWN_STORAGE_OUTPUTS[op_name].items():
        if i >= len(flat) or not isinstance(flat[i], ValueRef) or not isinstance(vals[i], torch.Tensor) \
                or vals[i].device.type != dev:
            continue
        v = g.values[flat[i].id]
        shares = any(isinstance(r, ValueRef) and g.values[r.id].storage == v.storage for r in flat[:i])
        if shares:
            g.storages[v.storage].nbytes += v.nbytes


def _arg(a, env: dict, where: str, imp: _Importer | None = None):
    import torch
    import torch.fx as fx

    if isinstance(a, fx.Node):
        if a not in env:
            raise CaptureError(f"{where}: uses {a.name}, which produced no tensor")
        return env[a]
    if type(a) is float and imp is not None and a in imp.sentinels:
        return imp.hyperparam(imp.sentinels[a])
    if a is None or isinstance(a, (bool, int, float, str)):
        return a
    if isinstance(a, (list, tuple)):
        return [_arg(x, env, where, imp) for x in a]
    if isinstance(a, torch.dtype):
        return DType(str(a).removeprefix("torch."))
    if isinstance(a, torch.device):
        return Device(str(a))
    if isinstance(a, torch.layout):
        return Layout(str(a).removeprefix("torch."))
    if isinstance(a, torch.memory_format):
        return MemoryFormat(str(a).removeprefix("torch."))
    raise CaptureError(f"{where}: argument {a!r} of type {type(a).__name__} cannot be stored in the IR")


def _regions(traced: TracedStep):
    region = Region.FORWARD
    for n in traced.gm.graph.nodes:
        yield n, region
        if n is traced.forward_end:
            region = Region.BACKWARD
        if n is traced.backward_end:
            region = Region.OPTIMIZER


def import_step(traced: TracedStep) -> Graph:
    import torch

    imp = _Importer()
    imp.sentinels = dict(traced.sentinels)
    g = imp.graph
    for grad in traced.grads:
        imp.grad_storages.add(imp.storage_key(grad))
    env: dict = {}          # fx node -> Arg tree (ValueRef or list)
    placeholders = [n for n in traced.gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(traced.inputs):
        raise CaptureError(f"traced graph has {len(placeholders)} inputs, expected {len(traced.inputs)}")
    for ph, (kind, name) in zip(placeholders, traced.inputs):
        if kind is InputKind.OPTIMIZER_STATE and not ph.users:
            continue  # the state of a parameter that got no gradient: torch's step does not touch it
        ref = imp.new_value(ph.meta["val"], INPUT_ROLE[kind])
        g.inputs.append(GraphInput(ref.id, kind, name))
        env[ph] = ref
    marks = {node: path for node, path in traced.module_marks}  # the last mark after a node wins
    module = ""
    dropped: set = set()
    names_seen: set[str] = set()
    for fxn, region in _regions(traced):
        if fxn.op == "placeholder":
            module = marks.get(fxn, module)
            continue
        if fxn.op == "output":
            (outs,) = fxn.args
            for o in outs:
                ref = _arg(o, env, "graph output")
                if not isinstance(ref, ValueRef):
                    raise CaptureError("the step's output is not a single tensor")
                g.outputs.append(ref.id)
            continue
        if fxn.op == "get_attr":
            env[fxn] = imp.constant(fxn.target, getattr(traced.gm, fxn.target))
            module = marks.get(fxn, module)
            continue
        if fxn.op != "call_function":
            raise CaptureError(f"unsupported fx node {fxn.name} ({fxn.op})")
        target = fxn.target
        if target is operator.getitem:
            parent, idx = fxn.args
            if parent in dropped:
                dropped.add(fxn)
            else:
                env[fxn] = env[parent][idx]
            module = marks.get(fxn, module)
            continue
        if not isinstance(target, torch._ops.OpOverload):
            raise CaptureError(f"unsupported operation {target} at {fxn.name}; acir captures aten operators only")
        if target.namespace in _DROPPED_NAMESPACES:
            dropped.add(fxn)
            module = marks.get(fxn, module)
            continue
        where = f"{fxn.name} ({target})"
        args = [_arg(a, env, where, imp) for a in fxn.args]
        kwargs = {k: _arg(v, env, where, imp) for k, v in fxn.kwargs.items()}
        if region is Region.FORWARD:
            role = Role.ACTIVATION
        elif region is Region.BACKWARD:
            role = Role.OTHER
        else:
            role = Role.OTHER
        val = fxn.meta.get("val")
        if region is Region.BACKWARD and isinstance(val, torch.Tensor) and imp.storage_key(val) in imp.grad_storages:
            role = Role.GRAD
        elif region is Region.BACKWARD and isinstance(val, (tuple, list)):
            role = None  # decided per element below
        if role is None:
            outs = [imp.outputs(v, Role.GRAD if isinstance(v, torch.Tensor) and imp.storage_key(v) in imp.grad_storages
                                else Role.OTHER) for v in val]
        else:
            outs = imp.outputs(val, role)
        name = fxn.name
        assert name not in names_seen
        names_seen.add(name)
        if str(target) in DEVICE_SIZED_OUTPUTS:
            _size_on_device(g, str(target), fxn, outs)
        if str(target) in OWN_STORAGE_OUTPUTS:
            _own_storage_on_device(g, str(target), fxn, outs)
        node = Node(id=len(g.nodes), name=name, op=str(target), args=args, kwargs=kwargs, outputs=outs,
                    region=region, module=module if region is not Region.OPTIMIZER else "")
        g.nodes.append(node)
        env[fxn] = outs
        module = marks.get(fxn, module)
    g.param_grads = _param_grads(imp, traced)
    from acir.ir.rng import insert_state_nodes

    insert_state_nodes(g)  # so that a recomputation can replay dropout's draws (acir.ir.rng)
    return g


def _param_grads(imp: _Importer, traced: TracedStep) -> dict[str, int]:
    """Each parameter's gradient as the backward left it: the last value, up to the end of the
    backward, that is that tensor (its storage, offset, shape and strides)."""
    g = imp.graph
    last: dict[tuple, int] = {}
    for node in g.nodes:
        if node.region is Region.OPTIMIZER:
            continue
        for vid in node.output_ids():
            v = g.values[vid]
            last[(v.storage, v.storage_offset, v.shape, v.strides)] = vid
    for inp in g.inputs:  # a gradient carried in and not written (no gradient this micro-batch) is the input
        v = g.values[inp.value]
        last.setdefault((v.storage, v.storage_offset, v.shape, v.strides), inp.value)
    out: dict[str, int] = {}
    for name, grad in traced.grad_of.items():
        sid = imp.storage_of.get(imp.storage_key(grad))
        vid = last.get((sid, grad.storage_offset(), tuple(grad.shape), tuple(grad.stride())))
        if vid is None:
            raise CaptureError(f"internal: the gradient of {name} is not a value of the captured graph")
        out[name] = vid
    return out
