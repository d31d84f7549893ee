"""The parser of the IR's text form (:mod:`acir.ir.text` describes the format and prints it).

One method per line kind over (line, position); errors carry the column, and
:func:`parse_text` turns them into a :class:`~acir.errors.ParseError` naming the source,
the line and the column. The low-level readers live in :mod:`acir.ir.text_lex`.

The parser also remembers which line defined each node, value and storage
(:class:`SourceMap`), so that the verifier, which runs later (in the pass manager, say),
can name the line of a problem: ``r18.txt:325: v316: ...``. The IR is plain data with no room
for it (and the protobuf has no such field), so the map is kept beside the module, for the
last few modules parsed, and :func:`source_map` hands it out only while the module's graph
revision is the one it was parsed at: after a pass changes the graph, the lines no longer
describe it.
"""

from __future__ import annotations

import base64
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field

from acir.errors import ParseError, SerdeError
from acir.ir.analyses import BY_NAME, Analyses
from acir.ir.graph import (
    DTYPE_SIZE,
    SCHEMA_VERSION,
    Graph,
    GraphInput,
    Header,
    InputKind,
    Module,
    Node,
    Storage,
    Value,
    ValueRef,
)
from acir.ir.text import (
    _BARE,
    _BARE_DEVICE,
    _BASE64,
    _DESC,
    _HEADER_KINDS,
    _IDENT,
    _KIND_LIST,
    _KINDS,
    _LONG,
    _NODE_HEAD,
    _PROV_FIELDS,
    _PROV_FLOATS,
    _PROV_INTS,
    _REGIONS,
    _ROLE,
    _ROLES,
    _UPPER,
    contiguous_strides,
)
from acir.ir.text_lex import Bad, expect, expect_end, read_call, read_int, read_ints, read_string, read_word

__all__ = ["SourceMap", "parse_text", "source_map"]

_NUMBER = re.compile(r"[-+0-9.eEinfa]+")  # a float as repr() writes it


@dataclass
class SourceMap:
    """Where a parsed module's items were defined: 1-based line numbers of ``source``."""

    source: str
    revision: int  # the graph revision the lines describe
    nodes: dict[int, int] = field(default_factory=dict)     # node id -> its line
    values: dict[int, int] = field(default_factory=dict)    # value id -> the line that defines it
    storages: dict[int, int] = field(default_factory=dict)  # storage id -> the line that first mentions it


#: id(module) -> (module, its map), for the last few modules parsed; the module is held so that
#: its id cannot be reused by another while the entry exists.
_SOURCES: OrderedDict[int, tuple[Module, SourceMap]] = OrderedDict()
_SOURCES_KEPT = 4


def source_map(m: Module) -> SourceMap | None:
    """The lines ``m`` was parsed from, if it came from :func:`parse_text` and its graph has not changed since."""
    entry = _SOURCES.get(id(m))
    if entry is None or entry[0] is not m or entry[1].revision != m.header.revision:
        return None
    return entry[1]


def _remember(m: Module, src: SourceMap) -> None:
    _SOURCES[id(m)] = (m, src)
    _SOURCES.move_to_end(id(m))
    while len(_SOURCES) > _SOURCES_KEPT:
        _SOURCES.popitem(last=False)


class _Reader:
    def __init__(self) -> None:
        self.lineno = 0
        self.node_lines: dict[int, int] = {}
        self.value_lines: dict[int, int] = {}
        self.storage_lines: dict[int, int] = {}
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
            self.storage_lines[sid] = self.lineno
        elif sid not in self.storages:
            raise Bad(i, f"storage s{sid} is used before its first mention with a size (s{sid}=<nbytes>B@<device>)")
        r = _ROLE.match(s, j)
        role = _ROLES.get(r.group(1)) if r else None
        if role is None:
            raise Bad(j + 1, f"unknown role; expected one of {', '.join(_ROLES)}")
        self.values[vid] = Value(vid, shape[0], dtype, strides, sid, int(off_s) if off_s else 0,
                                 shape[1] * size, role)
        self.value_lines[vid] = self.lineno
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
                if key in _PROV_FLOATS:
                    word, j = read_word(s, i, _NUMBER, f"a number for {key}")
                    try:
                        val = float(word)
                    except ValueError:
                        raise Bad(i, f"expected a number for {key}, not {word!r}") from None
                    i = j
                else:
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
        if kind is InputKind.HYPERPARAM:  # a number at run time: no bytes (nbytes is derived for tensors)
            self.values[ref.id].nbytes = 0
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
        self.node_lines.setdefault(nid, self.lineno)

    def output(self, s: str) -> None:
        i = len("output")
        while i < len(s):
            i = expect(s, i, " " if i == len("output") else ", ")
            if not s.startswith("v", i):
                raise Bad(i, "expected a value reference like v12")
            vid, i = read_int(s, i + 1, "a value id")
            self.graph.outputs.append(vid)

    def grad(self, s: str) -> None:
        """``grad "<param>" v17``: the value holding a parameter's gradient as the backward leaves it."""
        name, i = read_string(s, expect(s, len("grad"), " "))
        i = expect(s, i, " ")
        if not s.startswith("v", i):
            raise Bad(i, "expected a value reference like v12")
        vid, i = read_int(s, i + 1, "a value id")
        expect_end(s, i)
        if name in self.graph.param_grads:
            raise Bad(0, f"parameter {name!r} has two grad lines")
        self.graph.param_grads[name] = vid

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
            if kind == "grad" and not self.analyses:
                self.grad(s)
                return 4
            if kind != "analysis":
                raise Bad(0, "text after the 'output' line; only 'grad' lines, then 'analysis' lines, may follow it")
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


def parse_text(text: str, source: str = "<text>") -> Module:
    """Read the text form; every error is a :class:`ParseError` ``"{source}:{line}: ..."``."""
    r = _Reader()
    phase = 0
    lines = text.split("\n")
    for lineno, raw in enumerate(lines, 1):
        s = raw.strip(" \t\r")
        if not s or s[0] == "#":
            continue
        r.lineno = lineno
        try:
            phase = r.line(s.partition(" ")[0], s, phase)
        except Bad as e:
            indent = len(raw) - len(raw.lstrip(" \t\r"))
            where = f" (column {e.col + indent + 1})" if e.col else ""
            raise ParseError(f"{source}:{lineno}: {e.msg}{where}") from None
        except ValueError as e:  # int() refuses numbers past sys.get_int_max_str_digits() (4300 digits)
            if "integer string conversion" not in str(e):
                raise
            raise ParseError(f"{source}:{lineno}: a number too long to read (more than "
                             f"{sys.get_int_max_str_digits()} digits)") from None
    if phase == 0:
        raise ParseError(f"{source}:1: empty input; expected an 'acir <schema_version> \"<producer>\"' line")
    if phase != 4:
        last = len(lines) - 1 if len(lines) > 1 and lines[-1] == "" else len(lines)
        raise ParseError(f"{source}:{last}: missing the final 'output' line (is the text truncated?)")
    r.graph.storages = list(r.storages.values())
    r.graph.values = r.values
    m = Module(r.header, r.graph, r.analyses)
    _remember(m, SourceMap(source, r.header.revision, r.node_lines, r.value_lines, r.storage_lines))
    return m
