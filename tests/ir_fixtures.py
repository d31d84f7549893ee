"""Hand-made IR for tests: a small builder and ``small_module()``, a realistic tiny step.

``small_module`` is one training iteration of ``bn(fc(x))`` -> slice -> clamp ->
log_softmax -> nll_loss with Adam on ``fc.weight`` and SGD on ``bn.weight``: it has views
(a transpose of a parameter, an offset slice of an activation), in-place optimizer
updates that share their input's storage, a tuple output with a None, kwargs of every
enum kind, and one recomputed node in the backward region. It verifies, and its text form
is the golden file ``tests/golden/small.acir.txt``.
"""

from __future__ import annotations

from acir.ir.graph import (
    DTYPE_SIZE,
    INPUT_ROLE,
    Arg,
    Device,
    DType,
    Graph,
    GraphInput,
    Header,
    InputKind,
    Layout,
    MemoryFormat,
    Module,
    Node,
    Provenance,
    Region,
    Role,
    Storage,
    Value,
    ValueRef,
)
from acir.ir.text import contiguous_strides


class GraphBuilder:
    """Builds a canonical graph: ids count up in definition order, storages by first use.

    ``new``/``view`` make the values a node is about to output; pass them to ``node``
    right away so that the values table stays in definition order.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.graph = Graph()
        self.device = device
        self._names: dict[str, int] = {}

    def _value(self, shape, dtype, strides, storage, offset, role) -> ValueRef:
        shape = tuple(shape)
        vid = len(self.graph.values)
        numel = 1
        for d in shape:
            numel *= d
        strides = contiguous_strides(shape) if strides is None else tuple(strides)
        self.graph.values[vid] = Value(vid, shape, dtype, strides, storage, offset,
                                       numel * DTYPE_SIZE[dtype], role)
        return ValueRef(vid)

    def new(self, shape, dtype: str = "float32", role: Role = Role.ACTIVATION) -> ValueRef:
        """A contiguous value in a storage of its own."""
        numel = 1
        for d in shape:
            numel *= d
        sid = len(self.graph.storages)
        self.graph.storages.append(Storage(sid, numel * DTYPE_SIZE[dtype], self.device))
        return self._value(shape, dtype, None, sid, 0, role)

    def view(self, base: ValueRef, shape, strides=None, offset: int = 0) -> ValueRef:
        """A value sharing ``base``'s storage (and so its role and dtype)."""
        b = self.graph.values[base.id]
        return self._value(shape, b.dtype, strides, b.storage, offset, b.role)

    def alias(self, base: ValueRef) -> ValueRef:
        """The result of an in-place op on ``base``: same storage, shape and strides."""
        b = self.graph.values[base.id]
        return self._value(b.shape, b.dtype, b.strides, b.storage, b.storage_offset, b.role)

    def input(self, name: str, kind: InputKind, shape, dtype: str = "float32", data: bytes = b"") -> ValueRef:
        ref = self.new(shape, dtype, INPUT_ROLE[kind])
        self.graph.inputs.append(GraphInput(ref.id, kind, name, data))
        return ref

    def node(self, op: str, args: list[Arg], outputs: Arg, region: Region = Region.FORWARD,
             kwargs: dict[str, Arg] | None = None, module: str = "", name: str | None = None,
             recompute_of: int | None = None) -> Node:
        if name is None:  # fx style: relu, relu_1, relu_2, ...
            base = op.split(".")[1]
            k = self._names.get(base, 0)
            self._names[base] = k + 1
            name = base if k == 0 else f"{base}_{k}"
        n = Node(len(self.graph.nodes), name, op, list(args), dict(kwargs or {}), outputs, region,
                 module, recompute_of)
        self.graph.nodes.append(n)
        return n

    def output(self, *refs: ValueRef) -> None:
        self.graph.outputs = [r.id for r in refs]


def small_module() -> Module:
    """A tiny, realistic training step (see the module docstring); verifies."""
    B, O = Region.BACKWARD, Region.OPTIMIZER
    G, X = Role.GRAD, Role.OTHER
    f32 = DType("float32")
    cpu = Device("cpu")
    b = GraphBuilder()
    w = b.input("fc.weight", InputKind.PARAMETER, (4, 8))
    gamma = b.input("bn.weight", InputKind.PARAMETER, (4,))
    mean = b.input("bn.running_mean", InputKind.MODULE_BUFFER, (4,))
    m1 = b.input("fc.weight:exp_avg", InputKind.OPTIMIZER_STATE, (4, 8))
    m2 = b.input("fc.weight:exp_avg_sq", InputKind.OPTIMIZER_STATE, (4, 8))
    x = b.input("batch[0]", InputKind.BATCH, (2, 8))

    # forward
    wt = b.view(w, (8, 4), (1, 8))
    b.node("aten.t.default", [w], wt, module="encoder.fc")
    y = b.new((2, 4))
    b.node("aten.einsum.default", ["bi,io->bo", [x, wt]], y, kwargs={"path": [[0, 1]]}, module="encoder.fc")
    bn_out, save_mean, save_rstd = b.new((2, 4)), b.new((4,)), b.new((4,))
    b.node("aten.native_batch_norm.default", [y, gamma, None, mean, None, True, 0.1, 1e-05],
           [bn_out, save_mean, save_rstd], module="encoder.bn")
    h = b.new((2, 4))
    relu = b.node("aten.relu.default", [bn_out], h, module="encoder.act")
    target = b.new((2,), "int64", X)
    b.node("aten.arange.start", [0, 2], target, kwargs={
        "dtype": DType("int64"), "layout": Layout("strided"), "device": cpu, "pin_memory": False})
    hs = b.view(h, (2, 3), (4, 1), offset=1)
    b.node("aten.slice.Tensor", [h, 1, 1, 9223372036854775807], hs, module="head")
    hc = b.new((2, 3))
    b.node("aten.clamp.default", [hs], hc, kwargs={"min": -float("inf"), "max": None}, module="head")
    logp = b.new((2, 3))
    b.node("aten._log_softmax.default", [hc, 1, False], logp, module="head")
    loss, total_weight = b.new(()), b.new(())
    b.node("aten.nll_loss_forward.default", [logp, target, None, 1, -100], [loss, total_weight])

    # backward
    g_loss = b.new((), role=G)
    b.node("aten.ones_like.default", [loss], g_loss, B, kwargs={
        "dtype": f32, "layout": Layout("strided"), "device": cpu, "pin_memory": False,
        "memory_format": MemoryFormat("preserve_format")})
    g_logp = b.new((2, 3), role=G)
    b.node("aten.nll_loss_backward.default", [g_loss, logp, target, None, 1, -100, total_weight], g_logp, B)
    g_hc = b.new((2, 3), role=G)
    b.node("aten._log_softmax_backward_data.default", [g_logp, logp, 1, f32], g_hc, B, module="head")
    g_h = b.new((2, 4), role=G)
    b.node("aten.slice_backward.default", [g_hc, [2, 4], 1, 1, 9223372036854775807, 1], g_h, B,
           module="head")
    h_again = b.new((2, 4))
    b.node("aten.relu.default", [bn_out], h_again, B, module="encoder.act", recompute_of=relu.id)
    g_bn = b.new((2, 4), role=G)
    b.node("aten.threshold_backward.default", [g_h, h_again, 0], g_bn, B, module="encoder.act")
    g_y, g_gamma = b.new((2, 4), role=G), b.new((4,), role=G)
    b.node("aten.native_batch_norm_backward.default",
           [g_bn, y, gamma, mean, None, save_mean, save_rstd, True, 1e-05, [True, True, False]],
           [g_y, g_gamma, None], B, module="encoder.bn")
    g_yt = b.view(g_y, (4, 2), (1, 4))
    b.node("aten.t.default", [g_y], g_yt, B, module="encoder.fc")
    g_w = b.new((4, 8), role=G)
    b.node("aten.mm.default", [g_yt, x], g_w, B, module="encoder.fc")

    # optimizer: Adam on fc.weight, SGD on bn.weight, all in place
    m1a = b.alias(m1)
    b.node("aten.mul_.Tensor", [m1, 0.9], m1a, O)
    m1b = b.alias(m1a)
    b.node("aten.add_.Tensor", [m1a, g_w], m1b, O, kwargs={"alpha": 0.09999999999999998})
    m2a = b.alias(m2)
    b.node("aten.mul_.Tensor", [m2, 0.999], m2a, O)
    m2b = b.alias(m2a)
    b.node("aten.addcmul_.default", [m2a, g_w, g_w], m2b, O, kwargs={"value": 0.0010000000000000009})
    denom = b.new((4, 8), role=X)
    b.node("aten.sqrt.default", [m2b], denom, O)
    denom_eps = b.new((4, 8), role=X)
    b.node("aten.add.Tensor", [denom, 1e-08], denom_eps, O)
    w_new = b.alias(w)
    b.node("aten.addcdiv_.default", [w, m1b, denom_eps], w_new, O, kwargs={"value": -0.001})
    gamma_new = b.alias(gamma)
    b.node("aten.add_.Tensor", [gamma, g_gamma], gamma_new, O, kwargs={"alpha": -0.1})
    b.output(loss)

    header = Header(
        producer="acir 0.1.0", revision=2, pipeline=["dce", "recompute{nodes=relu}"],
        provenance=Provenance(
            model="tests/ir_fixtures.py:small", batch_size=2, optimizer="adam",
            optimizer_options={"lr": "0.001", "betas": "(0.9, 0.999)", "eps": "1e-08"},
            seed=0, device="cpu", dtype="float32", torch_version="2.14.1"),
    )
    return Module(header, b.graph)


def conv_chain(layers: int, hw: int, device: str, model: str) -> Module:
    """conv -> relu, ``layers`` times, a sum loss, the backward and an SGD step: 5 nodes per layer."""
    B, O = Region.BACKWARD, Region.OPTIMIZER
    b = GraphBuilder(device)
    ws = [b.input(f"layers.{i}.conv.weight", InputKind.PARAMETER, (16, 16, 3, 3)) for i in range(layers)]
    x = b.input("batch[0]", InputKind.BATCH, (2, 16, hw, hw))
    acts = [x]
    for i, w in enumerate(ws):
        y = b.new((2, 16, hw, hw))
        b.node("aten.convolution.default", [acts[-1], w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1],
               y, module=f"layers.{i}.conv")
        r = b.new((2, 16, hw, hw))
        b.node("aten.relu.default", [y], r, module=f"layers.{i}.act")
        acts.append(r)
    loss = b.new(())
    b.node("aten.sum.default", [acts[-1]], loss, kwargs={"dtype": DType("float32")})
    seed = b.new((), role=Role.GRAD)
    b.node("aten.ones_like.default", [loss], seed, B, kwargs={"memory_format": MemoryFormat("preserve_format")})
    g = b.new((2, 16, hw, hw), role=Role.GRAD)
    b.node("aten.expand.default", [seed, [2, 16, hw, hw]], g, B)
    grads = []
    for i in range(layers - 1, -1, -1):
        gy = b.new((2, 16, hw, hw), role=Role.GRAD)
        b.node("aten.threshold_backward.default", [g, acts[i + 1], 0], gy, B, module=f"layers.{i}.act")
        gx, gw = b.new((2, 16, hw, hw), role=Role.GRAD), b.new((16, 16, 3, 3), role=Role.GRAD)
        b.node("aten.convolution_backward.default",
               [gy, acts[i], ws[i], [0], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False]],
               [gx, gw, None], B, module=f"layers.{i}.conv")
        grads.append(gw)
        g = gx
    for i, gw in zip(range(layers - 1, -1, -1), grads):
        b.node("aten.add_.Tensor", [ws[i], gw], b.alias(ws[i]), O, kwargs={"alpha": -0.01})
    b.output(loss)
    return Module(Header(producer="acir 0.1.0", provenance=Provenance(model=model, batch_size=2)), b.graph)


def big_module(layers: int = 3000) -> Module:
    """A deep conv/relu chain with its backward and SGD step; ``big_module(3000)`` has 15k nodes,
    about a resnet152 training step: for speed tests."""
    return conv_chain(layers, 8, "cuda:0", "chain")
