"""The IR verifier: the invariants every pass may assume and must keep.

The pass manager runs it before the first pass and after each one (as ``mlir-opt`` does),
so a pass that breaks the graph is named at once instead of surfacing three passes later
as a wrong memory number or a crash in lowering. Every structural check is a single sweep
over storages, values and nodes (O(nodes + values)), cheap enough to stay on by default for
15k-node graphs. A verified module is also exactly what :mod:`acir.ir.text` round-trips, and
serialises: every number fits its protobuf field.

Then, on by default, it **re-derives** what the annotations claim (:func:`rederive`): every
node's op is run on "meta" tensors (shapes, strides and storages, no data) built from its
inputs as the IR records them, and each output's dtype, shape, strides, storage offset and
storage must be what the op gives: a new storage of the bytes the op allocates, or, for a
view or an in-place result, the very storage of the input it aliases. The annotations are
what the memory simulator and every planner trust, and the text form lets a person edit
them, so without this an edited size (or a shape with the same element count) would be
planned with silently. Capture records exactly what the meta kernels say (it traces with
fake tensors, which run them), so a captured graph re-derives to itself. A meta kernel that
branches on the device (a plain meta tensor has none; ``_embedding_bag`` sizes an output one
way for CPU offsets, another for the rest) is asked again, for a node whose outputs disagree,
on fake tensors of the recorded devices, as capture asked it. Results are cached
per (op, input signature), which makes the optimizer's many same-shaped updates nearly free.
An op that cannot run on meta (no meta kernel, a data-dependent result, an op torch does not
know) is skipped and counted; an in-place op among them is still checked against its schema
(its result is the argument it writes). What cannot be re-derived: the sizes of graph
inputs' storages (they are the user's tensors; they must only hold their values) and the
device of a storage. ``verify(m, rederive=False)`` (``--no-rederive`` in the CLIs) turns it off.

:func:`problems` lists everything wrong, one line each, naming nodes as ``n<id> (<name>)``
and values as ``v<id>``; :func:`verify` raises :class:`VerifyError` with the first few. When
the module was parsed from the text form (and its graph not changed since), each line
starts with ``<file>:<line>:``, the line that defines the node, value or storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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


# ---------------------------------------------------------------------------
# Re-derivation: run each op on meta tensors and compare with what the IR records.


@dataclass
class Rederivation:
    """What :func:`rederive` found: problems, and how many nodes it checked and how."""

    problems: list[str] = field(default_factory=list)
    checked: int = 0  # nodes whose op ran on meta (or came from the cache)
    by_schema: int = 0  # in-place nodes that cannot run on meta, checked against their op's schema
    skipped: list[int] = field(default_factory=list)  # ids of the nodes that could not be checked
    cache_hits: int = 0


#: (op, input signature) -> what the op gives; bounded, cleared when full.
_CACHE: dict[tuple, tuple] = {}
_CACHE_MAX = 100_000

# One output of an op on meta tensors, as cached: dtype name, shape, strides, storage offset,
# the input (its index among the node's distinct input values) whose storage it is, or -1,
# and for a new storage its group (outputs sharing one new storage share a group) and bytes.
_Out = tuple  # (dtype, shape, strides, offset, alias, group, nbytes)


def rederive(m: Module) -> Rederivation:
    """Run every node's op on meta tensors and compare with the recorded outputs (module docstring).

    Assumes the structural checks pass (:func:`problems` runs it only then)."""
    return _rederive(m)


def _rederive(m: Module) -> Rederivation:
    import torch

    g = m.graph
    smap = g.storage_map()
    seen: set[int] = {g.values[i.value].storage for i in g.inputs if i.value in g.values}
    # inputs that are Python numbers when the step runs (optimizer hyper-parameters), not tensors
    numbers = {i.value for i in g.inputs if getattr(i.kind, "name", "") == "HYPERPARAM"}
    rep = Rederivation()
    bad_values: dict[int, str] = {}
    for n in g.nodes:
        outs = n.output_ids()
        if n.op in _RETURNS_ITS_INPUT:
            _returns_input(n, g, rep.problems)
            rep.by_schema += 1
            continue
        try:
            result, hit = _run_node(n, g, smap, numbers, bad_values, torch)
        except _Unbuildable as e:
            rep.problems.append(f"{_who(n)}: input v{e.vid} cannot be made as a tensor as recorded: {e.why}")
            seen.update(g.values[v].storage for v in outs if v in g.values)
            continue
        rep.cache_hits += hit
        kind = result[0]
        if kind == "ok":
            rep.checked += 1
            found: list[str] = []
            _compare(n, g, smap, seen, result[1], result[2], found)
            if found:  # a meta kernel can answer for a device it does not know: ask as the capture did
                again = _call_on_device(n, g, smap, result[2], torch)
                if again is not None and again[0] == "ok":
                    found = []
                    _compare(n, g, smap, seen, again[1], again[2], found)
            rep.problems.extend(found)
        elif kind == "refused":
            rep.checked += 1
            rep.problems.append(f"{_who(n)}: {n.op} refuses its inputs as the IR records them: {result[1]}")
        elif _by_schema(n, g, rep.problems):
            rep.by_schema += 1
        elif n.op == "acir.rng_state.default" and _rng_state(n, g, smap, seen, rep.problems):
            rep.by_schema += 1
        else:
            rep.skipped.append(n.id)
        seen.update(g.values[v].storage for v in outs if v in g.values)
    if len(_CACHE) > _CACHE_MAX:
        _CACHE.clear()
    return rep


class _Unbuildable(Exception):
    def __init__(self, vid: int, why: str) -> None:
        super().__init__(why)
        self.vid, self.why = vid, why


def _resolve(name: str):
    """The OpOverload for ``name``, or None when torch does not know it."""
    import torch

    from acir.ir.ops import resolve_op

    try:
        op = resolve_op(name)
    except Exception:  # noqa: BLE001 - any name torch cannot resolve is an op it does not know
        return None
    return op if isinstance(op, torch._ops.OpOverload) else None


def _signature(a, local: dict[int, int], g: Graph, smap: dict[int, Storage], numbers: set[int]):
    """A hashable key for argument ``a``: tensors by local index and metadata, scalars with their type."""
    if isinstance(a, ValueRef):
        if a.id in numbers:
            return ("number",)
        k = local.setdefault(a.id, len(local))
        v = g.values[a.id]
        return ("T", k, v.dtype, v.shape, v.strides, v.storage_offset, smap[v.storage].nbytes)
    if isinstance(a, list):
        return ("L", *[_signature(x, local, g, smap, numbers) for x in a])
    if isinstance(a, float) and a != a:
        return ("nan",)
    return (type(a).__name__, a)


def _run_node(n: Node, g: Graph, smap: dict[int, Storage], numbers: set[int], bad_values: dict[int, str],
              torch) -> tuple[tuple, int]:
    """(what the op gives, 1 if cached). What it gives is ("ok", outputs tree, local index -> value id),
    ("refused", why) or ("skip", why)."""
    local: dict[int, int] = {}
    key = (n.op, tuple(_signature(a, local, g, smap, numbers) for a in n.args),
           tuple((k, _signature(a, local, g, smap, numbers)) for k, a in n.kwargs.items()))
    for vid in local:
        if vid in bad_values:
            raise _Unbuildable(vid, bad_values[vid])
    by_index = {k: vid for vid, k in local.items()}
    hit = _CACHE.get(key)
    if hit is not None:
        return ((*hit, by_index) if hit[0] == "ok" else hit), 1
    op = _resolve(n.op)
    if op is None:
        res: tuple = ("skip", "unknown op")
    else:
        tensors: dict[int, object] = {}
        for vid, k in local.items():
            try:
                tensors[k] = _meta_tensor(g.values[vid], smap, torch)
            except Exception as e:  # noqa: BLE001 - torch refuses these strides, sizes or dtype
                bad_values[vid] = _first_line(e)
                raise _Unbuildable(vid, bad_values[vid]) from None
        res = _call_meta(op, n, local, tensors, torch)
    _CACHE[key] = res
    return ((*res, by_index) if res[0] == "ok" else res), 0


def _call_on_device(n: Node, g: Graph, smap: dict[int, Storage], by_index: dict[int, int], torch) -> tuple | None:
    """What ``n``'s op gives on fake tensors of the recorded devices (as make_fx captured it), in
    :func:`_call_meta`'s form with ``by_index`` (local index -> value id, from the meta run);
    None when they cannot be built.

    Plain meta tensors say nothing of the device, and some meta kernels branch on it
    (``_embedding_bag`` sizes its ``max_indices`` one way for CPU offsets and another for the
    rest), so a mismatch found on meta tensors is asked again this way before it is reported."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    local = {vid: k for k, vid in by_index.items()}
    op = _resolve(n.op)
    if op is None:
        return None
    mode = FakeTensorMode()
    try:
        with mode:
            bases: dict[int, object] = {}
            tensors: dict[int, object] = {}
            for vid, k in local.items():
                v = g.values[vid]
                st = smap[v.storage]
                device = st.device or "cpu"
                if v.storage not in bases:
                    bases[v.storage] = torch.empty(st.nbytes, dtype=torch.uint8, device=device).untyped_storage()
                t = torch.empty(0, dtype=getattr(torch, v.dtype), device=device)
                tensors[k] = t.set_(bases[v.storage], v.storage_offset, v.shape, v.strides)
            res = _call_meta(op, n, local, tensors, torch, fake=True)
    except Exception:  # noqa: BLE001 - no fake tensors for these values: the meta answer stands
        return None
    return (*res, by_index) if res[0] == "ok" else res


def _meta_tensor(v, smap: dict[int, Storage], torch):
    storage = torch.UntypedStorage(smap[v.storage].nbytes, device="meta")
    t = torch.empty(0, dtype=getattr(torch, v.dtype), device="meta")
    return t.set_(storage, v.storage_offset, v.shape, v.strides)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _to_meta(a, local: dict[int, int], tensors: dict[int, object], torch, keep_devices: bool = False):
    if isinstance(a, ValueRef):
        k = local.get(a.id)
        return 0.5 if k is None else tensors[k]  # not local: a number input; its value does not shape anything
    if isinstance(a, list):
        return [_to_meta(x, local, tensors, torch, keep_devices) for x in a]
    if isinstance(a, Device):
        return torch.device(a.name if keep_devices else "meta")
    if isinstance(a, (DType, Layout, MemoryFormat)):
        return getattr(torch, a.name)
    return a


#: Errors that say the op has no meta implementation (or needs data), not that the inputs are wrong.
_NO_META = ("cannot be called on meta tensors", "'Meta' backend", "meta tensor", "data-dependent",
            "not implemented for 'Meta'", "on meta device", "Meta device")
#: Errors that say the call does not bind to the op's schema: the op never ran, so it says nothing
#: about the outputs (lowering would refuse such a node; the verifier does not check schemas).
_UNBOUND = ("expected at most", "is missing value for argument", "Expected a value of type",
            "unexpected keyword argument", "Unknown keyword argument", "Declaration:")


def _call_meta(op, n: Node, local: dict[int, int], tensors: dict[int, object], torch, fake: bool = False) -> tuple:
    """Run ``op`` on meta tensors (or, with ``fake``, on fake tensors of the recorded devices,
    inside their mode) and describe what it gives."""
    args = [_to_meta(a, local, tensors, torch, keep_devices=fake) for a in n.args]
    kwargs = {k: _to_meta(a, local, tensors, torch, keep_devices=fake) for k, a in n.kwargs.items()}
    if not fake and "device" not in kwargs and any(a.name == "device" and a.kwarg_only
                                                   for a in op._schema.arguments):
        kwargs["device"] = torch.device("meta")  # a factory op: never allocate real memory here
    try:
        with torch.no_grad():
            out = op(*args, **kwargs)
    except NotImplementedError as e:
        return ("skip", _first_line(e))
    except TypeError as e:
        return ("skip", f"its arguments do not fit the op's schema: {_first_line(e)}")
    except Exception as e:  # noqa: BLE001 - the op's own checks: wrong shapes, dtypes or arguments
        msg = _first_line(e)
        if any(w in msg for w in _NO_META):
            return ("skip", msg)
        if any(w in msg for w in _UNBOUND):
            return ("skip", f"its arguments do not fit the op's schema: {msg}")
        return ("refused", msg)
    storages = {t.untyped_storage()._cdata: k for k, t in tensors.items()}
    groups: dict[int, int] = {}

    def describe(o):
        if o is None:
            return None
        if isinstance(o, (list, tuple)):
            return [describe(x) for x in o]
        if not isinstance(o, torch.Tensor) or (o.device.type != "meta" and not fake):
            raise TypeError(type(o).__name__)
        cdata = o.untyped_storage()._cdata
        alias = storages.get(cdata, -1)
        group = -1 if alias >= 0 else groups.setdefault(cdata, len(groups))
        return (str(o.dtype).removeprefix("torch."), tuple(o.shape), tuple(o.stride()), o.storage_offset(),
                alias, group, o.untyped_storage().nbytes())

    try:
        return ("ok", describe(out))
    except TypeError as e:
        return ("skip", f"it returns a {e}, not tensors")


def _fmt_shape(dims) -> str:
    return "[" + ",".join(map(str, dims)) + "]"


def _compare(n: Node, g: Graph, smap: dict[int, Storage], seen: set[int], got, by_index: dict[int, int],
             out: list[str]) -> None:
    """Compare the recorded outputs of ``n`` with what its op gave (``got``, see :data:`_Out`)."""
    who = _who(n)
    new_groups: dict[int, int] = {}  # group -> the storage recorded for it

    def walk(rec, d, where: str) -> None:
        if isinstance(rec, ValueRef) and isinstance(d, tuple):
            _compare_value(rec.id, d)
        elif rec is None and d is None:
            pass
        elif isinstance(rec, list) and isinstance(d, list) and len(rec) == len(d):
            for i, (r, x) in enumerate(zip(rec, d)):
                walk(r, x, f"{where}[{i}]")
        else:
            out.append(f"{who}: its outputs{where} are recorded as {_tree(rec)}, but {n.op} returns {_tree(d)}")

    def _compare_value(vid: int, d: tuple) -> None:
        v = g.values[vid]
        dtype, shape, strides, offset, alias, group, nbytes = d
        diffs = []
        if v.dtype != dtype:
            diffs.append(("dtype", v.dtype, dtype))
        if tuple(v.shape) != shape:
            diffs.append(("shape", _fmt_shape(v.shape), _fmt_shape(shape)))
        if tuple(v.strides) != strides:
            diffs.append(("strides", _fmt_shape(v.strides), _fmt_shape(strides)))
        if v.storage_offset != offset:
            diffs.append(("storage offset", v.storage_offset, offset))
        if diffs:
            rec = ", ".join(f"{w} {a}" for w, a, _ in diffs)
            want = ", ".join(f"{w} {b}" for w, _, b in diffs)
            out.append(f"v{vid}: recorded with {rec}, but {n.op} ({who}) gives {want}")
        if alias >= 0:
            base = g.values[by_index[alias]]
            if v.storage != base.storage:
                out.append(f"v{vid}: recorded in storage s{v.storage}, but {n.op} ({who}) returns a view of "
                           f"its input v{base.id}, whose storage is s{base.storage}")
            return
        if v.storage in seen:
            out.append(f"v{vid}: recorded in storage s{v.storage}, which exists before {who}, but {n.op} "
                       f"returns a new storage of {nbytes} bytes")
            return
        first = new_groups.setdefault(group, v.storage)
        if first != v.storage:
            out.append(f"v{vid}: recorded in storage s{v.storage}, but {n.op} ({who}) returns it in the same new "
                       f"storage as s{first}")
        elif smap[v.storage].nbytes != nbytes:
            out.append(f"storage s{v.storage}: recorded as {smap[v.storage].nbytes} bytes, but {n.op} ({who}) "
                       f"allocates {nbytes} bytes for v{vid}")

    walk(n.outputs, got, "")
    if len(set(new_groups.values())) != len(new_groups):
        out.append(f"{who}: {n.op} returns {len(new_groups)} new storages, but they are recorded as "
                   f"{len(set(new_groups.values()))}")


def _tree(x) -> str:
    if x is None:
        return "None"
    if isinstance(x, ValueRef):
        return "a tensor"
    if isinstance(x, tuple):
        return "a tensor"
    if isinstance(x, list):
        return f"a list of {len(x)}"
    return type(x).__name__


def _by_schema(n: Node, g: Graph, out: list[str]) -> bool:
    """For an op that cannot run on meta but whose every result is an argument it writes
    (``Tensor(a!)`` in its schema): each recorded output must be that argument. False when
    the schema does not say so."""
    op = _resolve(n.op)
    if op is None or not op._schema.returns:
        return False
    schema = op._schema
    by_set = {}
    for i, a in enumerate(schema.arguments):
        if a.alias_info is not None and a.alias_info.is_write:
            arg = n.args[i] if i < len(n.args) and not a.kwarg_only else n.kwargs.get(a.name)
            for s in a.alias_info.before_set:
                by_set[s] = arg
    targets = []
    for r in schema.returns:
        if r.alias_info is None or not r.alias_info.is_write:
            return False
        arg = next((by_set[s] for s in r.alias_info.before_set if s in by_set), None)
        if not isinstance(arg, ValueRef):
            return False
        targets.append(arg)
    recorded = [n.outputs] if len(targets) == 1 and not isinstance(n.outputs, list) else n.outputs
    if not isinstance(recorded, list) or len(recorded) != len(targets):
        out.append(f"{_who(n)}: its outputs are recorded as {_tree(n.outputs)}, but {n.op} returns "
                   f"{len(targets)} tensor{'s' if len(targets) != 1 else ''}")
        return True
    for rec, arg in zip(recorded, targets):
        if not isinstance(rec, ValueRef):
            out.append(f"{_who(n)}: its outputs are recorded as {_tree(n.outputs)}, but {n.op} returns tensors")
            continue
        v, a = g.values[rec.id], g.values[arg.id]
        if (v.storage, v.dtype, tuple(v.shape), tuple(v.strides), v.storage_offset) != \
                (a.storage, a.dtype, tuple(a.shape), tuple(a.strides), a.storage_offset):
            out.append(f"v{v.id}: {n.op} ({_who(n)}) writes and returns its argument v{a.id}, but v{v.id} is "
                       f"recorded as {_fmt_value(v)}, not {_fmt_value(a)}")
    return True


def _fmt_value(v) -> str:
    return (f"{v.dtype}{_fmt_shape(v.shape)} strides {_fmt_shape(v.strides)} in s{v.storage}"
            + (f"+{v.storage_offset}" if v.storage_offset else ""))


#: Ops whose schema promises a new tensor but that return their (first) input itself: a
#: collective's wait hands back the tensor the collective wrote (its meta kernel copies).
_RETURNS_ITS_INPUT = frozenset({"_c10d_functional.wait_tensor.default"})


def _returns_input(n: Node, g: Graph, out: list[str]) -> None:
    src = n.args[0] if n.args and isinstance(n.args[0], ValueRef) else None
    if src is None or not isinstance(n.outputs, ValueRef) or src.id not in g.values:
        out.append(f"{_who(n)}: {n.op} takes a tensor and returns it")
        return
    a, b = g.values[src.id], g.values[n.outputs.id]
    if (a.dtype, a.shape, a.strides, a.storage, a.storage_offset) != (b.dtype, b.shape, b.strides, b.storage,
                                                                      b.storage_offset):
        out.append(f"v{b.id}: {n.op} ({_who(n)}) returns its input v{a.id} ({_fmt_value(a)}), but it is recorded "
                   f"as {_fmt_value(b)}")


def _rng_state(n: Node, g: Graph, smap: dict[int, Storage], seen: set[int], out: list[str]) -> bool:
    """``acir::rng_state(like)`` on a CPU tensor: a new uint8 storage holding the CPU generator's state."""
    if len(n.args) != 1 or n.kwargs or not isinstance(n.args[0], ValueRef) or not isinstance(n.outputs, ValueRef):
        return False
    like = g.values[n.args[0].id]
    if smap[like.storage].device != "cpu":
        return False
    from acir.ir.acir_ops import state_bytes

    nbytes = state_bytes("cpu")
    v = g.values[n.outputs.id]
    want = ("uint8", (nbytes,), (1,), 0)
    if (v.dtype, tuple(v.shape), tuple(v.strides), v.storage_offset) != want:
        out.append(f"v{v.id}: {n.op} ({_who(n)}) gives the CPU generator state, uint8[{nbytes}], but it is "
                   f"recorded as {_fmt_value(v)}")
    elif v.storage in seen or smap[v.storage].nbytes != nbytes:
        out.append(f"v{v.id}: {n.op} ({_who(n)}) returns a new storage of {nbytes} bytes, but it is recorded in "
                   f"s{v.storage} ({smap[v.storage].nbytes} bytes)")
    return True
