"""What the data-parallel passes (``ddp``, ``fsdp``) share to put collectives into a graph.

Not a pass: the op names of torch's functional collectives, a builder that appends fresh
storages, values and ``COMMUNICATION`` nodes to a graph, and the small graph edits both
passes make (pointing readers at new values, PyTorch's optimizer order and back).
"""

from __future__ import annotations

from acir.ir.graph import Graph, Node, Region, Role, Storage, Value, ValueRef
from acir.ir.ops import COLLECTIVE_PREFIX, WAIT_TENSOR

#: The namespace of the collective ops the IR holds (torch's functional collectives).
COLLECTIVE_NAMESPACE = COLLECTIVE_PREFIX.rstrip(".")
ALL_REDUCE = COLLECTIVE_PREFIX + "all_reduce_.default"
BROADCAST = COLLECTIVE_PREFIX + "broadcast_.default"
ALL_GATHER = COLLECTIVE_PREFIX + "all_gather_into_tensor.default"
REDUCE_SCATTER = COLLECTIVE_PREFIX + "reduce_scatter_tensor.default"
WAIT = WAIT_TENSOR


def holds_collectives(g: Graph) -> bool:
    return any(n.op.startswith(COLLECTIVE_PREFIX) for n in g.nodes)


def contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides of a contiguous tensor of ``shape``."""
    out, acc = [1] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        out[i] = acc
        acc *= max(shape[i], 1)
    return tuple(out)


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def safe(name: str) -> str:
    """``name`` with every character but letters and digits as ``_`` (for node names)."""
    return "".join(c if c.isalnum() else "_" for c in name)


class Builder:
    """New values, storages and ``COMMUNICATION`` nodes appended to a graph, with fresh ids and names."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.next_value = max(g.values, default=-1) + 1
        self.next_storage = max((s.id for s in g.storages), default=-1) + 1
        self.next_node = max((n.id for n in g.nodes), default=-1) + 1
        self.names = {n.name for n in g.nodes}

    def storage(self, nbytes: int, device: str) -> int:
        sid = self.next_storage
        self.next_storage += 1
        self.g.storages.append(Storage(sid, nbytes, device))
        return sid

    def value(self, shape, dtype: str, itemsize: int, storage: int, offset: int = 0, strides=None,
              role: Role = Role.COMM_BUFFER) -> int:
        """A new value of ``shape`` (contiguous unless ``strides``) in ``storage``."""
        vid = self.next_value
        self.next_value += 1
        shape = tuple(shape)
        strides = contiguous(shape) if strides is None else tuple(strides)
        self.g.values[vid] = Value(vid, shape, dtype, strides, storage, offset, numel(shape) * itemsize, role)
        return vid

    def like(self, v: Value, storage: int | None = None, offset: int | None = None, shape=None, strides=None,
             role: Role | None = None) -> int:
        """A new value like ``v`` (its dtype; its shape, strides, storage, offset and role unless given)."""
        itemsize = v.nbytes // max(v.numel, 1) if v.numel else 0
        return self.value(v.shape if shape is None else shape, v.dtype, itemsize,
                          v.storage if storage is None else storage, v.storage_offset if offset is None else offset,
                          v.strides if strides is None else strides, v.role if role is None else role)

    def node(self, base: str, op: str, args: list, kwargs: dict | None, outputs, module: str = "") -> Node:
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        n = Node(self.next_node, name, op, args, kwargs or {}, outputs, Region.COMMUNICATION, module)
        self.next_node += 1
        return n


def remap(a, m: dict[int, int]):
    """Argument ``a`` with every value reference in ``m`` replaced by its mapping."""
    if isinstance(a, ValueRef):
        return ValueRef(m.get(a.id, a.id))
    if isinstance(a, list):
        return [remap(x, m) for x in a]
    return a


def remap_readers(nodes: list[Node], m: dict[int, int]) -> None:
    """Point the arguments of ``nodes`` at the values ``m`` maps theirs to."""
    if not m:
        return
    for n in nodes:
        n.args = [remap(a, m) for a in n.args]
        n.kwargs = {k: remap(a, m) for k, a in n.kwargs.items()}


def interleaved(g: Graph) -> bool:
    """Does some optimizer node run before the backward ends (the ``interleave-optimizer`` schedule)?"""
    last_bw = max((r for r, n in enumerate(g.nodes) if n.region is Region.BACKWARD), default=-1)
    return any(n.region is Region.OPTIMIZER for n in g.nodes[:last_bw])


def optimizer_last(g: Graph) -> None:
    """PyTorch's order again: every optimizer node after the backward (a stable move)."""
    g.nodes = [n for n in g.nodes if n.region is not Region.OPTIMIZER] + \
        [n for n in g.nodes if n.region is Region.OPTIMIZER]
