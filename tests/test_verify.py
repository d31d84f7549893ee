"""The verifier: the fixture verifies, and each invariant, broken alone, is reported by name."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ir_fixtures import big_module, small_module

from acir.errors import VerifyError
from acir.ir.graph import (
    Device,
    DType,
    GraphInput,
    Header,
    InputKind,
    Layout,
    MemoryFormat,
    Module,
    Region,
    Role,
    Storage,
    Value,
    ValueRef,
)
from acir.ir.verify import MAX_SHOWN, problems, rederive, verify


def broken(edit: Callable[[Module], object], rederive: bool = False) -> list[str]:
    """The problems of the fixture after ``edit``; the structural checks only, unless ``rederive``."""
    m = small_module()
    edit(m)
    return problems(m, rederive=rederive)


def test_small_module_verifies():
    verify(small_module())
    assert problems(small_module()) == []


def _set(obj, **fields):
    def edit(m: Module) -> None:
        target = obj(m)
        for k, v in fields.items():
            setattr(target, k, v)
    return edit


def node(i: int):
    return lambda m: m.graph.nodes[i]


def value(i: int):
    return lambda m: m.graph.values[i]


# (what is broken, the edit, words every problem must contain; the edit breaks exactly one invariant)
CASES = [
    ("schema too old", _set(lambda m: m.header, schema_version=0), ["header: schema_version 0 is not in 1..1"]),
    ("schema too new", _set(lambda m: m.header, schema_version=2), ["schema_version 2"]),
    ("node id twice", _set(node(1), id=0), ["n0 (einsum): node id used by two nodes"]),
    ("node name twice", _set(node(1), name="t"), ["n1 (t): node name used by two nodes"]),
    ("storage id twice", lambda m: m.graph.storages.append(Storage(0, 128, "cpu")),
     ["storage s0: id used by two storages"]),
    ("storage missing", lambda m: m.graph.storages.pop(12), ["v14: its storage s12 does not exist"]),
    ("storage unused", lambda m: m.graph.storages.append(Storage(99, 4, "cpu")), ["storage s99: no value uses it"]),
    ("storage negative", _set(lambda m: m.graph.storages[26], nbytes=-1), ["storage s26: negative size"]),
    ("value defined twice by a node", _set(node(7), outputs=[ValueRef(15), ValueRef(15)]),
     ["v15: defined twice (by n7 (_log_softmax) and by n7 (_log_softmax))"]),
    ("value defined twice by inputs", lambda m: m.graph.inputs.append(GraphInput(5, InputKind.BATCH, "again")),
     ["v5: defined twice (by graph input 'batch[0]' and by graph input 'again')"]),
    ("defined value not in the table", lambda m: m.graph.values.pop(35),
     ["v35: defined by n25 (add__1) but missing from the values table"]),
    ("table value never defined",
     lambda m: m.graph.values.__setitem__(99, Value(99, (4,), "float32", (1,), 1, 0, 16, Role.PARAM)),
     ["v99: in the values table but defined by no graph input or node"]),
    ("use before definition", _set(node(0), args=[ValueRef(8)]),
     ["n0 (t): uses v8 before it is defined (by n2 (native_batch_norm) later)"]),
    ("use of own output", _set(node(3), args=[ValueRef(11)]), ["n3 (relu): uses its own output v11"]),
    ("use of an undefined value", _set(node(3), kwargs={"x": [ValueRef(999)]}),
     ["n3 (relu): uses v999, which is never defined"]),
    ("graph output undefined", _set(lambda m: m.graph, outputs=[999]), ["graph output v999 is never defined"]),
    ("regions out of order", _set(node(25), region=Region.FORWARD),
     ["n25 (add__1): region FORWARD after BACKWARD"]),
    ("unknown dtype", _set(value(14), dtype="float128"), ["v14: unknown dtype 'float128'"]),
    ("strides vs shape", _set(value(14), strides=(3,)), ["v14: 1 strides for 2 dims"]),
    ("negative dim", _set(value(14), shape=(-2, 3), nbytes=-24), ["v14: negative dim in shape [-2, 3]"]),
    ("negative offset", _set(value(13), storage_offset=-1), ["v13: negative storage_offset -1"]),
    ("nbytes", _set(value(14), nbytes=25), ["v14: nbytes 25 != numel 6 * 4 bytes of float32"]),
    ("extent", _set(value(13), storage_offset=2),
     ["v13: extends past the end of storage s10 (needs 36 bytes, the storage has 32)"]),
    ("roles in a storage", _set(value(13), role=Role.OTHER),
     ["v13: role OTHER differs from ACTIVATION of v11, which shares storage s10"]),
    ("input role", _set(value(5), role=Role.ACTIVATION),
     ["v5: role ACTIVATION, but graph input 'batch[0]' is a BATCH, whose role is INPUT"]),
    ("input names", _set(lambda m: m.graph.inputs[1], name="fc.weight"),
     ["graph input 'fc.weight': name used by two graph inputs"]),
    ("recompute_of missing", _set(node(13), recompute_of=99), ["n13 (relu_1): recompute_of=n99 names no node"]),
    ("recompute_of self", _set(node(13), recompute_of=13), ["n13 (relu_1): recompute_of=n13 names the node itself"]),
    ("outputs tree", _set(node(3), outputs=[ValueRef(11), 3]), ["n3 (relu): outputs contain 3 (int)"]),
    ("outputs tuple", _set(node(3), outputs=(ValueRef(11),)), ["n3 (relu): outputs contain", "(tuple)"]),
    ("op name", _set(node(3), op="aten.relu"), ["n3 (relu): op 'aten.relu' is not a 'namespace.op.overload' name"]),
    ("op name empty part", _set(node(3), op="aten..default"), ["op 'aten..default'"]),
    ("argument type", _set(node(3), args=[ValueRef(8), (1, 2)]),
     ["n3 (relu): argument (1, 2) has an unsupported type (tuple)"]),
    ("dtype argument", _set(node(11), args=[ValueRef(19), ValueRef(15), 1, DType("float128")]),
     ["n11 (_log_softmax_backward_data): unknown dtype torch.float128"]),
    ("layout argument", _set(node(4), kwargs={"layout": Layout("sparse")}), ["unknown layout torch.sparse"]),
    ("memory format argument", _set(node(6), kwargs={"memory_format": MemoryFormat("nhwc")}),
     ["unknown memory format torch.nhwc"]),
    ("data on a parameter", _set(lambda m: m.graph.inputs[0], data=b"\0" * 128),
     ["graph input 'fc.weight': only CONSTANT inputs carry data, but this PARAMETER has 128 bytes"]),
]


@pytest.mark.parametrize("what, edit, words", CASES, ids=[c[0] for c in CASES])
def test_each_broken_invariant_is_reported(what, edit, words):
    found = broken(edit)
    assert found, f"{what}: not reported"
    for w in words:
        assert any(w in p for p in found), f"{what}: {w!r} not in {found}"
    if what not in ("outputs tuple", "storage negative"):  # each edit breaks exactly one invariant
        assert len(found) == 1, found


def test_value_table_key_mismatch():
    found = broken(_set(value(7), id=6))
    assert "v7: values table entry holds a value with id 6" in found
    assert "v6: value id used by two values" in found


def test_negative_strides_skip_the_extent_check():
    assert broken(_set(value(13), strides=(-4, 1))) == []


def test_constant_input_data_size():
    def edit(m: Module) -> None:
        m.graph.inputs[5].kind = InputKind.CONSTANT
        m.graph.inputs[5].data = b"\0" * 63
    assert broken(edit) == ["graph input 'batch[0]': 63 bytes of data for a CONSTANT of 64 bytes (v5)"]


def test_verify_message_lists_the_first_problems_and_counts_the_rest():
    m = small_module()
    for n in m.graph.nodes:
        n.op = "bad"
    with pytest.raises(VerifyError) as e:
        verify(m)
    lines = str(e.value).splitlines()
    total = len(m.graph.nodes)
    assert lines[0] == f"IR verification failed ({total} problems):"
    assert lines[1] == "  n0 (t): op 'bad' is not a 'namespace.op.overload' name"
    assert len(lines) == 1 + MAX_SHOWN + 1
    assert lines[-1] == f"  ... and {total - MAX_SHOWN} more"
    assert len(problems(m)) == total


def test_verify_one_problem():
    m = small_module()
    m.graph.outputs = [999]
    with pytest.raises(VerifyError, match=r"\(1 problem\):\n  graph output v999 is never defined$"):
        verify(m)


def test_verify_15k_nodes():  # how fast: a benchmark's business, not a test's (no timed tests)
    # the structure only: the chain fixture records its expand as a new storage (torch's is a view)
    verify(big_module(), rederive=False)


# ---------------------------------------------------------------------------
# re-derivation: annotations that lie are found by running each op on meta tensors


def _storage_of(vid: int):
    return lambda m: m.graph.storage(m.graph.values[vid].storage)


# (what lies, the edit, words one problem must contain); each edit keeps the structure sound
LIES = [
    ("shape, same numel", _set(value(11), shape=(4, 2), strides=(2, 1)),
     ["v11: recorded with shape [4,2], strides [2,1], but aten.relu.default (n3 (relu)) gives shape [2,4], "
      "strides [4,1]"]),
    ("storage bytes", _set(_storage_of(11), nbytes=64),
     ["storage s10: recorded as 64 bytes, but aten.relu.default (n3 (relu)) allocates 32 bytes for v11"]),
    ("view strides", _set(value(13), strides=(3, 1)), ["v13: recorded with strides [3,1]", "gives strides [4,1]"]),
    ("view offset", _set(value(13), storage_offset=0), ["v13: recorded with storage offset 0", "storage offset 1"]),
    ("dtype", _set(value(12), dtype="int32", nbytes=8), ["v12: recorded with dtype int32", "gives dtype int64"]),
    ("an in-place result in a new storage",
     lambda m: (m.graph.storages.append(Storage(99, 16, "cpu")), setattr(m.graph.values[35], "storage", 99)),
     ["v35: recorded in storage s99, but aten.add_.Tensor (n25 (add__1)) returns a view of its input v1, "
      "whose storage is s1"]),
    ("a new result in an existing storage", _set(value(11), storage=7, storage_offset=0),
     ["v11: recorded in storage s7, which exists before n3 (relu), but aten.relu.default returns a new storage "
      "of 32 bytes"]),
    ("outputs tree", _set(node(8), outputs=[ValueRef(16), [ValueRef(17)]]),
     ["n8 (nll_loss_forward): its outputs[1] are recorded as a list of 1, but aten.nll_loss_forward.default "
      "returns a tensor"]),
    ("arguments the op refuses", _set(node(17), args=[ValueRef(5), ValueRef(26)]),
     ["n17 (mm): aten.mm.default refuses its inputs as the IR records them: a and b must have same reduction dim"]),
    ("an argument that changes the result", _set(node(12), args=[ValueRef(20), [2, 5], 1, 1, 9, 1]),
     ["v21: recorded with shape [2,4], strides [4,1], but aten.slice_backward.default (n12 (slice_backward)) "
      "gives shape [2,5], strides [5,1]"]),
]


@pytest.mark.parametrize("what, edit, words", LIES, ids=[c[0] for c in LIES])
def test_each_lie_is_found_by_rederivation(what, edit, words):
    assert broken(edit) == [], f"{what}: the structure should be sound"
    found = broken(edit, rederive=True)
    assert found, f"{what}: not found"
    assert any(all(w in p for w in words) for p in found), f"{what}: {words} not in {found}"


def test_rederivation_checks_every_node_and_caches():
    m = small_module()
    r = rederive(m)
    assert r.problems == []
    # the fixture's einsum passes path=[[0, 1]], which torch's schema (int[]? path) does not take: skipped
    assert r.skipped == [1] and r.checked == len(m.graph.nodes) - 1
    again = rederive(m)
    assert again.cache_hits == len(m.graph.nodes) and again.problems == []


def _tiny(op: str, outputs: str = "new", **kwargs):
    from ir_fixtures import GraphBuilder

    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (2, 3))
    y = b.new((2, 3))
    b.node("aten.relu.default", [x], y)
    out = {"new": lambda: b.new((2, 3)), "alias": lambda: b.alias(y)}[outputs]()
    b.node(op, [y], out, **kwargs)
    b.output(out)
    return Module(Header(producer="p"), b.graph)


def test_ops_that_cannot_run_on_meta_are_skipped_and_counted():
    r = rederive(_tiny("aten.no_such_op.default"))
    assert r.problems == [] and r.skipped == [1] and r.checked == 1
    r = rederive(_tiny("aten.nonzero.default"))  # data-dependent: no meta result
    assert r.problems == [] and r.skipped == [1]


def test_an_in_place_op_without_a_meta_kernel_is_checked_by_its_schema():
    from ir_fixtures import GraphBuilder

    import acir.ir.acir_ops  # noqa: F401 - defines acir::bernoulli_replay_

    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (2, 3))
    state = b.new((5056,), "uint8")
    b.node("acir.rng_state.default", [x], state)
    y = b.new((2, 3))
    b.node("aten.relu.default", [x], y)
    b.node("acir.bernoulli_replay_.default", [y, 0.5, state], b.alias(y))
    m = Module(Header(producer="p"), b.graph)
    r = rederive(m)
    assert r.problems == [] and r.by_schema == 2 and r.skipped == []
    m.graph.values[3].storage_offset = 1  # the replay's result is not its argument
    m.graph.storages[2].nbytes = 28
    assert any("acir.bernoulli_replay_.default (n2 (bernoulli_replay_)) writes and returns its argument v2" in p
               for p in rederive(m).problems)
    m = Module(Header(producer="p"), b.graph)
    m.graph.values[3].storage_offset = 0
    m.graph.storages[2].nbytes = 24
    m.graph.storages[1].nbytes = 6000
    assert any("returns a new storage of 5056 bytes" in p for p in rederive(m).problems)


def test_factory_ops_run_on_meta_whatever_their_device():
    from ir_fixtures import GraphBuilder

    b = GraphBuilder()
    huge = b.new((2 ** 40,))  # 4 TiB, if it were allocated
    b.node("aten.zeros.default", [[2 ** 40]], huge, kwargs={"dtype": DType("float32")})
    cuda = b.new((3,))
    b.node("aten.ones.default", [[3]], cuda, kwargs={"device": Device("cuda:0")})
    b.output(huge)
    assert rederive(Module(Header(producer="p"), b.graph)).problems == []


def test_rederive_can_be_turned_off_and_verify_names_the_problem():
    m = small_module()
    m.graph.storage(10).nbytes = 64
    verify(m, rederive=False)
    with pytest.raises(VerifyError, match=r"failed \(1 problem\):\n  storage s10: recorded as 64 bytes"):
        verify(m)


def test_problems_name_the_text_line_while_the_graph_is_unchanged():
    from acir.ir.text import parse_module, print_module

    text = print_module(small_module()).replace("v11:f32[2,4] s10=32B@cpu", "v11:f32[2,4] s10=64B@cpu")
    line = next(i for i, ln in enumerate(text.split("\n"), 1) if "s10=64B" in ln)
    m = parse_module(text, "small.txt")
    with pytest.raises(VerifyError, match=rf"\n  small.txt:{line}: storage s10: recorded as 64 bytes"):
        verify(m)
    m.header.revision += 1  # as a pass that changed the graph would: the lines no longer describe it
    with pytest.raises(VerifyError, match=r"\n  storage s10: recorded as 64 bytes"):
        verify(m)


def test_numbers_that_do_not_fit_their_fields():
    found = broken(_set(value(14), shape=(2, 2 ** 62), strides=(2 ** 62, 1), nbytes=2 ** 65))
    assert any("v14: 36893488147419103232 bytes do not fit 64 bits" in p for p in found)
    assert "storage s2147483648: id is not in 0..2147483647" in broken(
        lambda m: m.graph.storages.append(Storage(2 ** 31, 4, "cpu")))
    assert any("integer argument 9223372036854775808 does not fit 64 bits" in p
               for p in broken(_set(node(4), args=[0, 2 ** 63])))
    assert any("not valid Unicode" in p for p in broken(_set(node(3), name="relu\ud800")))
    assert any("revision 4294967296 is not in 0..4294967295" in p
               for p in broken(_set(lambda m: m.header, revision=2 ** 32)))
    assert broken(_set(lambda m: m.header.provenance, accumulate=2 ** 63)) == [
        "header: provenance accumulate 9223372036854775808 does not fit 64 bits"]


def test_a_meta_kernel_that_branches_on_the_device_is_asked_again_on_that_device():
    """``_embedding_bag``'s meta kernel sizes ``max_indices`` by whether the offsets are on the CPU,
    which a plain meta tensor cannot say: on meta tensors it gives [0], on the CPU (and under the
    fake tensors capture uses) one per bag. A captured EmbeddingBag step verifies; a lie about
    that output is still found."""
    import copy

    import torch
    from torch import nn

    import acir
    from acir.ir.graph import ValueRef

    model = nn.Sequential(nn.EmbeddingBag(40, 16, mode="mean"), nn.Linear(16, 3))
    batch = (torch.randint(0, 40, (8, 5)), torch.randint(0, 3, (8,)))
    step = acir.compile(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda m, b: nn.functional.cross_entropy(
        m(b[0]), b[1]), batch, quiet=True)
    m = step.module
    assert problems(m) == []
    bad = copy.deepcopy(m)
    bag = next(n for n in bad.graph.nodes if n.op == "aten._embedding_bag.default")
    last = bag.outputs[-1]
    assert isinstance(last, ValueRef) and bad.graph.values[last.id].shape == (8,)
    bad.graph.values[last.id].shape = (7,)
    bad.graph.values[last.id].nbytes = 7 * 8
    found = problems(bad)
    assert any("shape [7]" in p for p in found), found
