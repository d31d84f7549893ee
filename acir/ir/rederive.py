"""Re-derivation: run every node's op on meta tensors and compare with what the IR records.

The second half of the verifier (:mod:`acir.ir.verify` runs it once the structural checks
pass): every node's op is run on "meta" tensors (shapes, strides and storages, no data) built
from its inputs as the IR records them, and each output's dtype, shape, strides, storage offset
and storage must be what the op gives: a new storage of the bytes the op allocates, or, for a
view or an in-place result, the very storage of the input it aliases. A meta kernel that
branches on the device is asked again, for a node whose outputs disagree, on fake tensors of
the recorded devices, as capture asked it. Results are cached per (op, input signature). An op
that cannot run on meta is skipped and counted; an in-place op among them is still checked
against its schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.ir.graph import Device, DType, Graph, Layout, MemoryFormat, Module, Node, Storage, ValueRef

__all__ = ["Rederivation", "rederive", "who"]


def who(n: Node) -> str:
    """How a problem names a node: ``n<id> (<name>)``."""
    return f"n{n.id} ({n.name})"


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
            rep.problems.append(f"{who(n)}: input v{e.vid} cannot be made as a tensor as recorded: {e.why}")
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
            rep.problems.append(f"{who(n)}: {n.op} refuses its inputs as the IR records them: {result[1]}")
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
    from acir.ir.ops import DEVICE_SIZED_OUTPUTS, OWN_STORAGE_OUTPUTS

    me = who(n)
    new_groups: dict[int, int] = {}  # group -> the storage recorded for it
    # storages whose size the device decides (acir.ir.ops): recorded at least what meta says
    sized = {**DEVICE_SIZED_OUTPUTS.get(n.op, {}), **OWN_STORAGE_OUTPUTS.get(n.op, {})}
    flat = n.outputs if isinstance(n.outputs, list) else [n.outputs]
    device_sized = {g.values[r.id].storage for i, r in enumerate(flat) if i in sized and isinstance(r, ValueRef)}

    def walk(rec, d, where: str) -> None:
        if isinstance(rec, ValueRef) and isinstance(d, tuple):
            _compare_value(rec.id, d)
        elif rec is None and d is None:
            pass
        elif isinstance(rec, list) and isinstance(d, list) and len(rec) == len(d):
            for i, (r, x) in enumerate(zip(rec, d)):
                walk(r, x, f"{where}[{i}]")
        else:
            out.append(f"{me}: its outputs{where} are recorded as {_tree(rec)}, but {n.op} returns {_tree(d)}")

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
            out.append(f"v{vid}: recorded with {rec}, but {n.op} ({me}) gives {want}")
        if alias >= 0:
            base = g.values[by_index[alias]]
            if v.storage != base.storage:
                out.append(f"v{vid}: recorded in storage s{v.storage}, but {n.op} ({me}) returns a view of "
                           f"its input v{base.id}, whose storage is s{base.storage}")
            return
        if v.storage in seen:
            out.append(f"v{vid}: recorded in storage s{v.storage}, which exists before {me}, but {n.op} "
                       f"returns a new storage of {nbytes} bytes")
            return
        first = new_groups.setdefault(group, v.storage)
        if first != v.storage:
            out.append(f"v{vid}: recorded in storage s{v.storage}, but {n.op} ({me}) returns it in the same new "
                       f"storage as s{first}")
        elif smap[v.storage].nbytes != nbytes and not (v.storage in device_sized and smap[v.storage].nbytes >= nbytes):
            out.append(f"storage s{v.storage}: recorded as {smap[v.storage].nbytes} bytes, but {n.op} ({me}) "
                       f"allocates {nbytes} bytes for v{vid}")

    walk(n.outputs, got, "")
    if len(set(new_groups.values())) != len(new_groups):
        out.append(f"{me}: {n.op} returns {len(new_groups)} new storages, but they are recorded as "
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
        out.append(f"{who(n)}: its outputs are recorded as {_tree(n.outputs)}, but {n.op} returns "
                   f"{len(targets)} tensor{'s' if len(targets) != 1 else ''}")
        return True
    for rec, arg in zip(recorded, targets):
        if not isinstance(rec, ValueRef):
            out.append(f"{who(n)}: its outputs are recorded as {_tree(n.outputs)}, but {n.op} returns tensors")
            continue
        v, a = g.values[rec.id], g.values[arg.id]
        if (v.storage, v.dtype, tuple(v.shape), tuple(v.strides), v.storage_offset) != \
                (a.storage, a.dtype, tuple(a.shape), tuple(a.strides), a.storage_offset):
            out.append(f"v{v.id}: {n.op} ({who(n)}) writes and returns its argument v{a.id}, but v{v.id} is "
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
        out.append(f"{who(n)}: {n.op} takes a tensor and returns it")
        return
    a, b = g.values[src.id], g.values[n.outputs.id]
    if (a.dtype, a.shape, a.strides, a.storage, a.storage_offset) != (b.dtype, b.shape, b.strides, b.storage,
                                                                      b.storage_offset):
        out.append(f"v{b.id}: {n.op} ({who(n)}) returns its input v{a.id} ({_fmt_value(a)}), but it is recorded "
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
        out.append(f"v{v.id}: {n.op} ({who(n)}) gives the CPU generator state, uint8[{nbytes}], but it is "
                   f"recorded as {_fmt_value(v)}")
    elif v.storage in seen or smap[v.storage].nbytes != nbytes:
        out.append(f"v{v.id}: {n.op} ({who(n)}) returns a new storage of {nbytes} bytes, but it is recorded in "
                   f"s{v.storage} ({smap[v.storage].nbytes} bytes)")
    return True
