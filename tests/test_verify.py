"""The verifier: the fixture verifies, and each invariant, broken alone, is reported by name."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ir_fixtures import big_module, small_module

from acir.errors import VerifyError
from acir.ir.graph import (
    DType,
    GraphInput,
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
from acir.ir.verify import MAX_SHOWN, problems, verify


def broken(edit: Callable[[Module], object]) -> list[str]:
    m = small_module()
    edit(m)
    return problems(m)


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
    verify(big_module())
