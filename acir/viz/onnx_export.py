"""The annotated graph as an ONNX model, for browsing in Netron (``acir-opt --emit=onnx``).

Why ONNX, next to ``acir-viz``'s Graphviz pictures: a laid-out picture of a whole training
step is too big to read at once (resnet152's, batch 2, has 11k nodes, 8.9k of them the
optimizer's), so ``acir-viz`` draws *selections* (a region, a module, a node's
neighbourhood), folds modules into boxes, and plots memory over time; its output is a
file to look at or put in a report. Netron (https://netron.app, or ``pip install
netron``) is an interactive viewer: it opens the whole graph, pans, zooms and searches it,
and shows everything about a node when it is clicked (attributes, inputs and outputs with
their types, description). So the ONNX file is for *browsing the whole graph with every
annotation on click*; ``acir-viz`` for a picture of a part, a folded overview, or the
memory plot. Nothing reads the ONNX file back, and it cannot be run (its operators are
acir's, and storage aliasing has no ONNX form). docs/onnx.md is the user's guide; this
docstring is the mapping.

Model. ``ir_version`` 10 (node and value ``metadata_props``), ``producer_name`` "acir",
``model_version`` the header's revision. ``opset_import``: the default ONNX domain (17)
and, at version 1, each custom domain used. ``metadata_props`` carry the header and the
analysis summaries (keys in docs/onnx.md): ``revision``, ``pipeline`` (the pipeline text
of every pass run so far), ``provenance.<field>``, ``optimizer_option.<key>``, counts
(``nodes``, ``nodes.FORWARD``, ..., ``values``, ``inputs.<kind>``), and per analysis block
present ``<block>.revision`` and ``<block>.fresh``, then ``profile.measured_peak_bytes``,
``profile.iteration_s``, ``liveness.simulated_peak_bytes``, ``liveness.peak_node``,
``liveness.persistent_bytes``, ``liveness.peak.<ROLE>``, ``plan.planner``,
``plan.budget_bytes``, ``plan.predicted_peak_bytes``, ``plan.no_ac_peak_bytes``,
``plan.floor_bytes``, ``plan.recomputed``, ... Byte counts read ``"<n> B (<human>)"``.
The model's ``doc_string`` is the text form's header lines.

Values. An acir value ``v<id>`` is the ONNX value ``"v<id>"`` (acir values are SSA, as
ONNX requires: an in-place op's result is a new value on the same storage), so names
match the text form (``acir-opt --emit=text``). Each has a ``ValueInfoProto``: element
type from the dtype (``UNDEFINED`` for one ONNX lacks, e.g. complex32), the shape, and a
``doc_string`` with its role, storage (id, offset in elements, size, device) and strides
when not contiguous: ONNX cannot say that two values share a storage (a view, an in-place
result), so the storage is written down instead. Graph inputs (parameters, buffers,
optimizer state, the batch, constants) are ONNX graph inputs, listed once, in the graph's
order, with ``metadata_props`` ``name``, ``kind``, ``role``, ``storage``, ``bytes``. A
CONSTANT input's bytes (``GraphInput.data``, small: the only tensor data an artifact
holds) are embedded as an initializer of the same name, when ONNX has its dtype and the
size matches; no other tensor data exists to embed (an artifact holds no weights). The
graph's outputs are ONNX graph outputs; every other node output is in ``value_info``.

Nodes. One ONNX node per acir node, in graph order, named as the acir node. Its
``op_type`` is the operator without namespace and overload (``convolution``) in domain
``org.acir.aten`` for ``aten`` operators, ``org.acir`` for acir's own (``acir.rng_state``),
``org.acir.<ns>`` for any other namespace; the exact overload is the ``overload`` attribute.
Never a standard ONNX operator, not even where one computes exactly the same (``aten.relu``
and ``Relu``): ONNX's checker rejects any attribute a standard operator does not declare
(but ``__``-prefixed ones), and every node carries its annotations as attributes, the same
way on every node. What that costs is Netron's colours and operator documentation.

Inputs are the tensors the node reads, in argument order (a list argument's tensors in
list order; ``metadata_props["input_names"]`` names them after the operator's schema,
which Netron uses as input labels). Outputs are the flattened output tree (a ``None``
output is the empty name ONNX uses for an absent optional output). Every other argument is
an attribute named after its schema argument (``stride``, ``padding``; ``arg<i>`` when
torch does not know the operator; keyword arguments by keyword): an int is an INT (a bool
0 or 1), a float a FLOAT when float32 holds it exactly and otherwise a STRING with its exact
``repr`` (ONNX floats are 32-bit: ``0.1`` would read ``0.10000000149``), a string a STRING,
``None`` the STRING ``"None"``, a dtype/layout/memory format ``"torch.<name>"``, a device
its name, a list of ints INTS, of exact floats FLOATS, and any other list (nested, mixed,
with ``None`` or with tensors) a STRING in the text form's syntax (``"[v5, v6]"``), so
that positions are kept. An argument whose name is one of acir's annotation attributes
below gets the suffix ``_arg``.

Annotation attributes, what the text form's node line and trailing comment say:
``overload``, ``id`` (INT: ``n<id>`` in the text form), ``region`` (FORWARD, BACKWARD,
OPTIMIZER), ``module`` (the nn.Module path; absent at top level), ``role`` (STRINGS: each
output's role, "" for a ``None`` output), ``storage`` and ``storage_offset`` (INTS, each
output's; -1 for a ``None`` output), ``new_bytes`` (INT: bytes of the storages the node
creates; 0 for a view or an in-place op), ``recompute_of`` and ``recompute_of_name`` (a
rewrite's copy: the id and name of the node it replays); from a profile block ``time_ms``
(FLOAT: median run time); from a liveness block ``live_bytes`` (INT: simulated live bytes
while it runs); ``peak`` (INT 1 on the peak node: liveness's, else the profile's); from a
plan block, when an output's storage is an activation the node creates, ``plan`` (STRINGS,
each output's decision: ``recompute``, ``keep``, ``keep (<why it must be kept>)``, "" for
an output the plan does not decide) and, when something is recomputed, ``recompute_count``
(INTS, each output's). Blocks stale against the graph's revision still annotate, as the
text form's comments do (their ``<block>.fresh`` metadata says "no"); a liveness timeline
of another length does not. The node's ``doc_string`` is its line of the text form,
comment included, so Netron's description shows the node exactly as ``--emit=text`` does.

Speed: the model is built with protobuf's message API directly (``onnx.helper``'s
conveniences cost several times as much). On resnet152's training step (batch 2: 11k
nodes, 14k values) :func:`to_onnx` takes about a second, plus torch's import for the
operators' argument names on first use; the file is about 5 MB.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
from collections import Counter
from typing import TYPE_CHECKING, Any

from acir import __version__
from acir.errors import VizError
from acir.ir.analyses import LIVENESS, PLAN, PROFILE, Decision, Liveness, Plan, Profile
from acir.ir.graph import DTYPE_SIZE, Arg, Device, DType, Graph, Layout, MemoryFormat, Module, Node, Value, ValueRef
from acir.ir.text import contiguous_strides, print_module
from acir.units import format_bytes

if TYPE_CHECKING:
    import onnx

__all__ = ["ACIR_DOMAIN", "ANNOTATIONS", "IR_VERSION", "ONNX_OPSET", "domain_of", "onnx_bytes", "to_onnx"]

IR_VERSION = 10
ONNX_OPSET = 17
ACIR_DOMAIN = "org.acir"

#: The attributes acir adds to every node (or some), beside the operator's arguments.
ANNOTATIONS = frozenset({"overload", "id", "region", "module", "role", "storage", "storage_offset", "new_bytes",
                         "recompute_of", "recompute_of_name", "time_ms", "live_bytes", "peak", "plan",
                         "recompute_count"})

#: acir dtype name -> ONNX TensorProto.DataType name (those ONNX lacks map to UNDEFINED).
_ELEM = {"float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "bfloat16": "BFLOAT16",
         "complex64": "COMPLEX64", "complex128": "COMPLEX128", "int64": "INT64", "int32": "INT32",
         "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
         "uint64": "UINT64", "bool": "BOOL", "float8_e4m3fn": "FLOAT8E4M3FN", "float8_e5m2": "FLOAT8E5M2",
         "float8_e4m3fnuz": "FLOAT8E4M3FNUZ", "float8_e5m2fnuz": "FLOAT8E5M2FNUZ"}

_NODE = re.compile(r"n\d+ ")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_FLOAT, _INT, _STRING, _STRINGS = 1, 2, 3, 8  # onnx.AttributeProto.FLOAT, INT, STRING, STRINGS


def _onnx():
    try:
        import onnx
    except ImportError:  # a dependency of acir, but say what to do if it is missing
        raise VizError("the ONNX export needs the onnx package: pip install 'onnx>=1.16'") from None
    return onnx


def domain_of(op: str) -> tuple[str, str]:
    """(ONNX domain, op_type) of an acir overload name: ``aten.convolution.default`` ->
    ``("org.acir.aten", "convolution")``, ``acir.rng_state.default`` -> ``("org.acir", "rng_state")``."""
    parts = op.split(".")
    if len(parts) < 3:
        return ACIR_DOMAIN, op
    ns, name = parts[0], ".".join(parts[1:-1])
    return (ACIR_DOMAIN if ns == "acir" else f"{ACIR_DOMAIN}.{ns}"), name


@functools.lru_cache(maxsize=None)
def _schema_names(op: str) -> tuple[str, ...] | None:
    """The overload's argument names from torch's schema; None when torch does not know it."""
    try:
        from acir.ir.ops import resolve_op

        return tuple(a.name for a in resolve_op(op)._schema.arguments)
    except Exception:  # an unknown operator, another torch: positional names will do
        return None


# ---------------------------------------------------------------------------
# Arguments as attributes


def _exact_f32(f: float) -> bool:
    if f != f or math.isinf(f):
        return True
    try:
        return struct.unpack("<f", struct.pack("<f", f))[0] == f
    except OverflowError:
        return False


def _text(a: Any) -> str:
    """An argument in the text form's syntax (for lists that cannot be INTS or FLOATS)."""
    if isinstance(a, ValueRef):
        return f"v{a.id}"
    if a is None:
        return "None"
    if isinstance(a, bool):
        return "True" if a else "False"
    if isinstance(a, float):
        return repr(a)
    if isinstance(a, str):
        return json.dumps(a, ensure_ascii=False)
    if isinstance(a, list):
        return "[" + ", ".join(_text(x) for x in a) + "]"
    if isinstance(a, (DType, Layout, MemoryFormat)):
        return "torch." + a.name
    if isinstance(a, Device):
        return f"device({json.dumps(a.name)})"
    return str(a)


def _set_attr(attr, onnx, name: str, a: Arg) -> None:
    """Fill ``attr`` (an AttributeProto) with the non-tensor argument ``a`` (rules: module docstring)."""
    A = onnx.AttributeProto
    attr.name = name
    if isinstance(a, bool):
        attr.type, attr.i = A.INT, int(a)
    elif isinstance(a, int) and _INT64[0] <= a <= _INT64[1]:
        attr.type, attr.i = A.INT, a
    elif isinstance(a, float) and _exact_f32(a):
        attr.type, attr.f = A.FLOAT, a
    elif isinstance(a, str):
        attr.type, attr.s = A.STRING, a.encode("utf-8")
    elif isinstance(a, (DType, Layout, MemoryFormat)):
        attr.type, attr.s = A.STRING, ("torch." + a.name).encode("utf-8")
    elif isinstance(a, Device):
        attr.type, attr.s = A.STRING, a.name.encode("utf-8")
    elif isinstance(a, list) and all(isinstance(x, int) and _INT64[0] <= x <= _INT64[1] for x in a):
        attr.type = A.INTS
        attr.ints.extend(int(x) for x in a)
    elif isinstance(a, list) and all(isinstance(x, float) and _exact_f32(x) for x in a):
        attr.type = A.FLOATS
        attr.floats.extend(a)
    else:  # None, inexact floats, huge ints, nested or mixed lists, lists with tensors
        attr.type, attr.s = A.STRING, _text(a).encode("utf-8")


def _refs(a: Arg, label: str, out: list[tuple[int, str]]) -> None:
    """The value ids inside ``a`` with a label each (``indices[1]`` for the second item of a list)."""
    if isinstance(a, ValueRef):
        out.append((a.id, label))
    elif isinstance(a, list):
        for k, x in enumerate(a):
            _refs(x, f"{label}[{k}]", out)


def _flat_outputs(o: Arg, out: list[int | None]) -> None:
    if isinstance(o, ValueRef):
        out.append(o.id)
    elif isinstance(o, list):
        for x in o:
            _flat_outputs(x, out)
    else:
        out.append(None)


# ---------------------------------------------------------------------------
# Values


def _value_doc(v: Value, storages: dict) -> str:
    st = storages.get(v.storage)
    where = f"s{v.storage}" + (f"+{v.storage_offset}" if v.storage_offset else "")
    if st is not None:
        where += f" ({format_bytes(st.nbytes)} on {st.device})"
    doc = f"{v.role.name}, storage {where}"
    if tuple(v.strides) != contiguous_strides(tuple(v.shape)):
        doc += ", strides [" + ",".join(map(str, v.strides)) + "]"
    return doc


class _Types:
    """ValueInfoProto filling, with the dtype -> elem type table built once."""

    def __init__(self, onnx, graph: Graph) -> None:
        dt = onnx.TensorProto.DataType
        self.elem = {k: dt.Value(v) for k, v in _ELEM.items() if v in dt.keys()}
        self.values = graph.values
        self.storages = graph.storage_map()

    def value(self, vid: int) -> Value:
        v = self.values.get(vid)
        if v is None:
            raise VizError(f"cannot export: value v{vid} is used but has no entry in the values table "
                           "(verify the artifact: acir-opt FILE, without --no-verify)")
        return v

    def fill(self, vi, vid: int) -> None:
        vi.name = f"v{vid}"
        v = self.value(vid)
        tt = vi.type.tensor_type
        tt.elem_type = self.elem.get(v.dtype, 0)
        shape = tt.shape
        shape.SetInParent()  # rank 0 is a present, empty shape, not an unknown one
        for d in v.shape:
            shape.dim.add().dim_value = d
        vi.doc_string = f"{v.dtype}[{','.join(map(str, v.shape))}] " + _value_doc(v, self.storages)


# ---------------------------------------------------------------------------
# Annotations


def _fmt_bytes(n: int) -> str:
    return f"{n} B ({format_bytes(n)})"


def _fresh(module: Module, block: Any) -> str:
    rev = getattr(block, "revision", None)
    return "yes" if rev == module.header.revision else f"no (graph at revision {module.header.revision})"


def _model_metadata(module: Module) -> list[tuple[str, str]]:
    h, p, g = module.header, module.header.provenance, module.graph
    out = [("schema_version", str(h.schema_version)), ("producer", h.producer), ("revision", str(h.revision)),
           ("pipeline", ",".join(h.pipeline))]
    for f in ("model", "batch_size", "seq_len", "image_size", "optimizer", "seed", "device", "dtype",
              "torch_version"):
        out.append((f"provenance.{f}", str(getattr(p, f))))
    out += [(f"optimizer_option.{k}", v) for k, v in p.optimizer_options.items()]
    regions = Counter(n.region.name for n in g.nodes)
    out.append(("nodes", str(len(g.nodes))))
    out += [(f"nodes.{r}", str(c)) for r, c in regions.items()]
    out += [("values", str(len(g.values))), ("storages", str(len(g.storages))), ("inputs", str(len(g.inputs)))]
    out += [(f"inputs.{k}", str(c)) for k, c in Counter(i.kind.name for i in g.inputs).items()]
    out.append(("recompute_copies", str(sum(n.recompute_of is not None for n in g.nodes))))
    names = {n.id: n.name for n in g.nodes}
    prof = module.analyses.get(PROFILE)
    if isinstance(prof, Profile):
        out += [("profile.revision", str(prof.revision)), ("profile.fresh", _fresh(module, prof)),
                ("profile.device", prof.device), ("profile.method", prof.method), ("profile.reps", str(prof.reps)),
                ("profile.warmup", str(prof.warmup)), ("profile.malloc", prof.malloc),
                ("profile.iteration_s", repr(prof.iteration_s))]
        if prof.peak_node in names:  # a profile carried over a rewrite measured no peak of this graph
            out += [("profile.measured_peak_bytes", _fmt_bytes(prof.measured_peak_bytes)),
                    ("profile.peak_node", f"n{prof.peak_node} {names[prof.peak_node]}")]
    live = module.analyses.get(LIVENESS)
    if isinstance(live, Liveness):
        out += [("liveness.revision", str(live.revision)), ("liveness.fresh", _fresh(module, live)),
                ("liveness.simulated_peak_bytes", _fmt_bytes(live.simulated_peak_bytes)),
                ("liveness.peak_node", f"n{live.peak_node} {names.get(live.peak_node, '?')}"),
                ("liveness.persistent_bytes", _fmt_bytes(live.persistent_bytes)),
                ("liveness.used_profile", str(live.used_profile)),
                ("liveness.activations", str(sum(s.activation for s in live.storages)))]
        out += [(f"liveness.peak.{r.name}", _fmt_bytes(b)) for r, b in live.peak_by_role.items()]
    plan = module.analyses.get(PLAN)
    if isinstance(plan, Plan):
        decisions = Counter(t.decision.name for t in plan.tensors)
        out += [("plan.revision", str(plan.revision)), ("plan.fresh", _fresh(module, plan)),
                ("plan.planner", plan.planner), ("plan.budget_bytes", _fmt_bytes(plan.budget_bytes)),
                ("plan.predicted_peak_bytes", _fmt_bytes(plan.predicted_peak_bytes)),
                ("plan.predicted_recompute_s", repr(plan.predicted_recompute_s)),
                ("plan.no_ac_peak_bytes", _fmt_bytes(plan.no_ac_peak_bytes)),
                ("plan.floor_bytes", _fmt_bytes(plan.floor_bytes)), ("plan.solve_s", repr(plan.solve_s)),
                ("plan.recomputed", str(decisions.get("RECOMPUTE", 0))), ("plan.kept", str(decisions.get("KEEP", 0))),
                ("plan.kept_by_reason", "; ".join(f"{r}: {c}" for r, c in Counter(
                    t.reason for t in plan.tensors if t.decision is Decision.KEEP and t.reason).most_common()))]
        if plan.optimality_gap >= 0:
            out.append(("plan.optimality_gap", repr(plan.optimality_gap)))
    return out


def _plan_note(decision: Decision, reason: str) -> str:
    if decision is Decision.RECOMPUTE:
        return "recompute"
    return decision.name.lower() + (f" ({reason})" if reason else "")


def _text_lines(module: Module) -> tuple[str, list[str]]:
    """The text form's header lines (one string), and each node's line with its comment, in graph order."""
    lines = print_module(module).split("\n")
    first = next((k for k, line in enumerate(lines) if line.startswith(("input ", "output")) or _NODE.match(line)),
                 len(lines))
    out, j = [], first
    for n in module.graph.nodes:
        head = f"n{n.id} "
        while j < len(lines) and not lines[j].startswith(head):
            j += 1
        out.append(lines[j] if j < len(lines) else "")
        j += 1
    return "\n".join(lines[:first]), out


# ---------------------------------------------------------------------------


def to_onnx(module: Module) -> onnx.ModelProto:
    """``module`` as an ONNX model for Netron: one node per acir node, every annotation an
    attribute (the mapping: this module's docstring). ``onnx.checker.check_model`` accepts it."""
    onnx = _onnx()
    A = onnx.AttributeProto
    g = module.graph
    types = _Types(onnx, g)
    prof, live, plan = module.analyses.get(PROFILE), module.analyses.get(LIVENESS), module.analyses.get(PLAN)
    run_s = prof.run_s() if isinstance(prof, Profile) else {}
    timeline = live.timeline if isinstance(live, Liveness) and len(live.timeline) == len(g.nodes) else None
    peak = live.peak_node if isinstance(live, Liveness) else prof.peak_node if isinstance(prof, Profile) else None
    decided = {t.storage: t for t in plan.tensors} if isinstance(plan, Plan) else {}
    nbytes = {s.id: s.nbytes for s in g.storages}
    names = {n.id: n.name for n in g.nodes}
    head, lines = _text_lines(module)

    model = onnx.ModelProto()
    model.ir_version = IR_VERSION
    model.producer_name, model.producer_version = "acir", __version__
    model.model_version = module.header.revision
    model.doc_string = head
    for k, v in _model_metadata(module):
        e = model.metadata_props.add()
        e.key, e.value = k, v
    graph = model.graph
    graph.name = module.header.provenance.model or "acir"
    graph.doc_string = "acir training step; every node's annotations are its attributes (docs/onnx.md)"

    seen: set[int] = set()
    listed: set[int] = set()
    for i in g.inputs:
        if i.value in listed:
            continue
        listed.add(i.value)
        vi = graph.input.add()
        types.fill(vi, i.value)
        v = g.values[i.value]
        vi.doc_string = f"{i.kind.name} {i.name!r}: " + vi.doc_string
        for k, val in (("name", i.name), ("kind", i.kind.name), ("role", v.role.name),
                       ("storage", f"s{v.storage}"), ("bytes", str(nbytes.get(v.storage, 0)))):
            e = vi.metadata_props.add()
            e.key, e.value = k, val
        seen.add(v.storage)
        if i.data and v.dtype in types.elem and len(i.data) == v.numel * DTYPE_SIZE.get(v.dtype, 0):
            t = graph.initializer.add()
            t.name, t.data_type, t.raw_data = vi.name, types.elem[v.dtype], i.data
            t.dims.extend(v.shape)

    outputs = set(g.outputs)
    domains: set[str] = set()
    for r, n in enumerate(g.nodes):
        node = graph.node.add()
        node.name = n.name
        node.doc_string = lines[r]
        _fill_node(node, n, onnx, types, domains)
        flat: list[int | None] = []
        _flat_outputs(n.outputs, flat)
        roles: list[bytes] = []
        storages: list[int] = []
        offsets: list[int] = []
        notes: list[bytes] = []
        counts: list[int] = []
        new = 0
        for vid in flat:
            node.output.append("" if vid is None else f"v{vid}")
            v = None if vid is None else types.value(vid)
            if v is not None and vid not in outputs:
                types.fill(graph.value_info.add(), vid)
            roles.append(b"" if v is None else v.role.name.encode())
            storages.append(-1 if v is None else v.storage)
            offsets.append(-1 if v is None else v.storage_offset)
            t = None
            if v is not None and v.storage not in seen:  # a storage this node creates
                seen.add(v.storage)
                new += nbytes.get(v.storage, 0)
                t = decided.get(v.storage)
            notes.append(b"" if t is None else _plan_note(t.decision, t.reason).encode("utf-8"))
            counts.append(0 if t is None else t.recompute_count)
        _ann(node, "region", n.region.name)
        if n.module:
            _ann(node, "module", n.module)
        _list(node, "role", roles, A.STRINGS)
        _list(node, "storage", storages, A.INTS)
        _list(node, "storage_offset", offsets, A.INTS)
        _ann(node, "new_bytes", new)
        if n.recompute_of is not None:
            _ann(node, "recompute_of", n.recompute_of)
            _ann(node, "recompute_of_name", names.get(n.recompute_of, "?"))
        if n.id in run_s:
            _ann(node, "time_ms", run_s[n.id] * 1e3)
        if timeline is not None:
            _ann(node, "live_bytes", timeline[r])
        if n.id == peak:
            _ann(node, "peak", 1)
        if any(notes):
            _list(node, "plan", notes, A.STRINGS)
        if any(counts):
            _list(node, "recompute_count", counts, A.INTS)

    for vid in dict.fromkeys(g.outputs):
        types.fill(graph.output.add(), vid)
    for d, version in [("", ONNX_OPSET)] + [(d, 1) for d in sorted(domains)]:
        o = model.opset_import.add()
        o.domain, o.version = d, version
    return model


def _list(node, name: str, values: list, kind: int) -> None:
    """Add the per-output annotation attribute ``name`` (STRINGS of bytes, or INTS)."""
    a = node.attribute.add()
    a.name, a.type = name, kind
    (a.strings if kind == _STRINGS else a.ints).extend(values)


def _ann(node, name: str, value: str | int | float) -> None:
    """Add the annotation attribute ``name``: a STRING, INT or FLOAT by the type of ``value``."""
    a = node.attribute.add()
    a.name = name
    if isinstance(value, str):
        a.type, a.s = _STRING, value.encode("utf-8")
    elif isinstance(value, float):
        a.type, a.f = _FLOAT, value
    else:
        a.type, a.i = _INT, int(value)


def _fill_node(node, n: Node, onnx, types: _Types, domains: set[str]) -> None:
    """op_type, domain, inputs, the arguments as attributes, ``overload`` and ``id``."""
    schema = _schema_names(n.op)
    ins: list[tuple[int, str]] = []
    args: list[tuple[str, Arg]] = []
    for k, a in enumerate(n.args):
        label = schema[k] if schema is not None and k < len(schema) else f"arg{k}"
        _refs(a, label, ins)
        if not isinstance(a, ValueRef):
            args.append((label, a))
    for key, a in n.kwargs.items():
        _refs(a, key, ins)
        if not isinstance(a, ValueRef):
            args.append((key, a))
    node.domain, node.op_type = domain_of(n.op)
    domains.add(node.domain)
    e = node.metadata_props.add()  # Netron labels an unknown operator's inputs with these
    e.key, e.value = "input_names", "[" + ", ".join(repr(label) for _, label in ins) + "]"
    node.input.extend(f"v{vid}" for vid, _ in ins)
    for vid, _ in ins:
        types.value(vid)  # a clean error for a value the table lacks
    _ann(node, "overload", n.op)
    _ann(node, "id", n.id)
    for name, a in args:
        _set_attr(node.attribute.add(), onnx, name + "_arg" if name in ANNOTATIONS else name, a)


def onnx_bytes(module: Module) -> bytes:
    """The serialised ONNX model of ``module`` (:func:`to_onnx`)."""
    return to_onnx(module).SerializeToString()
