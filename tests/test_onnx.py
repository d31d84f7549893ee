"""``acir-opt --emit=onnx``: the annotated graph as an ONNX model for Netron.

What a user relies on when opening the file: ONNX's checker accepts it (Netron and every
other ONNX tool load it), it has exactly the acir nodes in the acir order, every value
has its dtype and shape, and clicking a node shows what the text form says about it
(role, region, module, recompute_of, run time, live bytes, the plan's decision). And the
CLI writes it where asked, refuses a terminal, and fails cleanly on bad input.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from conftest import cli
from ir_fixtures import GraphBuilder, small_module

from acir.ir.graph import DType, Header, InputKind, Module, Provenance, Region, ValueRef
from acir.ir.serde import dumps
from acir.ir.text import print_module
from acir.pipeline.manager import PassManager
from acir.pipeline.registry import build_pipeline
from acir.tools.opt import main
from acir.viz.onnx_export import ANNOTATIONS, domain_of, onnx_bytes, to_onnx

PROFILE = "profile{reps=1,warmup=0}"

T = onnx.TensorProto
ELEM = {"float32": T.FLOAT, "float64": T.DOUBLE, "float16": T.FLOAT16, "bfloat16": T.BFLOAT16, "int64": T.INT64,
        "int32": T.INT32, "int16": T.INT16, "int8": T.INT8, "uint8": T.UINT8, "bool": T.BOOL,
        "complex64": T.COMPLEX64, "complex128": T.COMPLEX128}


def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def text(v) -> str:
    return v.decode() if isinstance(v, bytes) else v


def check(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model)
    onnx.checker.check_model(model, full_check=True)  # shape inference too: the types agree


def run(module: Module, pipeline: str) -> Module:
    m = copy.deepcopy(module)
    PassManager(build_pipeline(pipeline)).run(m)
    return m


def assert_mirrors(module: Module, model: onnx.ModelProto) -> None:
    """One ONNX node per acir node in order, and every value typed as acir types it."""
    g = module.graph
    assert [n.name for n in model.graph.node] == [n.name for n in g.nodes]
    for n, o in zip(g.nodes, model.graph.node):
        a = attrs(o)
        assert text(a["overload"]) == n.op and a["id"] == n.id
        assert (o.domain, o.op_type) == domain_of(n.op)
        assert list(o.input) == [f"v{v}" for v in n.input_ids()]
        assert [x for x in o.output if x] == [f"v{v}" for v in n.output_ids()]
        assert text(a["region"]) == n.region.name
        assert [text(r) for r in a["role"] if r] == [g.values[v].role.name for v in n.output_ids()]
        assert text(a.get("module", b"")) == n.module
    infos = {vi.name: vi for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    defined = [i.value for i in g.inputs] + [v for n in g.nodes for v in n.output_ids()]
    assert len(infos) == len(defined) == len(set(defined))
    for vid in defined:
        v, t = g.values[vid], infos[f"v{vid}"].type.tensor_type
        assert t.elem_type == ELEM[v.dtype], vid
        assert t.HasField("shape") and [d.dim_value for d in t.shape.dim] == list(v.shape), vid
    assert [vi.name for vi in model.graph.input] == [f"v{i.value}" for i in g.inputs]
    assert [vi.name for vi in model.graph.output] == [f"v{v}" for v in g.outputs]
    domains = {o.domain for o in model.graph.node}
    assert {(i.domain, i.version) for i in model.opset_import} == {("", 17)} | {(d, 1) for d in domains}


# ---------------------------------------------------------------------------
# The mapping, on the hand-made step


def test_small_module_checks_and_mirrors_the_graph() -> None:
    m = small_module()
    model = to_onnx(m)
    check(model)
    assert_mirrors(m, model)
    assert model.ir_version == 10 and model.producer_name == "acir" and model.model_version == 2
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["pipeline"] == "dce,recompute{nodes=relu}" and meta["revision"] == "2"
    assert meta["provenance.model"] == "tests/ir_fixtures.py:small" and meta["optimizer_option.lr"] == "0.001"
    assert meta["nodes"] == "26" and meta["nodes.OPTIMIZER"] == "8" and meta["recompute_copies"] == "1"
    assert model.doc_string.startswith('acir 1 "acir 0.1.0"\nrevision 2\n')


def test_node_reads_like_its_text_line() -> None:
    m = small_module()
    model = to_onnx(m)
    lines = [line for line in print_module(m).splitlines() if line[:1] == "n" and line[1:2].isdigit()]
    assert [o.doc_string for o in model.graph.node] == lines
    by = {o.name: attrs(o) for o in model.graph.node}
    # views: no new bytes, the base's storage at its offset
    assert by["slice"]["storage"] == [10] and by["slice"]["storage_offset"] == [1] and by["slice"]["new_bytes"] == 0
    assert by["relu"]["new_bytes"] == 32 and by["t"]["role"] == [b"PARAM"]
    # the rewrite's copy names the node it replays
    assert by["relu_1"]["recompute_of"] == 3 and by["relu_1"]["recompute_of_name"] == b"relu"
    assert "recompute_of" not in by["relu"]
    # non-tensor arguments, named after the schema
    assert by["slice"]["dim"] == 1 and by["slice"]["end"] == 9223372036854775807
    assert by["einsum"]["equation"] == b"bi,io->bo" and by["einsum"]["tensors"] == b"[v5, v6]"
    assert by["einsum"]["path"] == b"[[0, 1]]"
    bn = by["native_batch_norm"]
    assert bn["training"] == 1 and bn["bias"] == b"None" and bn["momentum"] == b"0.1" and bn["eps"] == b"1e-05"
    assert by["clamp"]["min"] == float("-inf") and by["clamp"]["max"] == b"None"
    assert by["slice_backward"]["input_sizes"] == [2, 4]
    assert by["arange"]["dtype"] == b"torch.int64" and by["arange"]["device"] == b"cpu"
    assert by["add"]["other"] == b"1e-08" and by["add_"]["alpha"] == b"0.09999999999999998"
    # a None output: the empty name, -1 storage, "" role
    nbb = next(o for o in model.graph.node if o.name == "native_batch_norm_backward")
    assert list(nbb.output) == ["v24", "v25", ""]
    assert attrs(nbb)["storage"] == [22, 23, -1] and attrs(nbb)["role"] == [b"GRAD", b"GRAD", b""]
    # Netron's input labels, from the schema
    meta = {p.key: p.value for p in next(o for o in model.graph.node if o.name == "einsum").metadata_props}
    assert meta["input_names"] == "['tensors[0]', 'tensors[1]']"
    # graph inputs say what they are
    w = {p.key: p.value for p in model.graph.input[0].metadata_props}
    assert w == {"name": "fc.weight", "kind": "PARAMETER", "role": "PARAM", "storage": "s0", "bytes": "128"}
    vis = {vi.name: vi.doc_string for vi in model.graph.value_info}
    assert vis["v13"] == "float32[2,3] ACTIVATION, storage s10+1 (32 B on cpu), strides [4,1]"
    assert vis["v7"] == "float32[2,4] ACTIVATION, storage s6 (32 B on cpu)"


def test_argument_named_like_an_annotation_is_renamed() -> None:
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (2,))
    y = b.new((2,))
    b.node("aten.fake.default", [x], y, kwargs={"region": "left", "module": 3})
    b.output(y)
    model = to_onnx(Module(Header(), b.graph))
    check(model)
    a = attrs(model.graph.node[0])
    assert a["region"] == b"FORWARD" and a["region_arg"] == b"left" and a["module_arg"] == 3
    assert "module" not in a and ANNOTATIONS >= {"region", "module", "role", "plan"}
    assert (model.graph.node[0].domain, model.graph.node[0].op_type) == ("org.acir.aten", "fake")


def test_argument_kinds() -> None:
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (2,))
    y = b.new((2,))
    b.node("aten.fake.default", [x, 0.5, 0.1, [], [0.5, 0.25], [0.5, 0.1], [1, None], 2 ** 70, True,
                                 [ValueRef(x.id), None]], y, kwargs={"dtype": DType("float16")})
    b.output(y)
    model = to_onnx(Module(Header(), b.graph))
    check(model)
    a = attrs(model.graph.node[0])
    assert a["arg1"] == 0.5 and a["arg2"] == b"0.1" and a["arg3"] == [] and a["arg4"] == [0.5, 0.25]
    assert a["arg5"] == b"[0.5, 0.1]" and a["arg6"] == b"[1, None]" and a["arg7"] == str(2 ** 70).encode()
    assert a["arg8"] == 1 and a["arg9"] == b"[v0, None]" and a["dtype"] == b"torch.float16"
    assert list(model.graph.node[0].input) == ["v0", "v0"]  # x itself, then x inside the list


def test_constants_are_initializers_and_odd_dtypes_still_check() -> None:
    b = GraphBuilder()
    c = b.input("_tensor_constant0", InputKind.CONSTANT, (2,), data=b"\x00\x00\x80\x3f\x00\x00\x00\xc0")
    z = b.input("z", InputKind.BATCH, (3,), dtype="complex32")
    y = b.new((2,))
    b.node("aten.neg.default", [c], y, Region.FORWARD)
    w = b.new((3,), dtype="complex32")
    b.node("aten.neg.default", [z], w, Region.FORWARD)
    b.output(y, w)
    model = to_onnx(Module(Header(provenance=Provenance(model="consts")), b.graph))
    check(model)
    (init,) = model.graph.initializer
    assert init.name == "v0" and list(onnx.numpy_helper.to_array(init)) == [1.0, -2.0]
    assert model.graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.UNDEFINED
    assert model.graph.output[1].doc_string.startswith("complex32[3] ")


def test_unknown_value_is_a_clean_error() -> None:
    from acir.errors import VizError

    m = small_module()
    m.graph.nodes[3].args[0] = ValueRef(424242)
    with pytest.raises(VizError, match="value v424242 is used but has no entry"):
        to_onnx(m)


# ---------------------------------------------------------------------------
# Captured models, with the analyses


@pytest.mark.parametrize("name", ["mlp", "bert-tiny"])
def test_captured_models(captured, name: str) -> None:
    m = captured(name)
    model = to_onnx(m)
    check(model)
    assert_mirrors(m, model)
    if name == "bert-tiny":  # dropout's generator snapshots are acir's own operators
        ops = {(o.domain, o.op_type) for o in model.graph.node}
        assert ("org.acir", "rng_state") in ops and ("org.acir.aten", "addmm") in ops


def test_profile_liveness_and_plan_annotations(captured) -> None:
    m = run(captured("mlp"), f"{PROFILE},liveness,recompute-all")
    model = to_onnx(m)
    check(model)
    nodes = [attrs(o) for o in model.graph.node]
    assert all(isinstance(a["time_ms"], float) and a["time_ms"] >= 0 for a in nodes)
    from acir.ir.analyses import LIVENESS, PLAN

    live = m.analyses[LIVENESS]
    assert [a["live_bytes"] for a in nodes] == live.timeline
    assert [a["id"] for a in nodes if "peak" in a] == [live.peak_node]
    planned = [a for a in nodes if "plan" in a]
    decided = [d for a in planned for d in a["plan"] if d]
    assert len(decided) == len(m.analyses[PLAN].tensors)
    assert b"recompute" in decided and all(d == b"recompute" or d.startswith(b"keep") for d in decided)
    assert any(c > 0 for a in planned for c in a.get("recompute_count", []))
    for a in planned:
        assert len(a["plan"]) == len(a["role"])
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["plan.planner"] == "recompute-all" and meta["plan.fresh"] == "yes"
    assert meta["liveness.simulated_peak_bytes"].startswith(f"{live.simulated_peak_bytes} B (")
    assert "profile.measured_peak_bytes" in meta and "plan.budget_bytes" in meta and "plan.floor_bytes" in meta


def test_rewritten_graph_marks_its_copies(captured) -> None:
    m = run(captured("mlp"), f"{PROFILE},liveness,recompute-all,rewrite")
    model = to_onnx(m)
    check(model)
    assert_mirrors(m, model)
    copies = [(o, attrs(o)) for o in model.graph.node if "recompute_of" in attrs(o)]
    assert copies and len(copies) == sum(n.recompute_of is not None for n in m.graph.nodes)
    names = {n.id: n.name for n in m.graph.nodes}
    for o, a in copies:
        assert a["region"] == b"BACKWARD" and a["recompute_of_name"] == names[a["recompute_of"]].encode()
        assert f"recompute_of=n{a['recompute_of']}" in o.doc_string
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["plan.fresh"].startswith("no (graph at revision")  # the plan annotates still, marked stale
    assert int(meta["recompute_copies"]) == len(copies)


# ---------------------------------------------------------------------------
# The CLI


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "step.acir"
    path.write_bytes(dumps(small_module()))
    return path


def test_cli_writes_the_file_and_pipes(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "step.onnx"
    r = cli("acir-opt", str(artifact), "--emit=onnx", "-o", str(out))
    assert (r.returncode, r.stderr) == (0, b"")
    model = onnx.load(str(out))
    check(model)
    assert out.read_bytes() == onnx_bytes(small_module())
    r = cli("acir-opt", "-p", "dce", "--emit=onnx", stdin=artifact.read_bytes())  # stdout is a pipe here
    assert r.returncode == 0
    piped = onnx.load_from_string(r.stdout)
    assert {p.key: p.value for p in piped.metadata_props}["pipeline"].endswith(",dce")


def test_cli_refuses_a_terminal(artifact: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    rc = main([str(artifact), "--emit=onnx"])
    err = capsys.readouterr().err
    assert rc == 1 and err == ("acir-opt: error: refusing to write an ONNX model (binary) to a terminal; "
                               "use -o FILE.onnx or a pipe\n")


def test_cli_bad_input_and_output(artifact: Path, tmp_path: Path, capsys) -> None:
    garbage = tmp_path / "garbage.acir"
    garbage.write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "o.onnx"
    for argv, words in [([str(garbage)], "not an acir artifact"), ([str(tmp_path / "nope.acir")], "cannot read"),
                        ([str(artifact), "-o", str(tmp_path / "no" / "dir" / "o.onnx")], "cannot write")]:
        rc = main([*argv, "--emit=onnx", *(["-o", str(out)] if "-o" not in argv else [])])
        err = capsys.readouterr().err
        assert rc == 1 and err.startswith("acir-opt: error: ") and words in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    r = cli("acir-opt", str(garbage), "--emit=onnx", "-o", str(out))
    assert r.returncode == 1 and r.stderr.startswith(b"acir-opt: error: ") and r.stderr.count(b"\n") == 1
    assert not out.exists()


def test_unverified_input_fails_cleanly(tmp_path: Path, capsys) -> None:
    m = small_module()
    m.graph.nodes[3].args[0] = ValueRef(424242)
    path = tmp_path / "bad.acir"
    path.write_bytes(dumps(m))
    rc = main([str(path), "--no-verify", "--emit=onnx", "-o", str(tmp_path / "o.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("acir-opt: error: cannot export: value v424242") and "Traceback" not in err


def test_onnx_is_imported_only_when_used() -> None:
    code = "import sys, acir.tools.opt, acir.viz.onnx_export; print('onnx' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr
