"""Protobuf <-> IR. The only module that touches the generated classes.

Artifacts start with the field ``magic = "acir"`` (so the first bytes of every file are
``0a 04 61 63 69 72``) and end with a fixed 10-byte trailer: the field ``checksum``
(field 14, fixed32: ``75`` and the CRC-32 in 4 little-endian bytes) and then
``end = "end"`` (field 15: ``7a 03 65 6e 64``). Protobuf serialises fields in field-number
order, so the trailer is always last, and ``checksum`` is the CRC-32 (zlib's, IEEE 802.3)
of every byte before it: the serialised message minus its checksum and end fields.

Why this framing: the file stays one plain protobuf message (``protoc --decode acir.Module``
reads it, and a reader that predates the field skips it), while the check runs on the raw
bytes, so it needs no re-serialisation and covers every byte: CRC-32 catches every
single-byte change and every burst of up to 32 bits, a byte in the trailer itself breaks
the trailer's layout, and a file cut short has no end marker. A failed check is a
:class:`SerdeError` that says "corrupt" (or "truncated"); acir does not guess which part of
a corrupt file could still be trusted. Before the check, a file that protobuf cannot parse
is corrupt, and one whose schema version is newer than ours is refused as newer (a newer
acir may frame its files differently, so we do not judge its checksum).

Older artifacts: binary artifacts written before the checksum existed have none, and are
refused ("re-create it with acir-capture"). Accepting them would let a corruption that
destroys the trailer's first byte, or any corruption of an old file, through unchecked, and
artifacts are cheap to re-create. The schema version stays 1: the field is an addition that
older readers skip, and the version is printed on the first line of every text artifact.
The text form carries no checksum: it is made to be edited by hand, and the verifier
(:mod:`acir.ir.verify`) re-derives the sizes an edit could falsify.

Serialisation is deterministic: the same Module gives the same bytes.
"""

from __future__ import annotations

import zlib

from google.protobuf.message import DecodeError

from acir.errors import SerdeError
from acir.ir._proto import acir_pb2 as pb
from acir.ir.analyses import (
    LIVENESS,
    PLAN,
    PROFILE,
    Analyses,
    AnalysisKey,
    Decision,
    Liveness,
    NodeProfile,
    Plan,
    Profile,
    StorageLife,
    TensorPlan,
)
from acir.ir.graph import (
    MAGIC,
    SCHEMA_VERSION,
    Arg,
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
    definition_order,
    storage_order,
)

_END = "end"
#: The first bytes of every binary artifact (field 1, length 4, "acir").
BINARY_PREFIX = b"\x0a\x04" + MAGIC.encode()
#: The tag of the checksum field (14, fixed32) and the end field as serialised (15, length 3, "end").
_CHECKSUM_TAG = b"\x75"
_END_FIELD = b"\x7a\x03" + _END.encode()
#: Every binary artifact ends with this many bytes: the checksum field, then the end field.
TRAILER_BYTES = len(_CHECKSUM_TAG) + 4 + len(_END_FIELD)


# ---------------------------------------------------------------------------
# IR -> protobuf


def _arg_to_pb(a: Arg, out: pb.Arg) -> None:
    if isinstance(a, ValueRef):
        out.value = a.id
    elif a is None:
        out.none = True
    elif isinstance(a, bool):
        out.bool = a
    elif isinstance(a, int):
        out.int = a
    elif isinstance(a, float):
        out.float = a
    elif isinstance(a, str):
        out.str = a
    elif isinstance(a, list):
        lst = out.list
        lst.SetInParent()
        for item in a:
            _arg_to_pb(item, lst.items.add())
    elif isinstance(a, DType):
        out.dtype = a.name
    elif isinstance(a, Device):
        out.device = a.name
    elif isinstance(a, Layout):
        out.layout = a.name
    elif isinstance(a, MemoryFormat):
        out.memory_format = a.name
    else:  # pragma: no cover - capture only produces the types above
        raise SerdeError(f"cannot serialise argument {a!r} of type {type(a).__name__}")


def module_to_pb(m: Module) -> pb.Module:
    msg = pb.Module(magic=MAGIC)
    h, p = m.header, m.header.provenance
    msg.header.schema_version = h.schema_version
    msg.header.producer = h.producer
    msg.header.pipeline.extend(h.pipeline)
    msg.header.revision = h.revision
    pp = msg.header.provenance
    pp.model, pp.batch_size, pp.seq_len, pp.image_size = p.model, p.batch_size, p.seq_len, p.image_size
    pp.optimizer, pp.seed, pp.device, pp.dtype = p.optimizer, p.seed, p.device, p.dtype
    pp.torch_version, pp.accumulate, pp.clip_grad_norm = p.torch_version, p.accumulate, p.clip_grad_norm
    for k, v in p.optimizer_options.items():
        pp.optimizer_options.add(key=k, value=v)
    g = msg.graph
    smap = m.graph.storage_map()
    for sid in storage_order(m.graph):
        s = smap[sid]
        g.storages.add(id=s.id, nbytes=s.nbytes, device=s.device)
    for vid in definition_order(m.graph):
        v = m.graph.values[vid]
        g.values.add(id=v.id, shape=v.shape, dtype=v.dtype, strides=v.strides, storage=v.storage,
                     storage_offset=v.storage_offset, nbytes=v.nbytes, role=v.role.value)
    for i in m.graph.inputs:
        g.inputs.add(value=i.value, kind=i.kind.value, name=i.name, data=i.data)
    for n in m.graph.nodes:
        pn = g.nodes.add(id=n.id, name=n.name, op=n.op, region=n.region.value, module=n.module)
        for a in n.args:
            _arg_to_pb(a, pn.args.add())
        for k, a in n.kwargs.items():
            kw = pn.kwargs.add(name=k)
            _arg_to_pb(a, kw.value)
        _arg_to_pb(n.outputs, pn.outputs)
        if n.recompute_of is not None:
            pn.recompute_of = n.recompute_of
    g.outputs.extend(m.graph.outputs)
    for name, vid in m.graph.param_grads.items():
        g.param_grads.add(param=name, value=vid)
    _analyses_to_pb(m.analyses, msg.analyses)
    return msg


def _analyses_to_pb(analyses: Analyses, out: pb.Analyses) -> None:
    prof = analyses.get(PROFILE)
    if prof is not None:
        p = out.profile
        p.revision, p.device, p.method = prof.revision, prof.device, prof.method
        p.reps, p.warmup = prof.reps, prof.warmup
        p.torch_version, p.malloc, p.measured_peak_bytes = prof.torch_version, prof.malloc, prof.measured_peak_bytes
        p.peak_node, p.iteration_s = prof.peak_node, prof.iteration_s
        for n in prof.nodes:
            p.nodes.add(node=n.node, run_s=n.run_s, alloc_bytes=n.alloc_bytes, freed_bytes=n.freed_bytes,
                        peak_bytes=n.peak_bytes, live_bytes=n.live_bytes)
    live = analyses.get(LIVENESS)
    if live is not None:
        q = out.liveness
        q.revision, q.simulated_peak_bytes, q.peak_node = live.revision, live.simulated_peak_bytes, live.peak_node
        q.persistent_bytes, q.used_profile = live.persistent_bytes, live.used_profile
        q.timeline.extend(live.timeline)
        for s in live.storages:
            q.storages.add(storage=s.storage, defined=s.defined, last_use=s.last_use, last_fw_use=s.last_fw_use,
                           first_bw_use=s.first_bw_use, last_bw_use=s.last_bw_use, activation=s.activation,
                           inactive_s=s.inactive_s)
        for role in sorted(live.peak_by_role, key=lambda r: r.value):
            q.peak_by_role.add(role=role.value, bytes=live.peak_by_role[role])
    plan = analyses.get(PLAN)
    if plan is not None:
        r = out.plan
        r.revision, r.planner, r.budget_bytes = plan.revision, plan.planner, plan.budget_bytes
        r.predicted_peak_bytes, r.predicted_recompute_s = plan.predicted_peak_bytes, plan.predicted_recompute_s
        r.solve_s, r.no_ac_peak_bytes, r.floor_bytes = plan.solve_s, plan.no_ac_peak_bytes, plan.floor_bytes
        r.optimality_gap, r.profile = plan.optimality_gap, plan.profile
        for t in plan.tensors:
            r.tensors.add(storage=t.storage, decision=t.decision.value, reason=t.reason, srcs=t.srcs,
                          recompute_s=t.recompute_s, recompute_count=t.recompute_count, retained=t.retained)


def _analyses_from_pb(msg: pb.Analyses) -> Analyses:
    out = Analyses()
    if msg.HasField("profile"):
        p = msg.profile
        out[PROFILE] = Profile(
            revision=p.revision, device=p.device, method=p.method, reps=p.reps, warmup=p.warmup,
            torch_version=p.torch_version, malloc=p.malloc,
            nodes=[NodeProfile(n.node, n.run_s, n.alloc_bytes, n.freed_bytes, n.peak_bytes, n.live_bytes)
                   for n in p.nodes],
            measured_peak_bytes=p.measured_peak_bytes, peak_node=p.peak_node, iteration_s=p.iteration_s)
    if msg.HasField("liveness"):
        q = msg.liveness
        out[LIVENESS] = Liveness(
            revision=q.revision,
            storages=[StorageLife(s.storage, s.defined, s.last_use, s.last_fw_use, s.first_bw_use, s.last_bw_use,
                                  s.activation, s.inactive_s) for s in q.storages],
            timeline=list(q.timeline), simulated_peak_bytes=q.simulated_peak_bytes, peak_node=q.peak_node,
            peak_by_role={_enum(Role, r.role, "liveness peak_by_role"): r.bytes for r in q.peak_by_role},
            persistent_bytes=q.persistent_bytes, used_profile=q.used_profile)
    if msg.HasField("plan"):
        r = msg.plan
        out[PLAN] = Plan(
            revision=r.revision, planner=r.planner, budget_bytes=r.budget_bytes,
            predicted_peak_bytes=r.predicted_peak_bytes, predicted_recompute_s=r.predicted_recompute_s,
            solve_s=r.solve_s, no_ac_peak_bytes=r.no_ac_peak_bytes, floor_bytes=r.floor_bytes,
            tensors=[TensorPlan(t.storage, _enum(Decision, t.decision, f"plan tensor s{t.storage}"), t.reason,
                                list(t.srcs), t.recompute_s, t.recompute_count, t.retained) for t in r.tensors],
            optimality_gap=r.optimality_gap, profile=r.profile)
    return out


def analysis_to_text(key: AnalysisKey, block) -> str:
    """One analysis block as a single line of protobuf text format (for :mod:`acir.ir.text`)."""
    from google.protobuf import text_format

    msg = pb.Analyses()
    _analyses_to_pb(Analyses({key: block}), msg)
    return text_format.MessageToString(getattr(msg, key.name), as_one_line=True)


def analysis_from_text(key: AnalysisKey, text: str, what: str):
    """Parse what :func:`analysis_to_text` printed; errors are :class:`SerdeError` naming ``what``."""
    from google.protobuf import text_format

    msg = pb.Analyses()
    try:
        text_format.Parse(text, getattr(msg, key.name))
    except (text_format.ParseError, AttributeError) as e:
        raise SerdeError(f"{what}: bad {key.name} block: {e}") from None
    return _analyses_from_pb(msg)[key]


def checksum(payload: bytes) -> int:
    """The CRC-32 an artifact records for ``payload``, its bytes before the trailer."""
    return zlib.crc32(payload) & 0xFFFFFFFF


def seal(payload: bytes) -> bytes:
    """``payload`` (a serialised Module without checksum and end fields) with its trailer appended.

    The result is what protobuf writes for the same message with ``checksum`` and ``end`` set."""
    return payload + _CHECKSUM_TAG + checksum(payload).to_bytes(4, "little") + _END_FIELD


def dumps(m: Module) -> bytes:
    """The binary artifact for ``m`` (deterministic), sealed with its checksum."""
    return seal(module_to_pb(m).SerializeToString(deterministic=True))


# ---------------------------------------------------------------------------
# protobuf -> IR


def _enum(cls, raw: int, what: str):
    try:
        return cls(raw)
    except ValueError:
        raise SerdeError(f"{what}: unknown {cls.__name__} {raw}; the artifact may come from a newer acir") from None


def _arg_from_pb(a: pb.Arg, what: str) -> Arg:
    kind = a.WhichOneof("kind")
    if kind == "value":
        return ValueRef(a.value)
    if kind == "none":
        return None
    if kind == "bool":
        return a.bool
    if kind == "int":
        return a.int
    if kind == "float":
        return a.float
    if kind == "str":
        return a.str
    if kind == "list":
        return [_arg_from_pb(x, what) for x in a.list.items]
    if kind == "dtype":
        return DType(a.dtype)
    if kind == "device":
        return Device(a.device)
    if kind == "layout":
        return Layout(a.layout)
    if kind == "memory_format":
        return MemoryFormat(a.memory_format)
    raise SerdeError(f"{what}: an argument has no value set (corrupt artifact)")


def module_from_pb(msg: pb.Module) -> Module:
    ph = msg.header
    pp = ph.provenance
    prov = Provenance(
        model=pp.model, batch_size=pp.batch_size, seq_len=pp.seq_len, image_size=pp.image_size,
        optimizer=pp.optimizer, optimizer_options={o.key: o.value for o in pp.optimizer_options},
        seed=pp.seed, device=pp.device, dtype=pp.dtype, torch_version=pp.torch_version,
        accumulate=pp.accumulate, clip_grad_norm=pp.clip_grad_norm,
    )
    header = Header(schema_version=ph.schema_version, producer=ph.producer, provenance=prov,
                    pipeline=list(ph.pipeline), revision=ph.revision)
    pg = msg.graph
    g = Graph()
    g.storages = [Storage(s.id, s.nbytes, s.device) for s in pg.storages]
    for v in pg.values:
        g.values[v.id] = Value(v.id, tuple(v.shape), v.dtype, tuple(v.strides), v.storage,
                               v.storage_offset, v.nbytes, _enum(Role, v.role, f"value v{v.id}"))
    g.inputs = [GraphInput(i.value, _enum(InputKind, i.kind, f"graph input {i.name!r}"), i.name, i.data)
                for i in pg.inputs]
    for pn in pg.nodes:
        what = f"node n{pn.id} ({pn.name})"
        g.nodes.append(Node(
            id=pn.id, name=pn.name, op=pn.op,
            args=[_arg_from_pb(a, what) for a in pn.args],
            kwargs={k.name: _arg_from_pb(k.value, what) for k in pn.kwargs},
            outputs=_arg_from_pb(pn.outputs, what) if pn.HasField("outputs") else None,
            region=_enum(Region, pn.region, what), module=pn.module,
            recompute_of=pn.recompute_of if pn.HasField("recompute_of") else None,
        ))
    g.outputs = list(pg.outputs)
    g.param_grads = {pgr.param: pgr.value for pgr in pg.param_grads}
    return Module(header, g, _analyses_from_pb(msg.analyses))


def _trailer_crc(data: bytes) -> int | None:
    """The CRC-32 the trailer records, or None when the file does not end with a trailer."""
    if len(data) < len(BINARY_PREFIX) + TRAILER_BYTES or not data.endswith(_END_FIELD):
        return None
    at = len(data) - TRAILER_BYTES
    if data[at:at + 1] != _CHECKSUM_TAG:
        return None
    return int.from_bytes(data[at + 1:at + 5], "little")


def loads(data: bytes, source: str = "<bytes>") -> Module:
    """Decode a binary artifact; every failure is a :class:`SerdeError` naming ``source``.

    The order of the checks: magic, protobuf parse, schema version (a newer one is refused
    as newer, unjudged), end marker, then the checksum, then decoding into the IR."""
    if not data:
        raise SerdeError(f"{source}: empty input; expected an acir artifact (from acir-capture or acir-opt)")
    if not data.startswith(BINARY_PREFIX):
        raise SerdeError(f"{source}: not an acir artifact (it does not start with the acir magic bytes); "
                         "make one with acir-capture")
    msg = pb.Module()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise SerdeError(f"{source}: corrupt or truncated acir artifact ({e}); "
                         "re-create it with acir-capture") from None
    if msg.header.schema_version > SCHEMA_VERSION:
        raise SerdeError(f"{source}: artifact schema version {msg.header.schema_version} is newer than this "
                         f"acir understands ({SCHEMA_VERSION}); upgrade acir (pip install -U acir)")
    if msg.end != _END or not data.endswith(_END_FIELD):
        raise SerdeError(f"{source}: truncated or corrupt acir artifact (its end marker is missing); "
                         "re-create it with acir-capture")
    recorded = _trailer_crc(data)
    if recorded is None or not msg.HasField("checksum") or msg.checksum != recorded:
        raise SerdeError(f"{source}: corrupt acir artifact, or one written before artifacts had checksums: it does "
                         "not end with its checksum; re-create it with acir-capture")
    actual = checksum(data[:-TRAILER_BYTES])
    if actual != recorded:
        try:  # what decoding makes of it: a hint at what was damaged, never a reason to accept it
            module_from_pb(msg)
            hint = ""
        except Exception as e:  # noqa: BLE001 - any failure is only a hint here
            hint = f"; decoding it anyway fails: {e}"
        raise SerdeError(f"{source}: corrupt acir artifact: its CRC-32 is {actual:08x}, but it records {recorded:08x} "
                         f"(bytes were changed after it was written{hint}); re-create it with acir-capture")
    return module_from_pb(msg)
