"""The in-place loss head: cross-entropy's big tensors computed into storages that die.

A cross-entropy loss over many classes (a language model's vocabulary) holds the step's
largest tensors, rows x classes each, and no recomputation can remove them, because they
are made and used within a few nodes:

* forward: ``_log_softmax(logits)`` writes the log-probabilities beside the logits, which
  die right there;
* backward: ``nll_loss_backward`` materialises a dense gradient (one non-zero per row),
  and ``_log_softmax_backward_data`` reads it and the log-probabilities (which die there)
  to write a third tensor.

So without AC the peak of bert-tiny (seq 64, batch 8) is three 59.6 MiB tensors at the
loss head, and no plan reaches below it. :func:`fuse` rewrites the two places in place,
bit for bit the same computation:

* ``_log_softmax`` becomes ``_log_softmax.out`` into its input's storage, when that storage
  dies at the node (the logits' values move to the log-probabilities' storage);
* ``nll_loss_backward`` followed by ``_log_softmax_backward_data`` becomes one
  :mod:`acir.ir.acir_ops` operator that writes the gradient into the log-probabilities'
  storage, when they die there, a block of rows at a time with the same two aten kernels.

Only storages that nothing reads afterwards are overwritten, nothing is recomputed and
node ranks of the rest are unchanged. Storage ids survive for every tensor an activation
plan can name: the log-probabilities keep theirs (the logits' storage and the dense
gradients' disappear).

Why not a pass of its own: a budget's percentage refers to the graph as captured (its
no-AC peak), and a plan for a tight budget may need the fused head. So the planners plan on
the fused view (:mod:`acir.analysis.candidates` builds the problem from it) and the ``rewrite``
pass, which realises the plan, applies the same fusion first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.ir.graph import DType, Graph, ValueRef, copy_graph

__all__ = ["FusionStats", "fuse", "fused_view"]

_LOG_SOFTMAX = "aten._log_softmax.default"
_LOG_SOFTMAX_OUT = "aten._log_softmax.out"
_LSM_BACKWARD = "aten._log_softmax_backward_data.default"
_NLL_BACKWARD = "aten.nll_loss_backward.default"
FUSED_BACKWARD = "acir.log_softmax_nll_backward_.default"


@dataclass
class FusionStats:
    forward: int = 0    # _log_softmax computed into its dying input
    backward: int = 0   # nll_loss_backward + _log_softmax_backward_data computed into the dying output
    absorbed: dict[int, int] = field(default_factory=dict)  # removed node id -> the fused node that does its work

    @property
    def total(self) -> int:
        return self.forward + self.backward


def fused_view(g: Graph) -> tuple[Graph, FusionStats]:
    """``g`` itself when nothing can be fused, else a fused copy (``g`` is left alone)."""
    if not _matches(g):
        return g, FusionStats()
    view = copy_graph(g)
    stats = fuse(view)
    return (view, stats) if stats.total else (g, stats)  # a log_softmax that cannot be fused: no copy


def _matches(g: Graph) -> bool:
    return any(n.op in (_LOG_SOFTMAX, _LSM_BACKWARD) for n in g.nodes)


def _whole(v, nbytes: int) -> bool:
    """Is value ``v`` contiguous and the whole of its storage?"""
    expect, acc = [], 1
    for d in reversed(v.shape):
        expect.append(acc)
        acc *= d
    return (v.storage_offset == 0 and v.nbytes == nbytes
            and all(s == e for s, e, d in zip(v.strides, reversed(expect), v.shape) if d > 1))


def fuse(g: Graph) -> FusionStats:
    """Fuse every loss head of ``g`` that qualifies, in place (see the module docstring)."""
    from acir.analysis.simulator import storage_lives

    stats = FusionStats()
    if not _matches(g):
        return stats
    last_use = {life.storage: life.last_use for life in storage_lives(g)}
    nbytes = {s.id: s.nbytes for s in g.storages}
    pinned = {g.values[i.value].storage for i in g.inputs} | {g.values[v].storage for v in g.outputs}
    rank = {id(n): r for r, n in enumerate(g.nodes)}
    producers = g.producers()
    users = g.users()
    by_storage: dict[int, list[int]] = {}
    for vid, v in g.values.items():
        by_storage.setdefault(v.storage, []).append(vid)
    dead_nodes: set[int] = set()
    dead_storages: set[int] = set()

    def move(src: int, dst: int) -> None:
        """Every value of storage ``src`` into ``dst`` (one role: ``dst``'s)."""
        role = g.values[by_storage[dst][0]].role
        for vid in by_storage.pop(src, []):
            g.values[vid].storage = dst
            g.values[vid].role = role
            by_storage[dst].append(vid)
        dead_storages.add(src)

    for node in g.nodes:
        if node.op == _LSM_BACKWARD:
            absorbed = _fuse_backward(g, node, rank, producers, users, by_storage, last_use, nbytes, pinned, move)
            if absorbed is not None:
                stats.backward += 1
                stats.absorbed[absorbed] = node.id
                dead_nodes.add(absorbed)
    for node in g.nodes:
        if node.op == _LOG_SOFTMAX and _fuse_forward(g, node, rank, last_use, nbytes, pinned, move):
            stats.forward += 1
    if dead_nodes:
        g.nodes = [n for n in g.nodes if n.id not in dead_nodes]
    if dead_storages:
        g.storages = [s for s in g.storages if s.id not in dead_storages]
    return stats


def _fuse_backward(g, node, rank, producers, users, by_storage, last_use, nbytes, pinned, move) -> int | None:
    """Fuse at ``node`` (a _log_softmax_backward_data); the id of the nll_loss_backward node it absorbs."""
    if len(node.args) != 4 or node.kwargs or not isinstance(node.args[0], ValueRef) \
            or not isinstance(node.args[1], ValueRef):
        return None
    grad_ref, out_ref, dim, input_dtype = node.args
    o = g.values[out_ref.id]
    so = o.storage
    outs = node.output_ids()
    if len(o.shape) != 2 or dim not in (1, -1) or not isinstance(input_dtype, DType) or input_dtype.name != o.dtype:
        return None
    if so in pinned or last_use.get(so) != rank[id(node)] or not _whole(o, nbytes[so]) or len(outs) != 1:
        return None
    res = g.values[outs[0]]
    if res.shape != o.shape or res.strides != o.strides or res.dtype != o.dtype or res.storage in pinned:
        return None
    nll = producers.get(grad_ref.id)
    if nll is None or nll.op != _NLL_BACKWARD or len(nll.args) != 7 or nll.kwargs or nll.region is not node.region:
        return None
    grad = g.values[grad_ref.id]
    if [n.id for n in users.get(grad_ref.id, [])] != [node.id] or by_storage.get(grad.storage) != [grad_ref.id]:
        return None
    grad_output, self_ref, target, weight, reduction, ignore_index, total_weight = nll.args
    if not isinstance(self_ref, ValueRef) or g.values[self_ref.id].shape != o.shape:
        return None
    node.op = FUSED_BACKWARD
    node.args = [out_ref, grad_output, target, weight, reduction, ignore_index, total_weight, dim]
    del g.values[grad_ref.id]
    by_storage.pop(grad.storage, None)     # the dense gradient's storage is left without values: dropped
    g.storages = [s for s in g.storages if s.id != grad.storage]
    move(res.storage, so)
    return nll.id


def _fuse_forward(g, node, rank, last_use, nbytes, pinned, move) -> bool:
    if len(node.args) != 3 or node.kwargs or not isinstance(node.args[0], ValueRef) or node.args[2] is not False:
        return False
    x = g.values[node.args[0].id]
    outs = node.output_ids()
    if len(outs) != 1:
        return False
    o = g.values[outs[0]]
    sx, so = x.storage, o.storage
    if sx == so or sx in pinned or so in pinned or last_use.get(sx) != rank[id(node)]:
        return False
    if x.shape != o.shape or x.dtype != o.dtype or nbytes[sx] != nbytes[so]:
        return False
    if node.args[1] not in (-1, len(x.shape) - 1):  # checked in place over the last dimension only
        return False
    if not (_whole(x, nbytes[sx]) and _whole(o, nbytes[so])):
        return False
    node.op = _LOG_SOFTMAX_OUT
    node.kwargs = {"out": ValueRef(x.id)}
    move(sx, so)
    return True
