"""The IR verifier: the invariants every pass may assume and must keep.

The pass manager runs it before the first pass and after each one (as ``mlir-opt`` does),
so a pass that breaks the graph is named at once instead of surfacing three passes later
as a wrong memory number or a crash in lowering. Every check is a single sweep over
storages, values and nodes (O(nodes + values)), cheap enough to stay on by default for
15k-node graphs. A verified module is also exactly what :mod:`acir.ir.text` round-trips.

:func:`problems` lists everything wrong, one line each, naming nodes as ``n<id> (<name>)``
and values as ``v<id>``; :func:`verify` raises :class:`VerifyError` with the first few.
"""

from __future__ import annotations

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

__all__ = ["MAX_SHOWN", "problems", "verify"]

#: How many problems :func:`verify` puts in its message.
MAX_SHOWN = 10

_SCALARS = (bool, int, float, str)


def verify(m: Module) -> None:
    """Raise :class:`VerifyError` listing what is wrong with ``m``, if anything."""
    found = problems(m)
    if not found:
        return
    lines = [f"IR verification failed ({len(found)} problem{'s' if len(found) != 1 else ''}):"]
    lines += ["  " + p for p in found[:MAX_SHOWN]]
    if len(found) > MAX_SHOWN:
        lines.append(f"  ... and {len(found) - MAX_SHOWN} more")
    raise VerifyError("\n".join(lines))


def problems(m: Module) -> list[str]:
    """Every broken invariant of ``m``, one message each (empty when ``m`` is valid)."""
    out: list[str] = []
    v = m.header.schema_version
    if not isinstance(v, int) or not 1 <= v <= SCHEMA_VERSION:
        out.append(f"header: schema_version {v} is not in 1..{SCHEMA_VERSION}")
    smap = _check_storages(m.graph, out)
    _check_values(m.graph, smap, out)
    _check_graph(m.graph, out)
    return out


def _name(role) -> str:
    return getattr(role, "name", repr(role))


def _check_storages(g: Graph, out: list[str]) -> dict[int, Storage]:
    smap: dict[int, Storage] = {}
    for s in g.storages:
        if s.id in smap:
            out.append(f"storage s{s.id}: id used by two storages")
        else:
            smap[s.id] = s
        if s.nbytes < 0:
            out.append(f"storage s{s.id}: negative size {s.nbytes} bytes")
    return smap


def _check_values(g: Graph, smap: dict[int, Storage], out: list[str]) -> None:
    ids: set[int] = set()
    used: set[int] = set()
    role_of: dict[int, tuple[Role, int]] = {}  # storage id -> (role, first value id)
    for key, v in g.values.items():
        name = f"v{key}"
        if v.id != key:
            out.append(f"{name}: values table entry holds a value with id {v.id}")
        if v.id in ids:
            out.append(f"v{v.id}: value id used by two values")
        ids.add(v.id)
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
        numel = v.numel
        if size is not None and v.nbytes != numel * size:
            out.append(f"{name}: nbytes {v.nbytes} != numel {numel} * {size} bytes of {v.dtype}")
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
        if not isinstance(a.name, str):
            bad.append(f"device name {a.name!r} is not a string")
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


def _who(n: Node) -> str:
    return f"n{n.id} ({n.name})"


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
        parts = n.op.split(".") if isinstance(n.op, str) else []
        if len(parts) < 3 or not all(parts):
            out.append(f"{who}: op {n.op!r} is not a 'namespace.op.overload' name")
        if not isinstance(n.region, Region):
            out.append(f"{who}: region {n.region!r} is not a Region")
        elif n.region is Region.FORWARD and after_forward is not None:
            out.append(f"{who}: region FORWARD after {after_forward.region.name}; the forward comes first "
                       "(BACKWARD and OPTIMIZER nodes may interleave after it)")
        elif n.region is not Region.FORWARD and after_forward is None:
            after_forward = n
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
        if r is not None and (r == n.id or r not in node_ids):
            out.append(f"{_who(n)}: recompute_of=n{r} " + ("names the node itself" if r == n.id else "names no node"))
    for vid in g.outputs:
        if vid not in defined:
            out.append(f"graph output v{vid} is never defined")
    for vid in g.values:
        if vid not in defined:
            out.append(f"v{vid}: in the values table but defined by no graph input or node")
