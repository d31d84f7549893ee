"""The text form: golden output, lossless round trips, and parse errors with line numbers."""

from __future__ import annotations

import math
import os
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_fixtures import GraphBuilder, big_module, small_module

from acir.errors import ParseError
from acir.ir.analyses import PROFILE
from acir.ir.artifact import encode, read_bytes
from acir.ir.graph import (
    DTYPE_SIZE,
    LAYOUTS,
    MEMORY_FORMATS,
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
from acir.ir.serde import dumps, loads
from acir.ir.text import parse_module, print_module
from acir.ir.verify import problems

GOLDEN = pathlib.Path(__file__).parent / "golden" / "small.acir.txt"


def golden_text() -> str:
    return GOLDEN.read_bytes().decode("utf-8")


# ---------------------------------------------------------------------------
# golden and round trips of the fixture


def test_golden_small_module():
    text = print_module(small_module())
    if os.environ.get("ACIR_UPDATE_GOLDEN") == "1":
        GOLDEN.write_bytes(text.encode("utf-8"))
    assert text == golden_text(), "printer output changed; rerun with ACIR_UPDATE_GOLDEN=1 and review the diff"


def test_golden_parses_to_the_fixture():
    assert parse_module(golden_text(), "small.acir.txt") == small_module()


def test_binary_text_binary_identical():
    data = dumps(small_module())
    assert dumps(parse_module(print_module(loads(data)))) == data


def test_text_binary_text_identical():
    text = golden_text()
    assert print_module(loads(dumps(parse_module(text)))) == text


def test_artifact_reader_detects_text():
    m = small_module()
    data = encode(m, "text")
    assert data.startswith(b"acir ")
    assert dumps(read_bytes(data, "x.txt")) == dumps(m)


def test_format_details():
    lines = golden_text().splitlines()
    assert lines[0] == 'acir 1 "acir 0.1.0"'
    assert lines[-1] == "output v16"
    text = "\n".join(lines)
    assert "-> v6:f32[8,4]{1,8} s0 PARAM FORWARD @encoder.fc" in text  # a transposed view of a parameter
    assert "-> v13:f32[2,3]{4,1} s10+1 ACTIVATION" in text  # a view with an offset
    assert "(v24:f32[2,4] s22=32B@cpu GRAD, v25:f32[4] s23=16B@cpu GRAD, None)" in text
    assert "min=-inf, max=None" in text and "alpha=0.09999999999999998" in text
    assert 'device=device("cpu")' in text and "memory_format=torch.preserve_format" in text
    assert "recompute_of=n3" in text


def test_comments_blank_lines_and_crlf_are_ignored():
    lines = golden_text().splitlines()
    text = "\r\n".join(["# made by hand", ""] + lines[:1] + ["", "# a note", "   "] + lines[1:]) + "\r\n"
    assert dumps(parse_module(text)) == dumps(small_module())
    assert dumps(read_bytes(text.encode(), "x.txt")) == dumps(small_module())
    assert _error("# only a comment\n\n" + BASE.replace("revision 2", "revision x")).startswith("m.txt:4: ")


def test_quoting_of_odd_names():
    b = GraphBuilder(device="my device")
    x = b.input('weird "name"\n', InputKind.BATCH, (2,))
    b.node("my ns.op.default", [x, "a\u2028b", "é😀", 1], b.new((2,)), name="has space",
           kwargs={"not an ident": True, "_ok": -0.0, "nan": -math.nan}, module="blocks[0]")
    m = Module(Header(producer="p"), b.graph)
    assert problems(m) == []
    text = print_module(m)
    assert len(text.splitlines()) == len(text.split("\n")) - 1  # separators are escaped
    assert '"not an ident"=True' in text and '_ok=-0.0' in text and "nan=-nan" in text
    assert '@"blocks[0]"' in text and 's0=8B@"my device"' in text
    back = parse_module(text)
    assert print_module(back) == text and dumps(back) == dumps(m)
    assert math.copysign(1.0, back.graph.nodes[0].kwargs["nan"]) < 0


def test_constant_input_data():
    b = GraphBuilder()
    c = b.input("_tensor_constant0", InputKind.CONSTANT, (2,), data=b"\x00\x00\x80\x3f\x00\x00\x00\xc0")
    b.node("aten.neg.default", [c], b.new((2,)))
    m = Module(Header(producer="p"), b.graph)
    assert problems(m) == []
    text = print_module(m)
    assert 'CONSTANT "_tensor_constant0" data=AACAPwAAAMA=' in text
    assert dumps(parse_module(text)) == dumps(m)
    bad = text.replace("data=AACAPwAAAMA=", "data=AACAP!")
    assert "bad base64 data" in _error(bad) or "unexpected text" in _error(bad)


def test_print_and_parse_15k_nodes():  # how fast: a benchmark's business, not a test's (no timed tests)
    m = big_module()  # 15k nodes, about a resnet152 training step
    assert len(m.graph.nodes) == 15003
    assert dumps(parse_module(print_module(m))) == dumps(m)


# ---------------------------------------------------------------------------
# property: random small valid graphs round-trip exactly

_ODD_CHARS = '"\\\n\r\t \u2028\u2029\x85\x00é😀{}[](),=@#:-+.'
_ALPHABET = st.one_of(st.sampled_from(_ODD_CHARS), st.characters(codec="utf-8"))
_TEXT = st.text(_ALPHABET, max_size=8)
# NaN payload bits are not kept (only the sign), so every NaN here is a canonical one
_SAFE_FLOATS = st.floats().map(lambda f: math.copysign(math.nan, f) if math.isnan(f) else f)
_FLOATS = st.one_of(_SAFE_FLOATS, st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan,
                                                   1e-05, 0.1, 5e-324, 1.7976931348623157e308, 1e16]))
_INT64 = st.integers(-2**63, 2**63 - 1)


class _Ref:
    """A placeholder for 'some value defined so far', resolved while building."""

    def __init__(self, k: int) -> None:
        self.k = k


_LEAVES = st.one_of(
    _INT64, _FLOATS, st.booleans(), st.none(), _TEXT, st.integers(0, 99).map(_Ref),
    st.sampled_from(sorted(DTYPE_SIZE)).map(DType), st.sampled_from(sorted(LAYOUTS)).map(Layout),
    st.sampled_from(sorted(MEMORY_FORMATS)).map(MemoryFormat),
    st.one_of(st.sampled_from(["cpu", "cuda:0"]), _TEXT).map(Device),
)
_ARGS = st.recursive(_LEAVES, lambda c: st.lists(c, max_size=3), max_leaves=6)
_OUTS = st.recursive(st.sampled_from(["new", "view", "alias", None]), lambda c: st.lists(c, max_size=3),
                     max_leaves=4)
_SHAPES = st.lists(st.integers(0, 4), max_size=3).map(tuple)
_DTYPES = st.sampled_from(sorted(DTYPE_SIZE))


def _resolve(a, avail: list[int]):
    if isinstance(a, _Ref):
        return ValueRef(avail[a.k % len(avail)]) if avail else None
    if isinstance(a, list):
        return [_resolve(x, avail) for x in a]
    return a


@st.composite
def modules(draw) -> Module:
    b = GraphBuilder(device=draw(st.one_of(st.sampled_from(["cpu", "cuda:1"]), _TEXT)))
    names = draw(st.lists(_TEXT, max_size=4, unique=True))
    avail = []
    for name in names:
        # HYPERPARAM inputs are numbers with no bytes, checked on their own (test_hyperparam_inputs_round_trip)
        kind = draw(st.sampled_from([k for k in InputKind if k is not InputKind.HYPERPARAM]))
        shape, dtype = draw(_SHAPES), draw(_DTYPES)
        size = math.prod(shape) * DTYPE_SIZE[dtype]
        data = draw(st.binary(min_size=size, max_size=size)) if kind == InputKind.CONSTANT else b""
        avail.append(b.input(name, kind, shape, dtype, data).id)

    def make(o):
        if isinstance(o, list):
            return [make(x) for x in o]
        if o == "new" or (o is not None and not avail):
            return b.new(draw(_SHAPES), draw(_DTYPES), draw(st.sampled_from(Role)))
        if o is None:
            return None
        base = b.graph.values[avail[draw(st.integers(0, len(avail) - 1))]]
        if o == "alias":
            return b.alias(ValueRef(base.id))
        cap = b.graph.storage(base.storage).nbytes // DTYPE_SIZE[base.dtype]
        shape = draw(_SHAPES)
        strides = draw(st.lists(st.integers(0, 5), min_size=len(shape), max_size=len(shape)))
        extent = sum((d - 1) * s for d, s in zip(shape, strides)) + 1
        if 0 in shape:
            extent = 0
        if extent > cap:
            shape, strides, extent = (0,), [1], 0
        offset = draw(st.integers(0, cap - extent)) if cap >= extent else 0
        return b.view(ValueRef(base.id), shape, strides, offset)

    n_nodes = draw(st.integers(0, 6))
    regions = sorted(draw(st.lists(st.sampled_from(Region), min_size=n_nodes, max_size=n_nodes)),
                     key=lambda r: r.value)
    node_names = draw(st.lists(_TEXT, min_size=n_nodes, max_size=n_nodes, unique=True))
    for k in range(n_nodes):
        args = _resolve(draw(st.lists(_ARGS, max_size=4)), avail)
        kwargs = {key: _resolve(v, avail) for key, v in draw(st.dictionaries(_TEXT, _ARGS, max_size=3)).items()}
        op = draw(st.one_of(st.sampled_from(["aten.add.Tensor", "aten.t.default", "prims.view_of.default"]),
                            st.builds(lambda a, b_, c: f"{a}.{b_}.{c}", _TEXT.filter(bool),
                                      _TEXT.filter(bool), _TEXT.filter(bool)).filter(lambda s: s.count(".") == 2)))
        outs = make(draw(_OUTS))
        rec = draw(st.one_of(st.none(), st.integers(0, k - 1))) if k else None
        b.node(op, args, outs, regions[k], kwargs=kwargs, module=draw(_TEXT), name=node_names[k],
               recompute_of=rec)
        avail.extend(ValueRef(v).id for v in b.graph.nodes[-1].output_ids())
    b.graph.outputs = draw(st.lists(st.sampled_from(avail), max_size=3)) if avail else []
    header = Header(
        producer=draw(_TEXT), revision=draw(st.integers(0, 2**32 - 1)), pipeline=draw(st.lists(_TEXT, max_size=2)),
        provenance=Provenance(model=draw(_TEXT), batch_size=draw(_INT64), seq_len=draw(_INT64),
                              optimizer_options=draw(st.dictionaries(_TEXT, _TEXT, max_size=2)),
                              device=draw(_TEXT), torch_version=draw(_TEXT)))
    return _relabel(Module(header, b.graph), draw)


def _relabel(m: Module, draw) -> Module:
    """The same module with random, non-sequential value, storage and node ids."""
    g = m.graph
    ids = st.integers(0, 2**31 - 1)
    vmap = dict(zip(g.values, draw(st.lists(ids, min_size=len(g.values), max_size=len(g.values), unique=True))))
    smap = dict(zip([s.id for s in g.storages],
                    draw(st.lists(ids, min_size=len(g.storages), max_size=len(g.storages), unique=True))))
    nmap = dict(zip([n.id for n in g.nodes],
                    draw(st.lists(ids, min_size=len(g.nodes), max_size=len(g.nodes), unique=True))))

    def ref(a):
        if isinstance(a, ValueRef):
            return ValueRef(vmap[a.id])
        return [ref(x) for x in a] if isinstance(a, list) else a

    out = Graph(
        storages=[Storage(smap[s.id], s.nbytes, s.device) for s in g.storages],
        values={vmap[v.id]: Value(vmap[v.id], v.shape, v.dtype, v.strides, smap[v.storage], v.storage_offset,
                                  v.nbytes, v.role) for v in g.values.values()},
        inputs=[GraphInput(vmap[i.value], i.kind, i.name, i.data) for i in g.inputs],
        nodes=[Node(nmap[n.id], n.name, n.op, ref(n.args), {k: ref(a) for k, a in n.kwargs.items()}, ref(n.outputs),
                    n.region, n.module, None if n.recompute_of is None else nmap[n.recompute_of]) for n in g.nodes],
        outputs=[vmap[v] for v in g.outputs])
    return Module(m.header, out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules())
def test_random_modules_round_trip(m):
    assert problems(m, rederive=False) == []  # random ops on random arguments: the structure only
    text = print_module(m)
    back = parse_module(text)
    assert print_module(back) == text
    assert dumps(back) == dumps(m)
    assert print_module(loads(dumps(m))) == text


# ---------------------------------------------------------------------------
# parse errors name the line (edits of the fixture's text)

BASE = print_module(small_module())


def _edit(lineno: int, old: str, new: str) -> str:
    lines = BASE.split("\n")
    assert old in lines[lineno - 1], lines[lineno - 1]
    lines[lineno - 1] = lines[lineno - 1].replace(old, new, 1)
    return "\n".join(lines)


def _line_of(fragment: str) -> int:
    return next(i for i, line in enumerate(BASE.split("\n"), 1) if fragment in line)


def _error(text: str) -> str:
    with pytest.raises(ParseError) as e:
        parse_module(text, "m.txt")
    return str(e.value)


def _insert(lineno: int, line: str) -> str:
    lines = BASE.split("\n")
    lines.insert(lineno - 1, line)
    return "\n".join(lines)


N1 = _line_of("n1 einsum")
N2 = _line_of("n2 native_batch_norm")
N6 = _line_of("n6 clamp")
V5 = _line_of('"batch[0]"')


@pytest.mark.parametrize("text, line, words", [
    (_insert(3, "bogus 1 2"), 3, "unknown line kind 'bogus'"),
    (_edit(N1, ") -> v7", ") => v7"), N1, "expected '->'"),
    (_edit(N1, "[v5, v6]", "[v5 v6]"), N1, "expected ',' or ']'"),
    (_edit(N1, "path=[[0, 1]])", "path=[[0, 1]]"), N1, "expected"),
    (_edit(N1, '"bi,io->bo"', '"bi,io->bo'), N1, "unterminated string"),
    (_edit(N1, '"bi,io->bo"', '"bi\\qo"'), N1, "bad string: Invalid \\escape"),
    (_edit(N1, "-> v7:", "-> v6:"), N1, "value v6 is defined twice"),
    (_edit(N1, "s6=32B@cpu", "s0=32B@cpu"), N1, "storage s0 is defined twice"),
    (_edit(N1, "s6=32B@cpu", "s6"), N1, "storage s6 is used before its first mention with a size"),
    (_edit(N1, "ACTIVATION", "ACTIVATED"), N1, "unknown role"),
    (_edit(N1, "FORWARD", "FORWARDS"), N1, "unknown region"),
    (_edit(V5, "BATCH", "BATCHES"), V5, "unknown input kind"),
    (_edit(V5, "f32[2,8]", "f33[2,8]"), V5, "unknown dtype 'f33'"),
    (_edit(V5, "[2,8]", "[2,,8]"), V5, "bad shape"),
    (_edit(N6, "min=-inf", "min=-"), N6, "bad number"),
    (_edit(N6, "max=None", "max=__import__"), N6, "unexpected '__import__'"),
    (_edit(N6, "min=-inf, max=None", "min=-inf, min=None"), N6, "keyword argument 'min' given twice"),
    (_edit(N6, "min=-inf, max=None", "min=-inf, None"), N6, "positional argument after keyword"),
    (_edit(N2, "None, v2", "torch.float33, v2"), N2, "unknown torch name 'torch.float33'"),
    (_edit(N2, ") FORWARD @encoder.bn", ") FORWARD @encoder.bn extra"), N2, "unexpected text"),
    (_edit(2, "revision 2", "revision two"), 2, "expected the revision"),
    (_edit(5, "batch_size=2", "batch_sizes=2"), 5, "unknown provenance field 'batch_sizes'"),
    (_edit(1, 'acir 1 "acir 0.1.0"', 'acir 2 "acir 0.1.0"'), 1, "newer than this acir understands"),
    (_edit(1, 'acir 1 "acir 0.1.0"', 'revision 1'), 1, "the first line must be 'acir"),
    (_insert(N1, "revision 3"), N1, "after the graph has started"),
    (_insert(N1, 'input v99:f32[] s99=4B@cpu INPUT BATCH "late"'), N1, "input line after the first node"),
    (_insert(V5 + 1, "output v1"), V5 + 2, "text after the 'output' line"),
])
def test_parse_errors_name_the_line(text, line, words):
    msg = _error(text)
    assert msg.startswith(f"m.txt:{line}: "), msg
    assert words in msg, msg


def test_missing_header_lines():
    lines = BASE.split("\n")
    no_revision = "\n".join(x for x in lines if not x.startswith("revision"))
    msg = _error(no_revision)
    assert msg.startswith(f"m.txt:{_line_of('input ') - 1}: ") and "missing 'revision' line" in msg
    no_provenance = "\n".join(x for x in lines if not x.startswith("provenance"))
    assert "missing 'provenance' line" in _error(no_provenance)


def test_missing_output_line():
    lines = BASE.rstrip("\n").split("\n")
    msg = _error("\n".join(lines[:-1]) + "\n")
    assert msg.startswith(f"m.txt:{len(lines) - 1}: ") and "missing the final 'output' line" in msg


def test_empty_input():
    assert _error("").startswith("m.txt:1: empty input")


def test_error_gives_the_column():
    msg = _error(_edit(N6, "max=None", "max=Nope"))
    col = BASE.split("\n")[N6 - 1].index("max=None") + len("max=") + 1
    assert f"(column {col})" in msg, msg



# ---------------------------------------------------------------------------
# analysis blocks: data lines after 'output', and derived comments on node lines


def _with_analyses(profile_revision: int | None = 2, liveness: bool = True) -> Module:
    from acir.ir.analyses import NodeProfile, Profile
    from acir.pipeline.registry import build_pipeline

    m = small_module()
    if profile_revision is not None:
        times = [0.001, 0.1 + 0.2, 5e-324, 1e-07, 1.5, 0.25, 1 / 3]  # seconds, some odd floats
        nodes = [NodeProfile(n.id, times[k % len(times)], 32 * k, 16 * k, 1000 + k, 900 + k)
                 for k, n in enumerate(m.graph.nodes)]
        m.analyses[PROFILE] = Profile(revision=profile_revision, device="cpu", method="perf_counter", reps=5,
                                        warmup=1, torch_version="2.14.1+cpu", malloc="heap-retained", nodes=nodes,
                                        measured_peak_bytes=756, peak_node=17, iteration_s=0.0123)
    if liveness:
        build_pipeline("liveness")[0].run(m)
    return m


def test_analyses_round_trip_binary_text_binary():
    data = dumps(_with_analyses())
    text = print_module(loads(data))
    assert dumps(parse_module(text)) == data


def test_analyses_round_trip_text_binary_text():
    text = print_module(_with_analyses())
    back = parse_module(text)
    assert back.analyses == _with_analyses().analyses
    assert print_module(loads(dumps(back))) == text


def test_analysis_lines_follow_the_output_line_in_artifact_order():
    lines = print_module(_with_analyses()).splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("output "))
    assert [line.split(" ", 2)[:2] for line in lines[k + 1:]] == [["analysis", "profile"], ["analysis", "liveness"]]
    assert lines[k + 2].startswith("analysis liveness revision: 2 storages { defined: -1 last_use: 26")


def test_node_comments_for_people():
    text = print_module(_with_analyses())
    assert "n1 einsum = " in text and "ACTIVATION FORWARD @encoder.fc  # 300.000 ms, +32 B, live 512 B\n" in text
    assert "PARAM FORWARD @encoder.fc  # 1.000 ms, +0 B, live 480 B\n" in text  # a view: no new bytes
    assert "OTHER OPTIMIZER  # 0.000 ms, +128 B, live 756 B  <- peak\n" in text  # the simulated peak
    # a profile alone (even a stale one): run times, new bytes, the measured peak node
    only_profile = print_module(_with_analyses(profile_revision=1, liveness=False))
    assert "ACTIVATION FORWARD @encoder.fc  # 300.000 ms, +32 B\n" in only_profile
    assert "GRAD BACKWARD @encoder.fc  # 0.000 ms, +128 B  <- peak\n" in only_profile
    # liveness alone: no run times
    assert "ACTIVATION FORWARD @encoder.fc  # +32 B, live 512 B\n" in print_module(_with_analyses(None))
    # no analysis: no comments (the golden file above)
    assert "  #" not in print_module(small_module())


def test_format_bytes():
    from acir.units import format_bytes

    assert [format_bytes(n) for n in (0, 512, 1023, 1024, 524288, 189_500_000, 3 * 2**30, 5 * 2**40)] == \
        ["0 B", "512 B", "1023 B", "1.0 KiB", "512.0 KiB", "180.7 MiB", "3.0 GiB", "5.0 TiB"]


def test_trailing_comments_are_ignored():
    import re

    m = _with_analyses()
    text = print_module(m)
    bare = re.sub(r"  # [^\n]*", "", text)
    assert "  #" not in bare and bare != text
    assert dumps(parse_module(bare)) == dumps(parse_module(text)) == dumps(m)
    odd = text.replace("  # 300.000 ms, +32 B, live 512 B", '  # anything: "unclosed ( [ v99 -> n3 #')
    assert odd != text and dumps(parse_module(odd)) == dumps(m)


def test_comment_marks_inside_strings_are_data():
    from acir.pipeline.registry import build_pipeline

    b = GraphBuilder()
    x = b.input("x  # not a comment", InputKind.BATCH, (2,))
    b.node("aten.add.Tensor", [x, "a  # b"], b.new((2,)), module="m  # c", name="n  # d")
    m = Module(Header(producer="p"), b.graph)
    build_pipeline("liveness")[0].run(m)
    text = print_module(m)
    assert text.count("  # ") == 5  # four in strings, one comment
    back = parse_module(text)
    assert dumps(back) == dumps(m) and print_module(back) == text
    assert back.graph.nodes[0].args[1] == "a  # b" and back.graph.nodes[0].module == "m  # c"


ANALYSED = print_module(_with_analyses())
_LIVENESS_LINE = next(i for i, line in enumerate(ANALYSED.split("\n"), 1) if line.startswith("analysis liveness"))


def _replace_line(lineno: int, new: str) -> str:
    lines = ANALYSED.split("\n")
    lines[lineno - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize("text, line, words", [
    (_replace_line(_LIVENESS_LINE, "analysis liveness revision: x"), _LIVENESS_LINE, "bad liveness block"),
    (_replace_line(_LIVENESS_LINE, "analysis liveness storages { nope: 1 }"), _LIVENESS_LINE, "bad liveness block"),
    (_replace_line(_LIVENESS_LINE, "analysis nope revision: 1"), _LIVENESS_LINE, "unknown analysis 'nope'"),
    (_replace_line(_LIVENESS_LINE, "analysis profile revision: 1"), _LIVENESS_LINE, "analysis 'profile' given twice"),
    (_replace_line(_LIVENESS_LINE, "output v1"), _LIVENESS_LINE, "text after the 'output' line"),
    (_insert(N1, "analysis liveness revision: 1"), N1, "'analysis' line before the 'output' line"),
])
def test_bad_analysis_lines_name_the_line(text, line, words):
    msg = _error(text)
    assert msg.startswith(f"m.txt:{line}: "), msg
    assert words in msg, msg


def test_hyperparam_inputs_round_trip(captured):
    """A captured step's optimizer floats are HYPERPARAM inputs (numbers, no bytes) that the text form shows;
    the training-loop provenance (clipping, accumulation) is printed when set and parses back."""
    import dataclasses

    from acir.ir.serde import dumps

    m = captured("mlp")
    hyper = [i for i in m.graph.inputs if i.kind is InputKind.HYPERPARAM]
    assert hyper and all(i.name.split(":")[1] for i in hyper)
    text = print_module(m)
    assert f'HYPERPARAM "{hyper[0].name}"' in text and "s" in text
    assert "accumulate=" not in text and "clip_grad_norm=" not in text
    assert dumps(parse_module(text)) == dumps(m)
    m2 = dataclasses.replace(m, header=dataclasses.replace(
        m.header, provenance=dataclasses.replace(m.header.provenance, accumulate=4, clip_grad_norm=0.25)))
    text2 = print_module(m2)
    assert "accumulate=4 clip_grad_norm=0.25" in text2
    assert dumps(parse_module(text2)) == dumps(m2)
