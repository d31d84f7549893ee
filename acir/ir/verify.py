"""The IR verifier: the invariants every pass may assume and must keep.

The pass manager runs it before the first pass and after each one (as ``mlir-opt`` does),
so a pass that breaks the graph is named at once instead of surfacing three passes later
as a wrong memory number or a crash in lowering. Every structural check is a single sweep
over storages, values and nodes (O(nodes + values)), cheap enough to stay on by default for
15k-node graphs. A verified module is also exactly what :mod:`acir.ir.text` round-trips, and
serialises: every number fits its protobuf field.

Then, on by default, it **re-derives** what the annotations claim (:func:`rederive`, in
:mod:`acir.ir.rederive`): every node's op is run on "meta" tensors (shapes, strides and
storages, no data) built from its inputs as the IR records them, and each output's dtype,
shape, strides, storage offset and storage must be what the op gives: a new storage of the
bytes the op allocates, or, for a view or an in-place result, the very storage of the input
it aliases. The annotations are what the memory simulator and every planner trust, and the
text form lets a person edit them, so without this an edited size (or a shape with the same
element count) would be planned with silently. Capture records exactly what the meta kernels
say (it traces with fake tensors, which run them), so a captured graph re-derives to itself.
A meta kernel that branches on the device (a plain meta tensor has none; ``_embedding_bag``
sizes an output one way for CPU offsets, another for the rest) is asked again, for a node
whose outputs disagree, on fake tensors of the recorded devices, as capture asked it.
Results are cached per (op, input signature), which makes the optimizer's many same-shaped
updates nearly free. An op that cannot run on meta (no meta kernel, a data-dependent result,
an op torch does not know) is skipped and counted; an in-place op among them is still
checked against its schema (its result is the argument it writes). What cannot be
re-derived: the sizes of graph inputs' storages (they are the user's tensors; they must only
hold their values) and the device of a storage. ``verify(m, rederive=False)``
(``--no-rederive`` in the CLIs) turns it off.

:func:`problems` lists everything wrong, one line each, naming nodes as ``n<id> (<name>)``
and values as ``v<id>``; :func:`verify` raises :class:`VerifyError` with the first few. When
the module was parsed from the text form (and its graph not changed since), each line
starts with ``<file>:<line>:``, the line that defines the node, value or storage.
"""

from __future__ import annotations

import re

from acir.errors import VerifyError
from acir.ir.graph import (
    DTYPE_SIZE,
    INPUT_ROLE,
    LAYOUTS,
    MEMORY_FORMATS,
    SCHEMA_VERSION,
    Device,
    DType,
    Graph,
    InputKind,
    Layout,
    MemoryFormat,
    Module,
    Node,
    Region,
    Role,
    Storage,
    ValueRef,
)
from acir.ir.rederive import Rederivation, _rederive, rederive
from acir.ir.rederive import who as _who

__all__ = ["MAX_SHOWN", "Rederivation", "problems", "rederive", "verify"]

#: How many problems :func:`verify` puts in its message.
MAX_SHOWN = 10

_SCALARS = (bool, int, float, str)
#: The ranges of the protobuf fields the numbers go to: ids are int32, sizes int64, the revision uint32.
_INT32 = (0, 2 ** 31 - 1)
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_UINT32 = (0, 2 ** 32 - 1)


def verify(m: Module, *, rederive: bool = True) -> None:
    """Raise :class:`VerifyError` listing what is wrong with ``m``, if anything.

    ``rederive`` also runs every op on meta tensors and compares what it gives with the
    recorded annotations (see the module docstring); it runs once the structure is sound."""
    found = problems(m, rederive=rederive)
    if not found:
        return
    lines = [f"IR verification failed ({len(found)} problem{'s' if len(found) != 1 else ''}):"]
    lines += ["  " + p for p in _with_lines(m, found[:MAX_SHOWN])]
    if len(found) > MAX_SHOWN:
        lines.append(f"  ... and {len(found) - MAX_SHOWN} more")
    raise VerifyError("\n".join(lines))


def problems(m: Module, *, rederive: bool = True) -> list[str]:
    """Every broken invariant of ``m``, one message each (empty when ``m`` is valid).

    The re-derivation (``rederive``) runs only when the structural checks find nothing: it
    needs every value defined, in range and in a storage that holds it."""
    out: list[str] = []
    v = m.header.schema_version
    if not isinstance(v, int) or not 1 <= v <= SCHEMA_VERSION:
        out.append(f"header: schema_version {v} is not in 1..{SCHEMA_VERSION}")
    _check_header(m, out)
    smap = _check_storages(m.graph, out)
    _check_values(m.graph, smap, out)
    _check_graph(m.graph, out)
    if rederive and not out:
        out.extend(_rederive(m).problems)
    return out


_WHERE = re.compile(r"(?:n(\d+) \(|v(\d+)[: ]|storage s(\d+):)")


def _with_lines(m: Module, found: list[str]) -> list[str]:
    """``found`` with ``<file>:<line>: `` in front of each problem whose node, value or storage
    has a line in the text ``m`` was parsed from (while its graph is unchanged)."""
    from acir.ir.text_parse import source_map

    src = source_map(m)
    if src is None:
        return found
    out = []
    for p in found:
        w = _WHERE.match(p)
        line = None
        if w is not None:
            node, value, storage = w.groups()
            line = (src.nodes.get(int(node)) if node is not None else
                    src.values.get(int(value)) if value is not None else src.storages.get(int(storage)))
        out.append(f"{src.source}:{line}: {p}" if line is not None else p)
    return out


def _in(x: object, bounds: tuple[int, int]) -> bool:
    return isinstance(x, int) and bounds[0] <= x <= bounds[1]


def _check_header(m: Module, out: list[str]) -> None:
    h = m.header
    if not _in(h.revision, _UINT32):
        out.append(f"header: revision {h.revision} is not in 0..{_UINT32[1]}")
    p = h.provenance
    for f in ("batch_size", "seq_len", "image_size", "seed", "accumulate"):
        if not _in(getattr(p, f, 0), _INT64):
            out.append(f"header: provenance {f} {getattr(p, f)} does not fit 64 bits")
    texts = [h.producer, *h.pipeline, p.model, p.optimizer, p.device, p.dtype, p.torch_version,
             *p.optimizer_options, *p.optimizer_options.values()]
    if not all(_utf8(t) for t in texts):
        out.append("header: a string is not valid Unicode (an unpaired surrogate)")


def _name(role) -> str:
    return getattr(role, "name", repr(role))


def _utf8(text: object) -> bool:
    """Can ``text`` be stored in a protobuf string (UTF-8, so no unpaired surrogates)?"""
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_storages(g: Graph, out: list[str]) -> dict[int, Storage]:
    smap: dict[int, Storage] = {}
    for s in g.storages:
        if s.id in smap:
            out.append(f"storage s{s.id}: id used by two storages")
        else:
            smap[s.id] = s
        if not _in(s.id, _INT32):
            out.append(f"storage s{s.id}: id is not in 0..{_INT32[1]}")
        if s.nbytes < 0:
            out.append(f"storage s{s.id}: negative size {s.nbytes} bytes")
        elif not _in(s.nbytes, _INT64):
            out.append(f"storage s{s.id}: size {s.nbytes} bytes does not fit 64 bits")
        if not _utf8(s.device):
            out.append(f"storage s{s.id}: device {s.device!r} is not a valid string")
    return smap


def _check_values(g: Graph, smap: dict[int, Storage], out: list[str]) -> None:
    ids: set[int] = set()
    used: set[int] = set()
    role_of: dict[int, tuple[Role, int]] = {}  # storage id -> (role, first value id)
    numbers = {i.value for i in g.inputs if i.kind is InputKind.HYPERPARAM}
    for key, v in g.values.items():
        name = f"v{key}"
        if key in numbers:  # a Python number at run time: no tensor, no bytes
            s = smap.get(v.storage)
            if v.shape or v.strides or v.nbytes or v.dtype != "float64" or s is None or s.nbytes:
                out.append(f"{name}: a HYPERPARAM input must be a 0-d float64 value of 0 bytes in a storage of 0 bytes")
            if s is not None:
                used.add(s.id)
            ids.add(v.id)
            continue
        if v.id != key:
            out.append(f"{name}: values table entry holds a value with id {v.id}")
        if v.id in ids:
            out.append(f"v{v.id}: value id used by two values")
        ids.add(v.id)
        if not _in(v.id, _INT32):
            out.append(f"{name}: id is not in 0..{_INT32[1]}")
        size = DTYPE_SIZE.get(v.dtype)
        if size is None:
            out.append(f"{name}: unknown dtype {v.dtype!r}")
        if not isinstance(v.role, Role):
            out.append(f"{name}: role {v.role!r} is not a Role")
        shape, strides = v.shape, v.strides
        if len(strides) != len(shape):
            out.append(f"{name}: {len(strides)} strides for {len(shape)} dims (shape {list(shape)})")
        if any(d < 0 for d in shape):
            out.append(f"{name}: negative dim in shape {list(shape)}")
        if v.storage_offset < 0:
            out.append(f"{name}: negative storage_offset {v.storage_offset}")
        if not all(_in(x, _INT64) for x in (*shape, *strides, v.storage_offset)):
            out.append(f"{name}: a dim, stride or offset does not fit 64 bits")
        numel = v.numel
        if size is not None and v.nbytes != numel * size:
            out.append(f"{name}: nbytes {v.nbytes} != numel {numel} * {size} bytes of {v.dtype}")
        elif not _in(v.nbytes, _INT64):
            out.append(f"{name}: {v.nbytes} bytes do not fit 64 bits")
        s = smap.get(v.storage)
        if s is None:
            out.append(f"{name}: its storage s{v.storage} does not exist")
            continue
        used.add(s.id)
        if (size is not None and numel > 0 and len(strides) == len(shape) and v.storage_offset >= 0
                and all(st >= 0 for st in strides)):
            need = (v.storage_offset + sum((d - 1) * st for d, st in zip(shape, strides)) + 1) * size
            if need > s.nbytes:
                out.append(f"{name}: extends past the end of storage s{s.id} (needs {need} bytes, "
                           f"the storage has {s.nbytes})")
        first = role_of.setdefault(s.id, (v.role, key))
        if first[0] != v.role:
            out.append(f"{name}: role {_name(v.role)} differs from {_name(first[0])} of v{first[1]}, which "
                       f"shares storage s{s.id}; values sharing a storage must have one role")
    for s in g.storages:
        if s.id not in used:
            out.append(f"storage s{s.id}: no value uses it")


def _walk_arg(a, refs: list[int], bad: list[str]) -> None:
    if isinstance(a, ValueRef):
        refs.append(a.id)
    elif isinstance(a, int) and not isinstance(a, bool):
        if not _in(a, _INT64):
            bad.append(f"integer argument {a} does not fit 64 bits")
    elif isinstance(a, str):
        if not _utf8(a):
            bad.append(f"string argument {a!r:.40} is not valid Unicode (an unpaired surrogate)")
    elif a is None or isinstance(a, _SCALARS):
        pass
    elif isinstance(a, list):
        for x in a:
            _walk_arg(x, refs, bad)
    elif isinstance(a, DType):
        if a.name not in DTYPE_SIZE:
            bad.append(f"unknown dtype torch.{a.name}")
    elif isinstance(a, Layout):
        if a.name not in LAYOUTS:
            bad.append(f"unknown layout torch.{a.name}")
    elif isinstance(a, MemoryFormat):
        if a.name not in MEMORY_FORMATS:
            bad.append(f"unknown memory format torch.{a.name}")
    elif isinstance(a, Device):
        if not _utf8(a.name):
            bad.append(f"device name {a.name!r:.40} is not a valid string")
    else:
        bad.append(f"argument {a!r:.40} has an unsupported type ({type(a).__name__})")


def _walk_outputs(o, refs: list[int], bad: list[str]) -> None:
    if isinstance(o, ValueRef):
        refs.append(o.id)
    elif isinstance(o, list):
        for x in o:
            _walk_outputs(x, refs, bad)
    elif o is not None:
        bad.append(f"outputs contain {o!r:.40} ({type(o).__name__}); only value refs, None and lists are allowed")


def _check_graph(g: Graph, out: list[str]) -> None:
    defined: dict[int, str] = {}  # value id -> what defines it, filled in graph order

    def define(vid: int, what: str) -> None:
        if vid in defined:
            out.append(f"v{vid}: defined twice (by {defined[vid]} and by {what})")
            return
        defined[vid] = what
        if vid not in g.values:
            out.append(f"v{vid}: defined by {what} but missing from the values table")

    names: set[str] = set()
    for inp in g.inputs:
        what = f"graph input {inp.name!r}"
        if inp.name in names:
            out.append(f"{what}: name used by two graph inputs")
        if not _utf8(inp.name):
            out.append(f"{what}: name is not valid Unicode (an unpaired surrogate)")
        names.add(inp.name)
        define(inp.value, what)
        v = g.values.get(inp.value)
        if not isinstance(inp.kind, InputKind):
            out.append(f"{what}: kind {inp.kind!r} is not an InputKind")
        elif v is not None and v.role != INPUT_ROLE[inp.kind]:
            out.append(f"v{inp.value}: role {_name(v.role)}, but {what} is a {inp.kind.name}, "
                       f"whose role is {INPUT_ROLE[inp.kind].name}")
        if inp.kind == InputKind.CONSTANT:
            if v is not None and len(inp.data) != v.nbytes:
                out.append(f"{what}: {len(inp.data)} bytes of data for a CONSTANT of {v.nbytes} bytes (v{inp.value})")
        elif inp.data:
            out.append(f"{what}: only CONSTANT inputs carry data, but this {_name(inp.kind)} has {len(inp.data)} bytes")

    later: dict[int, Node] = {}  # value id -> a node defining it (to tell 'later' from 'never')
    for n in g.nodes:
        refs: list[int] = []
        _walk_outputs(n.outputs, refs, [])
        for vid in refs:
            later.setdefault(vid, n)

    node_ids: set[int] = set()
    node_names: set[str] = set()
    after_forward: Node | None = None  # the first BACKWARD or OPTIMIZER node so far
    for n in g.nodes:
        who = _who(n)
        if n.id in node_ids:
            out.append(f"{who}: node id used by two nodes")
        node_ids.add(n.id)
        if n.name in node_names:
            out.append(f"{who}: node name used by two nodes")
        node_names.add(n.name)
        if not _in(n.id, _INT32):
            out.append(f"{who}: node id is not in 0..{_INT32[1]}")
        if not (_utf8(n.name) and _utf8(n.op) and _utf8(n.module) and all(_utf8(k) for k in n.kwargs)):
            out.append(f"{who}: its name, op, module path or a keyword is not valid Unicode (an unpaired surrogate)")
        parts = n.op.split(".") if isinstance(n.op, str) else []
        if len(parts) < 3 or not all(parts):
            out.append(f"{who}: op {n.op!r} is not a 'namespace.op.overload' name")
        if not isinstance(n.region, Region):
            out.append(f"{who}: region {n.region!r} is not a Region")
        elif n.region is Region.FORWARD and after_forward is not None:
            out.append(f"{who}: region FORWARD after {after_forward.region.name}; the forward comes first "
                       "(BACKWARD and OPTIMIZER nodes may interleave after it)")
        elif n.region not in (Region.FORWARD, Region.COMMUNICATION) and after_forward is None:
            after_forward = n  # COMMUNICATION nodes may sit anywhere (a broadcast before the forward)
        refs, bad = [], []
        _walk_arg(n.args, refs, bad)
        for a in n.kwargs.values():
            _walk_arg(a, refs, bad)
        for vid in dict.fromkeys(refs):
            if vid in defined:
                continue
            d = later.get(vid)
            if d is n:
                out.append(f"{who}: uses its own output v{vid}")
            elif d is not None:
                out.append(f"{who}: uses v{vid} before it is defined (by {_who(d)} later)")
            else:
                out.append(f"{who}: uses v{vid}, which is never defined")
        outs: list[int] = []
        _walk_outputs(n.outputs, outs, bad)
        out.extend(f"{who}: {b}" for b in dict.fromkeys(bad))
        for vid in outs:
            define(vid, who)

    for n in g.nodes:
        r = n.recompute_of
        if r is not None and (r == n.id or r not in node_ids or not _in(r, _INT32)):
            out.append(f"{_who(n)}: recompute_of=n{r} " + ("names the node itself" if r == n.id else "names no node"))
    for vid in g.outputs:
        if vid not in defined:
            out.append(f"graph output v{vid} is never defined")
    params = {i.name for i in g.inputs if i.kind is InputKind.PARAMETER}
    for name, vid in g.param_grads.items():
        if name not in params:
            out.append(f"grad {name!r}: no PARAMETER input has that name")
        elif vid not in defined:
            out.append(f"grad {name!r}: v{vid} is never defined")
        elif g.values[vid].role not in (Role.GRAD, Role.COMM_BUFFER):
            out.append(f"grad {name!r}: v{vid} has role {_name(g.values[vid].role)}, not GRAD")
    for vid in g.values:
        if vid not in defined:
            out.append(f"v{vid}: in the values table but defined by no graph input or node")
