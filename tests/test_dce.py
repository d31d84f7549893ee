"""Dead-code elimination: what it removes, and every kind of node it must keep."""

from __future__ import annotations

from acir.ir.graph import (
    INPUT_ROLE,
    Graph,
    GraphInput,
    Header,
    InputKind,
    Module,
    Node,
    Region,
    Role,
    Storage,
    Value,
    ValueRef,
)
from acir.passes.dce import DeadCodeElimination, has_side_effects


class Builder:
    """A few lines per test graph: inputs, then nodes in order, each with one float32 output."""

    def __init__(self) -> None:
        self.g = Graph()
        self._next = 0

    def _value(self, role: Role, shape: tuple[int, ...], storage: int | None) -> int:
        vid = self._next
        self._next += 1
        nbytes = 4
        for s in shape:
            nbytes *= s
        if storage is None:
            storage = 100 + vid
            self.g.storages.append(Storage(storage, nbytes, "cpu"))
        strides = tuple(1 for _ in shape)
        self.g.values[vid] = Value(vid, shape, "float32", strides, storage, 0, nbytes, role)
        return vid

    def input(self, name: str, kind: InputKind = InputKind.BATCH, shape: tuple[int, ...] = (2, 2)) -> int:
        vid = self._value(INPUT_ROLE[kind], shape, None)
        self.g.inputs.append(GraphInput(vid, kind, name))
        return vid

    def node(self, op: str, *args: object, shape: tuple[int, ...] = (2, 2), alias_of: int | None = None,
             outputs: int = 1, region: Region = Region.FORWARD, recompute_of: int | None = None) -> int:
        storage = self.g.values[alias_of].storage if alias_of is not None else None
        outs = [self._value(Role.ACTIVATION, shape, storage) for _ in range(outputs)]
        nid = len(self.g.nodes)
        ir_args = [ValueRef(a) if isinstance(a, int) and not isinstance(a, bool) else a for a in args]
        out: object = ValueRef(outs[0]) if outputs == 1 else [ValueRef(o) for o in outs]
        self.g.nodes.append(Node(nid, f"n{nid}", op, ir_args, {}, out, region, recompute_of=recompute_of))
        return outs[0]

    def module(self, *outputs: int) -> Module:
        self.g.outputs = list(outputs)
        return Module(Header(producer="test"), self.g)


def ops(m: Module) -> list[str]:
    return [n.op for n in m.graph.nodes]


def test_removes_a_dead_chain_in_one_sweep_with_its_values_and_storages() -> None:
    b = Builder()
    x = b.input("x")
    h = b.node("aten.relu.default", x)
    d1 = b.node("aten.sin.default", h)
    b.node("aten.cos.default", d1, shape=(4, 4))  # dead, reads a dead value
    y = b.node("aten.sum.default", h, shape=())
    m = b.module(y)
    result = DeadCodeElimination().run(m)
    assert result.modified
    assert ops(m) == ["aten.relu.default", "aten.sum.default"]
    assert result.stats["nodes_removed"] == 2
    assert result.stats["bytes_freed"] == 2 * 2 * 4 + 4 * 4 * 4
    assert set(m.graph.values) == {x, h, y}
    assert {s.id for s in m.graph.storages} == {m.graph.values[v].storage for v in (x, h, y)}


def test_nothing_dead_means_not_modified() -> None:
    b = Builder()
    x = b.input("x")
    y = b.node("aten.sum.default", b.node("aten.relu.default", x), shape=())
    m = b.module(y)
    result = DeadCodeElimination().run(m)
    assert not result.modified
    assert result.stats == {"nodes_removed": 0, "bytes_freed": 0}
    assert len(m.graph.nodes) == 2


def test_graph_outputs_and_multi_output_nodes_stay() -> None:
    b = Builder()
    x = b.input("x")
    first = b.node("aten.split.Tensor", x, 1, outputs=2)  # only the first output is used
    y = b.node("aten.neg.default", first)
    m = b.module(y)
    assert not DeadCodeElimination().run(m).modified


def test_keeps_mutating_ops() -> None:
    b = Builder()
    x = b.input("x")
    t = b.node("aten.clone.default", x)
    b.node("aten.relu_.default", t, alias_of=t)  # in place, result unused
    b.node("aten.add_.Tensor", t, x, alias_of=t)
    y = b.node("aten.sum.default", x, shape=())
    m = b.module(y)
    DeadCodeElimination().run(m)
    assert ops(m) == ["aten.clone.default", "aten.relu_.default", "aten.add_.Tensor", "aten.sum.default"]


def test_keeps_random_ops_even_when_unused() -> None:
    b = Builder()
    x = b.input("x")
    b.node("aten.native_dropout.default", x, 0.5, True, outputs=2)
    b.node("aten.rand_like.default", x)
    b.node("aten.bernoulli.p", x, 0.5)
    b.node("aten.sin.default", x)  # not random: removed
    y = b.node("aten.sum.default", x, shape=())
    m = b.module(y)
    DeadCodeElimination().run(m)
    assert ops(m) == ["aten.native_dropout.default", "aten.rand_like.default", "aten.bernoulli.p",
                      "aten.sum.default"]


def test_keeps_the_saved_rng_states_for_dropout_replays() -> None:
    """acir.ir.rng: the states have no reader but the node that keeps them alive, which has no output."""
    b = Builder()
    x = b.input("x")
    mask = b.node("aten.empty_like.default", x)
    state = b.node("acir.rng_state.default", mask, shape=(5056,))
    b.node("aten.bernoulli_.float", mask, 0.5, alias_of=mask)
    y = b.node("aten.mul.Tensor", x, mask)
    b.g.nodes.append(Node(len(b.g.nodes), "keep", "acir.keep_rng_states.default", [[ValueRef(state)]], {}, None,
                          Region.BACKWARD))
    m = b.module(y)
    assert not DeadCodeElimination().run(m).modified
    assert ops(m)[1:] == ["acir.rng_state.default", "aten.bernoulli_.float", "aten.mul.Tensor",
                          "acir.keep_rng_states.default"]


def test_keeps_unknown_namespaces_but_judges_unknown_aten_names_by_the_inplace_rule() -> None:
    b = Builder()
    x = b.input("x")
    b.node("mylib.custom_op.default", x)
    b.node("aten.no_such_op.default", x)
    b.node("aten.no_such_op_.default", x)
    y = b.node("aten.sum.default", x, shape=())
    m = b.module(y)
    DeadCodeElimination().run(m)
    assert ops(m) == ["mylib.custom_op.default", "aten.no_such_op_.default", "aten.sum.default"]


def test_keeps_writes_into_graph_input_storage() -> None:
    """A functionalised optimizer update writes a new value into the parameter's storage."""
    b = Builder()
    x = b.input("x")
    w = b.input("w", InputKind.PARAMETER)
    g = b.node("aten.mul.Tensor", x, w, region=Region.BACKWARD)
    b.node("aten.sub.Tensor", w, g, alias_of=w, region=Region.OPTIMIZER)  # w <- w - g, no reader
    y = b.node("aten.sum.default", x, shape=())
    m = b.module(y)
    assert not DeadCodeElimination().run(m).modified
    assert len(m.graph.nodes) == 3


def test_keeps_the_node_a_recomputation_names() -> None:
    b = Builder()
    x = b.input("x")
    b.node("aten.relu.default", x)  # n0: its result is no longer read ...
    r = b.node("aten.relu.default", x, region=Region.BACKWARD, recompute_of=0)  # ... n1 recomputes it
    y = b.node("aten.sum.default", r, shape=(), region=Region.BACKWARD)
    m = b.module(y)
    assert not DeadCodeElimination().run(m).modified


def test_a_view_sharing_a_live_storage_frees_no_bytes() -> None:
    b = Builder()
    x = b.input("x")
    h = b.node("aten.relu.default", x)
    b.node("aten.t.default", h, alias_of=h)  # a dead view: its storage stays (h uses it)
    y = b.node("aten.sum.default", h, shape=())
    m = b.module(y)
    result = DeadCodeElimination().run(m)
    assert result.stats["nodes_removed"] == 1
    assert result.stats["bytes_freed"] == 0


def test_has_side_effects_resolves_schemas() -> None:
    b = Builder()
    x = b.input("x")
    b.node("aten.copy_.default", x, x, alias_of=x)
    b.node("aten.mm.default", x, x)
    b.node("aten.relu", x)  # no overload: means .default
    m = b.module()
    inputs = {m.graph.values[x].storage}
    flags = [has_side_effects(n, inputs, m.graph) for n in m.graph.nodes]
    assert flags == [True, False, False]


def test_dce_spec_and_stats_through_the_pass_api() -> None:
    p = DeadCodeElimination()
    assert p.spec() == "dce"
    assert p.options() == []
