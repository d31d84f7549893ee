"""The IR's readable text form (``--emit=text``), and its parser.

Why the format looks like this:

* One line per item (header field, graph input, node, analysis block), so that ``diff``,
  ``grep`` and golden tests work line by line, and a 15k-node graph is a 15k-line file
  that a small hand-rolled parser reads in about a second. Nothing is ``eval``'d.
* It is lossless: for a verified module, ``parse_module(print_module(m))`` serialises to
  the same bytes as ``m``, so text can be edited by hand and fed back to every tool.
* A value is declared where it is defined (a graph input, or a node's output), as in SSA
  IRs like MLIR: ``v7:f32[2,4]{1,2} s3+4=128B@cpu ACTIVATION`` gives its dtype, shape,
  strides (only when not contiguous), storage, storage offset (only when not 0) and role.
  A use is just ``v7``. ``Value.nbytes`` is derived (numel * element size), not printed.
* Storages have no lines of their own: the first value that mentions one gives its size
  and device (``s3=128B@cpu``); later mentions (views, in-place results) give only ``s3``,
  so aliasing shows where it happens. Hence storages are rebuilt in first-mention order
  and values in definition order: the canonical orders of :mod:`acir.ir.graph`.
* A CONSTANT input's bytes follow its line as ``data=<base64>``.
* Strings are JSON-quoted; floats use ``repr`` (exact, incl. ``-inf`` and ``-0.0``; a NaN
  keeps its sign but not its payload bits); torch enums print as ``torch.<name>``.
* Analysis blocks follow the ``output`` line, one line each in artifact order:
  ``analysis liveness <block>``, the block in protobuf's one-line text format
  (:func:`acir.ir.serde.analysis_to_text`). They are data, so they round-trip with the graph.
* When a ``profile``, ``liveness`` or ``plan`` block is present (fresh or stale), each node
  line ends with a comment for people: ``  # 1.234 ms, +512.0 KiB, live 180.7 MiB`` - the
  node's run time (profile), the bytes of the storages it creates, the simulated live bytes
  while it runs (liveness) - then, from the plan, ``recompute`` or ``keep (random op)`` for
  a storage it creates that is recomputed or must be kept, and the peak node adds
  ``  <- peak``. Such comments are derived from the blocks and the graph and never read
  back: the parser skips a trailing ``  #...`` after a node line's last field.

Only canonical modules round-trip: a storage no value uses, or a value that no input or
node defines, has nowhere to be printed (:mod:`acir.ir.verify` reports both). The parser skips
blank and ``#`` lines; the first other line is ``acir ...``, by which :mod:`acir.ir.artifact`
tells text from binary. The low-level readers (strings, words, node arguments) live in
:mod:`acir.ir.text_parse`.
"""

from __future__ import annotations

import base64
import json
import math
import re

from acir.errors import ParseError, SerdeError
from acir.ir.analyses import (
    BY_NAME,
    KEYS,
    LIVENESS,
    PLAN,
    PROFILE,
    Analyses,
    AnalysisKey,
    Decision,
    Liveness,
    Plan,
    Profile,
)
from acir.ir.graph import (
    DTYPE_SIZE,
    SCHEMA_VERSION,
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
    Region,
    Role,
    Storage,
    Value,
    ValueRef,
)
from acir.ir.text_parse import (
    Bad,
    expect,
    expect_end,
    read_call,
    read_int,
    read_ints,
    read_string,
    read_word,
)
from acir.units import format_bytes

__all__ = ["contiguous_strides", "parse_module", "print_module"]

_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16",
          "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
          "bool": "b8", "complex64": "c64", "complex128": "c128"}
_LONG = {v: k for k, v in _SHORT.items()}
_PROV_INTS = ("batch_size", "seq_len", "image_size", "seed")
_PROV_FIELDS = ("model", "batch_size", "seq_len", "image_size", "optimizer", "seed", "device",
                "dtype", "torch_version")
_ROLES = {r.name: r for r in Role}
_REGIONS = {r.name: r for r in Region}
_KINDS = {k.name: k for k in InputKind}
_HEADER_KINDS = ("revision", "pipeline", "provenance", "optimizer_option")
_KIND_LIST = "acir, revision, pipeline, provenance, optimizer_option, input, n<id>, output or analysis"

_BARE = re.compile(r"[A-Za-z0-9_.\-]+")  # names, ops, module paths, option keys; else JSON-quoted
_BARE_DEVICE = re.compile(r"[A-Za-z0-9_.:\-]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # bare keyword names
_UPPER = re.compile(r"[A-Z_]+")
_DESC = re.compile(r"v(\d+):([A-Za-z0-9_]+)\[([-0-9,]*)\](?:\{([-0-9,]*)\})? s(\d+)(?:\+(-?\d+))?"
                   r"(?:=(\d+)B@([A-Za-z0-9_.:\-]*))?")
_ROLE = re.compile(r" ([A-Z_]+)")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")
_NODE_HEAD = re.compile(r"n(\d+) ([A-Za-z0-9_.\-]+) = ([A-Za-z0-9_.\-]+)\(")


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides torch gives a contiguous tensor of ``shape`` (a 0-size dim counts as 1)."""
    out, acc = [1] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        out[i] = acc
        acc *= max(shape[i], 1)
    return tuple(out)


# ---------------------------------------------------------------------------
# Printing


def _q(s: str) -> str:
    q = json.dumps(s, ensure_ascii=False)
    if "\u2028" in q or "\u2029" in q or "\x85" in q:  # one item per line, even for splitlines()
        q = q.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
    return q


def _bare(s: str, pat: re.Pattern = _BARE) -> str:
    return s if pat.fullmatch(s) else _q(s)


def _fmt_float(f: float) -> str:
    if f == f:
        return repr(float(f))
    return "-nan" if math.copysign(1.0, f) < 0 else "nan"


def _fmt_enum(a: DType | Layout | MemoryFormat) -> str:
    return "torch." + a.name


_FMT = {ValueRef: lambda a: f"v{a.id}", type(None): lambda a: "None", bool: lambda a: "True" if a else "False",
        int: str, float: _fmt_float, str: _q, list: lambda a: "[" + ", ".join([_fmt_arg(x) for x in a]) + "]",
        DType: _fmt_enum, Layout: _fmt_enum, MemoryFormat: _fmt_enum, Device: lambda a: f"device({_q(a.name)})"}


def _fmt_arg(a) -> str:
    fmt = _FMT.get(type(a))
    if fmt is not None:
        return fmt(a)
    for base in (bool, int, float, str, list):  # subclasses, e.g. an IntEnum: print the plain value
        if isinstance(a, base):
            return _FMT[base](base(a))
    return f"<unprintable {type(a).__name__}>"  # the verifier rejects such an argument


class _Printer:
    def __init__(self, g: Graph) -> None:
        self.values = g.values
        self.storages = g.storage_map()
        self.seen: set[int] = set()
        self.heads: dict[tuple, tuple[str, tuple[int, ...]]] = {}

    def desc(self, vid: int) -> str:
        v = self.values.get(vid)
        if v is None:
            return f"v{vid}:<missing>"  # does not parse back; the verifier reports it
        key = (v.dtype, tuple(v.shape))
        head = self.heads.get(key)
        if head is None:  # ':f32[2,4]' and the contiguous strides, once per dtype and shape
            head = self.heads[key] = (f":{_SHORT.get(v.dtype, v.dtype)}[{','.join(map(str, key[1]))}]",
                                      contiguous_strides(key[1]))
        s = f"v{vid}{head[0]}"
        if tuple(v.strides) != head[1]:
            s += "{" + ",".join(map(str, v.strides)) + "}"
        s += f" s{v.storage}"
        if v.storage_offset:
            s += f"+{v.storage_offset}"
        if v.storage not in self.seen:
            self.seen.add(v.storage)
            st = self.storages.get(v.storage)
            if st is not None:
                s += f"={st.nbytes}B@{_bare(st.device, _BARE_DEVICE)}"
        return f"{s} {v.role.name}"

    def outputs(self, o) -> str:
        if isinstance(o, ValueRef):
            return self.desc(o.id)
        if o is None:
            return "None"
        if isinstance(o, list):
            return "(" + ", ".join([self.outputs(x) for x in o]) + ")"
        return f"<unprintable {type(o).__name__}>"


def _blocks(m: Module) -> list[tuple[AnalysisKey, object]]:
    """The analysis blocks that have a text form, in artifact order."""
    return [(key, m.analyses[key]) for key in KEYS if key in m.analyses]


def _plan_notes(plan: Plan | None) -> dict[int, str]:
    """Storage id -> its plan note: ``recompute``, or ``keep (reason)`` when it must be kept."""
    if plan is None:
        return {}
    out = {}
    for t in plan.tensors:
        if t.decision is Decision.RECOMPUTE:
            out[t.storage] = "recompute"
        elif t.decision is Decision.KEEP and t.reason:
            out[t.storage] = f"keep ({t.reason})"
    return out


def _notes(m: Module) -> list[str] | None:
    """Each node line's trailing comment (run time, new bytes, live bytes, plan), or None without analyses.

    Derived for people, never parsed: the profile gives run times, the graph the bytes of
    the storages each node creates, the liveness timeline the live bytes, and the plan
    (fresh or stale) what happens to the storages the node creates.
    """
    prof, live, plan = m.analyses.get(PROFILE), m.analyses.get(LIVENESS), m.analyses.get(PLAN)
    prof = prof if isinstance(prof, Profile) else None
    live = live if isinstance(live, Liveness) else None
    plan = plan if isinstance(plan, Plan) else None
    if prof is None and live is None and plan is None:
        return None
    g = m.graph
    run = prof.run_s() if prof is not None else {}
    timeline = live.timeline if live is not None and len(live.timeline) == len(g.nodes) else None
    peak = live.peak_node if live is not None else prof.peak_node if prof is not None else None
    decided = _plan_notes(plan)
    nbytes = {s.id: s.nbytes for s in g.storages}
    seen = {g.values[i.value].storage for i in g.inputs if i.value in g.values}
    out = []
    for r, n in enumerate(g.nodes):
        new, notes = 0, []
        for vid in n.output_ids():
            v = g.values.get(vid)
            if v is not None and v.storage not in seen:
                seen.add(v.storage)
                new += nbytes.get(v.storage, 0)
                if v.storage in decided:
                    notes.append(decided[v.storage])
        parts = [] if n.id not in run else [f"{run[n.id] * 1e3:.3f} ms"]
        parts.append("+" + format_bytes(new))
        if timeline is not None:
            parts.append("live " + format_bytes(timeline[r]))
        parts += dict.fromkeys(notes)  # once each, in output order
        out.append("  # " + ", ".join(parts) + ("  <- peak" if n.id == peak else ""))
    return out


def print_module(m: Module) -> str:
    """The text form of ``m``: one line per header field, graph input, node and analysis block."""
    h, p, g = m.header, m.header.provenance, m.graph
    lines = [f"acir {h.schema_version} {_q(h.producer)}", f"revision {h.revision}"]
    lines += [f"pipeline {_q(s)}" for s in h.pipeline]
    lines.append("provenance " + " ".join(
        f"{f}={getattr(p, f)}" if f in _PROV_INTS else f"{f}={_q(getattr(p, f))}" for f in _PROV_FIELDS))
    lines += [f"optimizer_option {_bare(k)}={_q(v)}" for k, v in p.optimizer_options.items()]
    pr = _Printer(g)
    notes = _notes(m)
    for i in g.inputs:
        data = f" data={base64.b64encode(i.data).decode()}" if i.data else ""
        lines.append(f"input {pr.desc(i.value)} {i.kind.name} {_q(i.name)}{data}")
    for n in g.nodes:
        args = [_fmt_arg(a) for a in n.args]
        args += [f"{k if _IDENT.fullmatch(k) else _q(k)}={_fmt_arg(a)}" for k, a in n.kwargs.items()]
        line = (f"n{n.id} {_bare(n.name)} = {_bare(n.op)}({', '.join(args)}) -> "
                f"{pr.outputs(n.outputs)} {n.region.name}")
        if n.module:
            line += " @" + _bare(n.module)
        if n.recompute_of is not None:
            line += f" recompute_of=n{n.recompute_of}"
        lines.append(line)
    if notes is not None:
        k = len(lines) - len(g.nodes)
        lines[k:] = [line + note for line, note in zip(lines[k:], notes)]
    lines.append(("output " + ", ".join(f"v{v}" for v in g.outputs)).rstrip())
    blocks = _blocks(m)
    if blocks:
        from acir.ir.serde import analysis_to_text

        lines += [f"analysis {key.name} {analysis_to_text(key, block)}".rstrip() for key, block in blocks]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Parsing: one method per line kind over (line, position); errors carry the column.


class _Reader:
    def __init__(self) -> None:
        self.values: dict[int, Value] = {}
        self.storages: dict[int, Storage] = {}
        self.header = Header()
        self.graph = Graph()
        self.have: set[str] = set()  # header line kinds seen
        self.shapes: dict[str, tuple] = {}  # shape text -> (dims, numel, contiguous strides)
        self.analyses = Analyses()

    def value(self, s: str, i: int) -> tuple[ValueRef, int]:
        m = _DESC.match(s, i)
        if m is None:
            raise Bad(i, "expected a value like v3:f32[2,4] s1=32B@cpu ACTIVATION")
        vid_s, dt, shape_s, strides_s, sid_s, off_s, nbytes_s, device = m.groups()
        vid, sid = int(vid_s), int(sid_s)
        if vid in self.values:
            raise Bad(i, f"value v{vid} is defined twice")
        dtype = _LONG.get(dt, dt)
        size = DTYPE_SIZE.get(dtype)
        if size is None:
            raise Bad(i, f"unknown dtype {dt!r}")
        shape = self.shapes.get(shape_s)
        if shape is None:
            dims = read_ints(shape_s, i, "shape")
            numel = 1
            for d in dims:
                numel *= d
            shape = self.shapes[shape_s] = (dims, numel, contiguous_strides(dims))
        strides = shape[2] if strides_s is None else read_ints(strides_s, i, "strides")
        j = m.end()
        if nbytes_s is not None:
            if sid in self.storages:
                raise Bad(i, f"storage s{sid} is defined twice (only its first mention gives =<nbytes>B@<device>)")
            if not device:
                device, j = read_word(s, j, _BARE_DEVICE, "a device after '@'")
            self.storages[sid] = Storage(sid, int(nbytes_s), device)
        elif sid not in self.storages:
            raise Bad(i, f"storage s{sid} is used before its first mention with a size (s{sid}=<nbytes>B@<device>)")
        r = _ROLE.match(s, j)
        role = _ROLES.get(r.group(1)) if r else None
        if role is None:
            raise Bad(j + 1, f"unknown role; expected one of {', '.join(_ROLES)}")
        self.values[vid] = Value(vid, shape[0], dtype, strides, sid, int(off_s) if off_s else 0,
                                 shape[1] * size, role)
        return ValueRef(vid), r.end()

    def outputs(self, s: str, i: int):
        if s.startswith("None", i):
            return None, i + 4
        if not s.startswith("(", i):
            return self.value(s, i)
        items: list = []
        i += 1
        while not s.startswith(")", i):
            o, i = self.outputs(s, expect(s, i, ", ") if items else i)
            items.append(o)
        return items, i + 1

    def enum(self, s: str, i: int, table: dict, what: str):
        m = _UPPER.match(s, i)
        if m is None or m.group() not in table:
            raise Bad(i, f"unknown {what}; expected one of {', '.join(table)}")
        return table[m.group()], m.end()

    # -- line kinds ---------------------------------------------------------

    def acir(self, s: str) -> None:
        version, i = read_int(s, len("acir "), "the schema version")
        if version > SCHEMA_VERSION:
            raise Bad(5, f"schema version {version} is newer than this acir understands "
                          f"({SCHEMA_VERSION}); upgrade acir (pip install -U acir)")
        self.header.schema_version = version
        self.header.producer, i = read_string(s, expect(s, i, " "))
        expect_end(s, i)

    def header_line(self, kind: str, s: str) -> None:
        h, i = self.header, len(kind) + 1
        if kind == "revision":
            h.revision, i = read_int(s, i, "the revision")
        elif kind == "pipeline":
            entry, i = read_string(s, i)
            h.pipeline.append(entry)
        elif kind == "optimizer_option":
            key, i = read_word(s, i, _BARE, "an option name")
            if key in h.provenance.optimizer_options:
                raise Bad(len(kind) + 1, f"optimizer option {key!r} given twice")
            h.provenance.optimizer_options[key], i = read_string(s, expect(s, i, "="))
        else:  # provenance: key=value pairs; missing ones keep their defaults
            seen: set[str] = set()
            i -= 1
            while i < len(s):
                start = i = expect(s, i, " ")
                key, i = read_word(s, i, _IDENT, "a provenance field")
                if key not in _PROV_FIELDS or key in seen:
                    raise Bad(start, f"provenance field {key!r} given twice" if key in seen else
                               f"unknown provenance field {key!r}; expected {', '.join(_PROV_FIELDS)}")
                seen.add(key)
                i = expect(s, i, "=")
                val, i = read_int(s, i, key) if key in _PROV_INTS else read_string(s, i)
                setattr(h.provenance, key, val)
        expect_end(s, i)

    def input(self, s: str) -> None:
        ref, i = self.value(s, len("input "))
        kind, i = self.enum(s, expect(s, i, " "), _KINDS, "input kind")
        name, i = read_string(s, expect(s, i, " "))
        data = b""
        if s.startswith(" data=", i):  # a CONSTANT's bytes, base64
            m = _BASE64.match(s, i + 6)
            try:
                data = base64.b64decode(m.group(), validate=True)
            except ValueError:
                raise Bad(i + 6, "bad base64 data") from None
            i = m.end()
        expect_end(s, i)
        self.graph.inputs.append(GraphInput(ref.id, kind, name, data))

    def node(self, s: str) -> None:
        m = _NODE_HEAD.match(s)
        if m is not None:  # the common case: nothing quoted
            nid, name, op, i = int(m.group(1)), m.group(2), m.group(3), m.end()
        else:
            nid, i = read_int(s, 1, "a node id")
            name, i = read_word(s, expect(s, i, " "), _BARE, "a node name")
            op, i = read_word(s, expect(s, i, " = "), _BARE, "an op name")
            i = expect(s, i, "(")
        args, kwargs, i = read_call(s, i)
        outs, i = self.outputs(s, expect(s, i, " -> "))
        region, i = self.enum(s, expect(s, i, " "), _REGIONS, "region")
        module, recompute_of = "", None
        if s.startswith(" @", i):
            module, i = read_word(s, i + 2, _BARE, "a module path after '@'")
        if s.startswith(" recompute_of=n", i):
            recompute_of, i = read_int(s, i + len(" recompute_of=n"), "a node id")
        if s.startswith("  #", i):  # a derived comment for people (run time, bytes): ignored
            i = len(s)
        expect_end(s, i)
        self.graph.nodes.append(Node(nid, name, op, args, kwargs, outs, region, module, recompute_of))

    def output(self, s: str) -> None:
        i = len("output")
        while i < len(s):
            i = expect(s, i, " " if i == len("output") else ", ")
            if not s.startswith("v", i):
                raise Bad(i, "expected a value reference like v12")
            vid, i = read_int(s, i + 1, "a value id")
            self.graph.outputs.append(vid)

    def analysis(self, s: str) -> None:
        start = len("analysis ")
        name, i = read_word(s, start, _BARE, "an analysis name")
        key = BY_NAME.get(name)
        if key is None:
            raise Bad(start, f"unknown analysis {name!r}; expected one of {', '.join(BY_NAME)}")
        if key in self.analyses:
            raise Bad(start, f"analysis {name!r} given twice")
        if i < len(s):
            i = expect(s, i, " ")
        from acir.ir.serde import analysis_from_text

        try:
            self.analyses[key] = analysis_from_text(key, s[i:], f"analysis {name}")
        except SerdeError as e:
            raise Bad(i, str(e)) from None

    def line(self, kind: str, s: str, phase: int) -> int:
        """Read one line of ``kind`` at ``phase``; the phase after it."""
        if phase == 0:  # 0 before 'acir', 1 header, 2 inputs, 3 nodes, 4 after 'output'
            if kind != "acir":
                raise Bad(0, "not acir text: the first line must be 'acir <schema_version> \"<producer>\"'")
            self.acir(s)
            return 1
        if phase == 4:
            if kind != "analysis":
                raise Bad(0, "text after the 'output' line; only 'analysis' lines may follow it")
            self.analysis(s)
            return 4
        if kind in _HEADER_KINDS:
            if phase != 1:
                raise Bad(0, f"header line '{kind}' after the graph has started; header lines come first")
            if kind in self.have and kind in ("revision", "provenance"):
                raise Bad(0, f"'{kind}' line given twice")
            self.have.add(kind)
            self.header_line(kind, s)
            return 1
        if kind == "analysis":
            raise Bad(0, "'analysis' line before the 'output' line; analysis blocks come last")
        is_node = kind[0] == "n" and kind[1:].isdigit()
        if not (is_node or kind in ("input", "output")):
            raise Bad(0, "'acir' line given twice" if kind == "acir" else
                       f"unknown line kind {kind!r}; expected {_KIND_LIST}")
        for need in ("revision", "provenance"):
            if need not in self.have:
                raise Bad(0, f"missing '{need}' line in the header (before the first input, node or output)")
        if is_node:
            self.node(s)
            return 3
        if kind == "output":
            self.output(s)
            return 4
        if phase == 3:
            raise Bad(0, "input line after the first node; graph inputs come first")
        self.input(s)
        return 2


def parse_module(text: str, source: str = "<text>") -> Module:
    """Read the text form; every error is a :class:`ParseError` ``"{source}:{line}: ..."``."""
    r = _Reader()
    phase = 0
    lines = text.split("\n")
    for lineno, raw in enumerate(lines, 1):
        s = raw.strip(" \t\r")
        if not s or s[0] == "#":
            continue
        try:
            phase = r.line(s.partition(" ")[0], s, phase)
        except Bad as e:
            indent = len(raw) - len(raw.lstrip(" \t\r"))
            where = f" (column {e.col + indent + 1})" if e.col else ""
            raise ParseError(f"{source}:{lineno}: {e.msg}{where}") from None
    if phase == 0:
        raise ParseError(f"{source}:1: empty input; expected an 'acir <schema_version> \"<producer>\"' line")
    if phase != 4:
        last = len(lines) - 1 if len(lines) > 1 and lines[-1] == "" else len(lines)
        raise ParseError(f"{source}:{last}: missing the final 'output' line (is the text truncated?)")
    r.graph.storages = list(r.storages.values())
    r.graph.values = r.values
    return Module(r.header, r.graph, r.analyses)
