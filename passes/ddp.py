"""The ``ddp`` pass: one rank of data-parallel training, as ``DistributedDataParallel`` runs it.

It turns a single-process step into the step every rank of an N-rank data-parallel run
executes, with PyTorch's own collectives (``torch.ops._c10d_functional``, run by the
process group's backend: gloo on the CPU, NCCL on CUDA) as nodes of the IR, in their own
region (``COMMUNICATION``) and role (``COMM_BUFFER``), placed as DDP places them:

* **Buffers** are broadcast from rank 0 before the forward (DDP's ``broadcast_buffers``,
  its default): ``broadcast_`` then ``wait_tensor`` on each module buffer, read from then on.
* **Gradients** are averaged in buckets. A bucket is DDP's: its reducer's buckets as rebuilt
  after the first iteration (the order gradients become ready in the backward; a first
  bucket of at most 1 MiB, then at most ``bucket`` bytes: ``bucket_cap_mb``, 25 MiB by
  default), computed by DDP's own ``_compute_bucket_assignment_by_size``. When a bucket's
  last gradient is final, each of its gradients is multiplied by ``1/world`` into its slice
  of a flat buffer (DDP's ``mul_out`` into the bucket view), and the buffer is all-reduced
  (sum) at once; the wait, and the copy of each averaged slice back into its gradient
  (DDP without ``gradient_as_bucket_view``), come when the next bucket starts, so the
  collective overlaps the backward that follows, as DDP's does. The flat buffer dies after
  the copies: unlike DDP's reducer, which keeps every bucket allocated for the whole run,
  acir holds one or two at a time, and the simulator counts exactly those bytes.
* Each parameter's optimizer update then runs after its bucket's copy (the
  ``interleave-optimizer`` schedule again, when the step was interleaved).
* With ``reduce=false``, gradients are left alone: a micro-batch of gradient accumulation
  that does not step, as DDP runs one under ``no_sync()``. The micro-batch that steps then
  averages the accumulated gradients, which is what DDP's reducer sends after ``no_sync``.
  DDP broadcasts buffers only before a forward that follows a synchronised one (its
  ``require_forward_param_sync``), so in such a loop only each cycle's first micro-batch
  broadcasts (``broadcast-buffers=false`` for the others).

The averaged gradient is the same tensor, bit for bit, as DDP's: the same ``1/world``
multiplication before the same sum. Parameters are not broadcast here: DDP does that once,
when it wraps the model (``acir.compile(..., distributed="ddp")`` does it too). The
collectives name a process group (``group``: under ``torchrun`` the default group is
``"0"``); profiling without one runs them on a single-rank group (their times are then
not measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from acir.errors import PassFailed
from acir.ir.analyses import LIVENESS, PLAN, PROFILE
from acir.ir.graph import (
    Device,
    DType,
    Graph,
    InputKind,
    Layout,
    Module,
    Node,
    Region,
    Role,
    Value,
    ValueRef,
)
from acir.passes import collective_graph as cg
from acir.pipeline.pass_base import Pass, PassResult

__all__ = ["DataParallel"]

def bucket_assignment(g: Graph, grads: list[tuple[str, int]], bucket_bytes: int) -> list[list[int]]:
    """DDP's buckets over ``grads`` (in the order they become ready): indices into ``grads``,
    from torch's own ``_compute_bucket_assignment_by_size`` with its rebuilt-bucket limits."""
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise PassFailed("ddp needs torch.distributed, which this torch build lacks")
    tensors = [torch.empty(g.values[v].shape, dtype=getattr(torch, g.values[v].dtype), device="meta")
               for _, v in grads]
    first = min(dist._DEFAULT_FIRST_BUCKET_BYTES, bucket_bytes)
    indices, _ = dist._compute_bucket_assignment_by_size(tensors, [first, bucket_bytes], [False] * len(tensors),
                                                         list(range(len(tensors))))
    return [list(b) for b in indices]


@dataclass(frozen=True)
class DataParallel(Pass):
    """Make the step one rank of data-parallel training: buffers broadcast, gradients averaged in DDP's buckets."""

    name: ClassVar[str] = "ddp"
    requires = ()
    ensures = ()

    world: int = field(metadata={"help": "number of ranks (the gradient average divides by it)", "min": 1})
    bucket: str = field(default="25MiB", metadata={"help": "bucket size (DDP's bucket_cap_mb), bytes with a unit"})
    group: str = field(default="0", metadata={"help": "name of the process group (the default group is \"0\")"})
    broadcast_buffers: bool = field(default=True, metadata={"help": "broadcast module buffers from rank 0 "
                                                                    "before the forward, as DDP does"})
    reduce: bool = field(default=True, metadata={"help": "average the gradients (false: a micro-batch run under "
                                                         "DDP's no_sync(), which only broadcasts buffers)"})

    def run(self, module: Module) -> PassResult:
        from acir.analysis.budget import parse_budget
        from acir.passes.interleave_optimizer import interleave

        g = module.graph
        if cg.holds_collectives(g):
            raise PassFailed("the step already holds collectives (ddp or fsdp ran on it); capture it again")
        if not g.param_grads:
            raise PassFailed("the step records no parameter gradients (captured by an older acir?); capture it again")
        budget = parse_budget(self.bucket)
        if budget.percent is not None:
            raise PassFailed(f"ddp's bucket is a size in bytes (25MiB), not a percentage: {self.bucket!r}")
        interleaved = cg.interleaved(g)
        cg.optimizer_last(g)
        b = cg.Builder(g)
        broadcasts = self._broadcast_buffers(g, b) if self.broadcast_buffers else 0
        buckets = self._average_gradients(g, b, budget.bytes) if self.reduce else []
        if interleaved:
            interleave(g)
        for key in (PROFILE, LIVENESS, PLAN):  # computed for the single-process graph
            module.analyses.pop(key)
        return PassResult(True, {"buckets": len(buckets), "broadcast_buffers": broadcasts,
                                 "gradients": sum(len(x) for x in buckets),
                                 "largest_bucket_bytes": max((_bucket_bytes(g, x) for x in buckets), default=0)})

    def _broadcast_buffers(self, g: Graph, b: cg.Builder) -> int:
        """``broadcast_`` + ``wait_tensor`` of every module buffer before the first node; readers
        read the waited value."""
        new: list[Node] = []
        remap: dict[int, int] = {}
        for inp in g.inputs:
            if inp.kind is not InputKind.MODULE_BUFFER:
                continue
            v = g.values[inp.value]
            sent = b.like(v)
            waited = b.like(v)
            new.append(b.node(f"broadcast_{cg.safe(inp.name)}", cg.BROADCAST, [ValueRef(v.id), 0, self.group], None,
                              ValueRef(sent)))
            new.append(b.node(f"wait_{cg.safe(inp.name)}", cg.WAIT, [ValueRef(sent)], None, ValueRef(waited)))
            remap[v.id] = waited
        cg.remap_readers(g.nodes, remap)
        g.nodes = new + g.nodes
        return len(remap)

    def _average_gradients(self, g: Graph, b: cg.Builder, bucket_bytes: int) -> list[list[str]]:
        """Insert each bucket's scaled copies, all-reduce, wait and copies back (module docstring)."""
        producer = {vid: r for r, n in enumerate(g.nodes) for vid in n.output_ids()}
        ready = sorted(g.param_grads.items(), key=lambda kv: (producer.get(kv[1], -1), kv[0]))
        buckets = [[ready[i] for i in idx] for idx in bucket_assignment(g, ready, bucket_bytes)]
        buckets.sort(key=lambda bk: max(producer.get(v, -1) for _, v in bk))
        inserts: dict[int, list[Node]] = {}   # rank -> nodes to run just before it
        pending: list[Node] = []               # the previous bucket's wait and copies back
        remap: dict[int, int] = {}
        last_rank = -1
        for k, bk in enumerate(buckets):
            at = max(max(producer.get(v, -1) for _, v in bk) + 1, last_rank)
            launch = self._launch(g, b, k, bk)
            inserts.setdefault(at, []).extend(pending + launch.nodes)
            pending = launch.finish
            remap.update(launch.remap)
            for name, vid in launch.grads.items():
                g.param_grads[name] = vid
            last_rank = at
        first_opt = next((r for r, n in enumerate(g.nodes) if n.region is Region.OPTIMIZER), len(g.nodes))
        inserts.setdefault(max(first_opt, last_rank), []).extend(pending)
        out: list[Node] = []
        active: dict[int, int] = {}  # a local gradient is replaced by its average once its copy back ran
        copied_from = {new: old for old, new in remap.items()}
        for r, node in enumerate(g.nodes + [None]):
            for extra in inserts.get(r, ()):
                out.append(extra)
                for vid in extra.output_ids():
                    if vid in copied_from:
                        active[copied_from[vid]] = vid
            if node is not None:
                cg.remap_readers([node], active)
                out.append(node)
        g.nodes = out
        return [[name for name, _ in bk] for bk in buckets]

    def _launch(self, g: Graph, b: cg.Builder, k: int, bucket: list[tuple[str, int]]) -> _Launch:
        values = [g.values[v] for _, v in bucket]
        dtype, device = values[0].dtype, g.storage(values[0].storage).device
        numel = sum(v.numel for v in values)
        itemsize = values[0].nbytes // max(values[0].numel, 1) if values[0].numel else 4
        sid = b.storage(numel * itemsize, device)
        flat_like = Value(-1, (numel,), dtype, (1,), sid, 0, numel * itemsize, Role.COMM_BUFFER)
        flat = b.like(flat_like)
        nodes = [b.node(f"bucket{k}", "aten.empty.memory_format", [[numel]],
                        {"dtype": DType(dtype), "layout": Layout("strided"), "device": Device(device),
                         "pin_memory": False}, ValueRef(flat))]
        offset = 0
        slices = []
        for (name, gvid), v in zip(bucket, values):
            view = b.like(flat_like, sid, offset, v.shape, cg.contiguous(v.shape))
            nodes.append(b.node(f"bucket{k}_view", "aten.as_strided.default",
                                [ValueRef(flat), list(v.shape), list(cg.contiguous(v.shape)), offset], None,
                                ValueRef(view)))
            scaled = b.like(flat_like, sid, offset, v.shape, cg.contiguous(v.shape))
            nodes.append(b.node(f"bucket{k}_scale", "aten.mul.Scalar_out", [ValueRef(gvid), 1.0 / self.world],
                                {"out": ValueRef(view)}, ValueRef(scaled)))
            slices.append((name, gvid, v, offset))
            offset += v.numel
        reduced = b.like(flat_like)
        nodes.append(b.node(f"bucket{k}_all_reduce", cg.ALL_REDUCE, [ValueRef(flat), "sum", self.group], None,
                            ValueRef(reduced)))
        waited = b.like(flat_like)
        finish = [b.node(f"bucket{k}_wait", cg.WAIT, [ValueRef(reduced)], None, ValueRef(waited))]
        grads: dict[str, int] = {}
        remap: dict[int, int] = {}
        for name, gvid, v, off in slices:
            view = b.like(flat_like, sid, off, v.shape, cg.contiguous(v.shape))
            finish.append(b.node(f"bucket{k}_slice", "aten.as_strided.default",
                                 [ValueRef(waited), list(v.shape), list(cg.contiguous(v.shape)), off], None,
                                 ValueRef(view)))
            copied = b.like(v)
            finish.append(b.node(f"bucket{k}_copy", "aten.copy_.default", [ValueRef(gvid), ValueRef(view)], None,
                                 ValueRef(copied)))
            grads[name] = copied
            remap[gvid] = copied
        return _Launch(nodes, finish, grads, remap)


@dataclass
class _Launch:
    nodes: list[Node]           # the flat buffer, the scaled copies into it, the all-reduce
    finish: list[Node]          # the wait and the copies back, run when the next bucket starts
    grads: dict[str, int]       # parameter -> its averaged gradient value
    remap: dict[int, int]       # local gradient value -> averaged one (for every later reader)


def _bucket_bytes(g: Graph, names: list[str]) -> int:
    return sum(g.values[g.param_grads[n]].nbytes for n in names)
