"""The in-memory IR: one training iteration as a flat, ordered graph of aten ops.

Why a graph of our own rather than ``torch.fx``: fx nodes carry an untyped ``meta``
dict and no notion of storage, role or region, and every planning decision in acir is
about exactly those. Here every tensor is a :class:`Value` that names the
:class:`Storage` it lives in (views and in-place results share their base's storage
and cost no new bytes), has one :class:`Role`, and every :class:`Node` says which
:class:`Region` of the iteration (forward, backward, optimizer) it belongs to.

The IR is plain data. Serialisation lives in :mod:`acir.ir.serde` (protobuf) and
:mod:`acir.ir.text` (the readable form); checks live in :mod:`acir.ir.verify`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from acir.ir.analyses import Analyses

SCHEMA_VERSION = 1
MAGIC = "acir"


class Role(enum.Enum):
    PARAM = 1
    BUFFER = 2
    INPUT = 3
    ACTIVATION = 4
    GRAD = 5
    OPT_STATE = 6
    OTHER = 7
    COMM_BUFFER = 8  # a flat buffer a collective works on (a bucket of gradients)


class Region(enum.Enum):
    FORWARD = 1
    BACKWARD = 2
    OPTIMIZER = 3
    COMMUNICATION = 4  # collectives across ranks and the copies around them; may sit anywhere


class InputKind(enum.Enum):
    PARAMETER = 1
    MODULE_BUFFER = 2
    OPTIMIZER_STATE = 3
    BATCH = 4
    CONSTANT = 5
    HYPERPARAM = 6  # a Python number given at each call (an optimizer hyper-parameter); no tensor, no bytes
    GRADIENT = 7  # a parameter's .grad accumulated by the previous micro-batches


#: The role a graph input's storage has, by what the input is.
INPUT_ROLE = {
    InputKind.PARAMETER: Role.PARAM,
    InputKind.MODULE_BUFFER: Role.BUFFER,
    InputKind.OPTIMIZER_STATE: Role.OPT_STATE,
    InputKind.BATCH: Role.INPUT,
    InputKind.CONSTANT: Role.INPUT,
    InputKind.HYPERPARAM: Role.INPUT,
    InputKind.GRADIENT: Role.GRAD,
}

#: Bytes per element of each dtype the IR knows, by torch's name without "torch.".
DTYPE_SIZE = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "complex128": 16, "complex64": 8, "complex32": 4,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1,
    "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
}

#: torch.layout names the text form (and the verifier) accepts.
LAYOUTS = frozenset({"strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr",
                     "sparse_bsc", "_mkldnn", "jagged"})
#: torch.memory_format names the text form (and the verifier) accepts.
MEMORY_FORMATS = frozenset({"contiguous_format", "channels_last", "channels_last_3d", "preserve_format"})


# ---------------------------------------------------------------------------
# Operator arguments: plain Python values, plus small tagged types for the
# torch enumerations so that they survive serialisation unambiguously.


@dataclass(frozen=True, slots=True)
class ValueRef:
    """A use of a value, as an operator argument or output."""

    id: int


@dataclass(frozen=True, slots=True)
class DType:
    name: str  # "float32"


@dataclass(frozen=True, slots=True)
class Device:
    name: str  # "cpu", "cuda:0"


@dataclass(frozen=True, slots=True)
class Layout:
    name: str  # "strided"


@dataclass(frozen=True, slots=True)
class MemoryFormat:
    name: str  # "contiguous_format"


Arg = Union[ValueRef, int, float, bool, str, None, DType, Device, Layout, MemoryFormat, list]


def arg_refs(arg: Arg) -> list[int]:
    """The value ids referenced anywhere inside ``arg``, in order."""
    if isinstance(arg, ValueRef):
        return [arg.id]
    if isinstance(arg, list):
        out: list[int] = []
        for a in arg:
            out.extend(arg_refs(a))
        return out
    return []


# ---------------------------------------------------------------------------


@dataclass(slots=True)
class Storage:
    id: int
    nbytes: int
    device: str


@dataclass(slots=True)
class Value:
    id: int
    shape: tuple[int, ...]
    dtype: str
    strides: tuple[int, ...]
    storage: int
    storage_offset: int
    nbytes: int
    role: Role

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(slots=True)
class Node:
    id: int
    name: str
    op: str
    args: list[Arg]
    kwargs: dict[str, Arg]
    outputs: Arg  # a tree of ValueRef / None / list
    region: Region
    module: str = ""
    recompute_of: int | None = None

    def input_ids(self) -> list[int]:
        """Value ids this node reads (args then kwargs), with repeats."""
        ids = arg_refs(self.args)
        for v in self.kwargs.values():
            ids.extend(arg_refs(v))
        return ids

    def output_ids(self) -> list[int]:
        return arg_refs(self.outputs)


@dataclass(slots=True)
class GraphInput:
    value: int
    kind: InputKind
    name: str
    data: bytes = b""  # CONSTANT inputs only: the tensor's contiguous bytes


@dataclass(slots=True)
class Graph:
    storages: list[Storage] = field(default_factory=list)
    values: dict[int, Value] = field(default_factory=dict)
    inputs: list[GraphInput] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    #: PARAMETER input name -> the value holding its gradient as the backward leaves it (what the
    #: optimizer, clipping and gradient communication read).
    param_grads: dict[str, int] = field(default_factory=dict)

    def storage(self, sid: int) -> Storage:
        return self.storage_map()[sid]

    def storage_map(self) -> dict[int, Storage]:
        return {s.id: s for s in self.storages}

    def producers(self) -> dict[int, Node]:
        """Value id -> the node that outputs it (graph inputs have none)."""
        out: dict[int, Node] = {}
        for n in self.nodes:
            for v in n.output_ids():
                out[v] = n
        return out

    def users(self) -> dict[int, list[Node]]:
        """Value id -> the nodes that read it, in graph order (each node once)."""
        out: dict[int, list[Node]] = {v: [] for v in self.values}
        for n in self.nodes:
            for v in dict.fromkeys(n.input_ids()):
                out.setdefault(v, []).append(n)
        return out


@dataclass(slots=True)
class Provenance:
    model: str = ""
    batch_size: int = 0
    seq_len: int = 0
    image_size: int = 0
    optimizer: str = ""
    optimizer_options: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    torch_version: str = ""
    accumulate: int = 0          # micro-batches per optimizer step; 0 or 1: none
    clip_grad_norm: float = 0.0  # max total gradient norm before the update; 0: no clipping


@dataclass(slots=True)
class Header:
    schema_version: int = SCHEMA_VERSION
    producer: str = ""
    provenance: Provenance = field(default_factory=Provenance)
    pipeline: list[str] = field(default_factory=list)
    revision: int = 0


def _no_analyses():
    from acir.ir.analyses import Analyses  # it imports this module (roles)

    return Analyses()


@dataclass(slots=True)
class Module:
    header: Header
    graph: Graph
    #: Analysis blocks by typed key (:mod:`acir.ir.analyses`: PROFILE, LIVENESS, PLAN), each
    #: stamped with the graph revision it was computed at (its ``revision`` attribute).
    analyses: Analyses = field(default_factory=_no_analyses)


def _copy_arg(a: Arg) -> Arg:
    return [_copy_arg(x) for x in a] if isinstance(a, list) else a  # everything else is immutable


def copy_graph(g: Graph) -> Graph:
    """A copy of ``g`` to edit freely: new storages, values, inputs and nodes, their argument lists
    copied (the leaves - value references, numbers, strings, torch enums - are immutable and
    shared). Much cheaper than ``copy.deepcopy`` on a graph of thousands of nodes."""
    return Graph(
        storages=[Storage(s.id, s.nbytes, s.device) for s in g.storages],
        values={k: Value(v.id, v.shape, v.dtype, v.strides, v.storage, v.storage_offset, v.nbytes, v.role)
                for k, v in g.values.items()},
        inputs=[GraphInput(i.value, i.kind, i.name, i.data) for i in g.inputs],
        nodes=[Node(n.id, n.name, n.op, _copy_arg(n.args), {k: _copy_arg(v) for k, v in n.kwargs.items()},
                    _copy_arg(n.outputs), n.region, n.module, n.recompute_of) for n in g.nodes],
        outputs=list(g.outputs),
        param_grads=dict(g.param_grads),
    )


def definition_order(graph: Graph) -> list[int]:
    """Value ids in the order they are defined: graph inputs, then node outputs.

    This is the canonical order of the values table (and of storages, by first mention),
    so that serialised bytes depend only on the graph, not on how it was edited.
    """
    seen: dict[int, None] = {}
    for i in graph.inputs:
        seen.setdefault(i.value, None)
    for n in graph.nodes:
        for v in n.output_ids():
            seen.setdefault(v, None)
    for v in graph.values:  # undefined values (a verifier error) keep a stable place at the end
        seen.setdefault(v, None)
    return list(seen)


def storage_order(graph: Graph) -> list[int]:
    """Storage ids in order of first mention by :func:`definition_order`."""
    seen: dict[int, None] = {}
    for vid in definition_order(graph):
        v = graph.values.get(vid)
        if v is not None:
            seen.setdefault(v.storage, None)
    for s in graph.storages:
        seen.setdefault(s.id, None)
    return list(seen)
