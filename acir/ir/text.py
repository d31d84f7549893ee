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
* Each parameter's gradient, as the backward leaves it, follows the ``output`` line:
  ``grad "fc.weight" v17`` (what the optimizer, clipping and gradient communication read).
* Analysis blocks follow, one line each in artifact order:
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
tells text from binary. The parser lives in :mod:`acir.ir.text_parse`, its low-level
readers (strings, words, node arguments) in :mod:`acir.ir.text_lex`.
"""

from __future__ import annotations

import base64
import json
import math
import re

from acir.ir.analyses import (
    KEYS,
    LIVENESS,
    PLAN,
    PROFILE,
    AnalysisKey,
    Decision,
    Liveness,
    Plan,
    Profile,
)
from acir.ir.graph import (
    Device,
    DType,
    Graph,
    InputKind,
    Layout,
    MemoryFormat,
    Module,
    Region,
    Role,
    ValueRef,
)
from acir.units import format_bytes

__all__ = ["contiguous_strides", "parse_module", "print_module"]

_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16",
          "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
          "bool": "b8", "complex64": "c64", "complex128": "c128"}
_LONG = {v: k for k, v in _SHORT.items()}
_PROV_INTS = ("batch_size", "seq_len", "image_size", "seed", "accumulate")
_PROV_FLOATS = ("clip_grad_norm",)
_PROV_FIELDS = ("model", "batch_size", "seq_len", "image_size", "optimizer", "seed", "device",
                "dtype", "torch_version", "accumulate", "clip_grad_norm")
#: Provenance fields printed only when set (their defaults say "not used"), so older text reads the same.
_PROV_OPTIONAL = ("accumulate", "clip_grad_norm")
_ROLES = {r.name: r for r in Role}
_REGIONS = {r.name: r for r in Region}
_KINDS = {k.name: k for k in InputKind}
_HEADER_KINDS = ("revision", "pipeline", "provenance", "optimizer_option")
_KIND_LIST = "acir, revision, pipeline, provenance, optimizer_option, input, n<id>, output, grad or analysis"

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
        f"{f}={getattr(p, f)}" if f in _PROV_INTS else f"{f}={getattr(p, f)!r}" if f in _PROV_FLOATS
        else f"{f}={_q(getattr(p, f))}" for f in _PROV_FIELDS if f not in _PROV_OPTIONAL or getattr(p, f)))
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
    lines += [f"grad {_q(name)} v{vid}" for name, vid in g.param_grads.items()]
    blocks = _blocks(m)
    if blocks:
        from acir.ir.serde import analysis_to_text

        lines += [f"analysis {key.name} {analysis_to_text(key, block)}".rstrip() for key, block in blocks]
    return "\n".join(lines) + "\n"


def parse_module(text: str, source: str = "<text>") -> Module:
    """Parse the text form (see the module docstring); errors are :class:`~acir.errors.ParseError`
    naming ``source``, the line and the column. The parser is :mod:`acir.ir.text_parse`."""
    from acir.ir.text_parse import parse_text

    return parse_text(text, source)
