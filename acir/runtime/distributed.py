"""Running a step that holds collectives: which process group, and what rebuilding a rank means.

An artifact made data-parallel (the ``ddp`` pass) names a process group in its collectives.
Where it runs:

* inside an initialised process group (``acir.compile``, a user's script): that group;
* under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` in the environment), as
  ``acir-run`` and ``acir-opt -p profile`` are started there: :func:`process_group` starts the
  default group (gloo on the CPU, NCCL on CUDA) with the environment's settings;
* anywhere else (planning N ranks on one machine): a group of one rank, so the graph runs
  (the all-reduce of one rank is the identity), with the caveat that collective times are
  not measured and the averaged gradient is the local one divided by N. A sharded step (the
  ``fsdp`` pass) gathers ``world`` shards, which one rank cannot: it runs on a group of
  ``world`` ranks in this one process (torch's ``fake`` backend, :func:`fake_group`), whose
  collectives return at once with uninitialised outputs: memory exact, values and times not.

A rank rebuilt from an artifact's provenance must start where DDP starts: parameters and
buffers broadcast from rank 0 (:func:`sync_like_ddp`), and its own batch (the zoo builds one
batch from the seed; each rank offsets the seed by its rank, so ranks see different data).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from acir.ir.graph import Module
from acir.ir.ops import COLLECTIVE_PREFIX


def has_collectives(module: Module) -> bool:
    return any(n.op.startswith(COLLECTIVE_PREFIX) for n in module.graph.nodes)


def world_size(module: Module) -> int:
    """The ranks the artifact was made for (the ``ddp`` or ``fsdp`` pass's ``world``), 1 without collectives."""
    for spec in module.header.pipeline:
        if spec.startswith(("ddp{", "fsdp{")):
            from acir.pipeline.syntax import parse_pipeline

            return int(parse_pipeline(spec)[0].options.get("world", "1"))
    return 1


def sharded_rank(module: Module) -> int | None:
    """The rank a sharded artifact (the ``fsdp`` pass) was made for; None when it is not sharded."""
    for spec in module.header.pipeline:
        if spec.startswith("fsdp{"):
            from acir.pipeline.syntax import parse_pipeline

            return int(parse_pipeline(spec)[0].options.get("rank", "0"))
    return None


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


@contextlib.contextmanager
def process_group(module: Module, device: str = "cpu") -> Iterator[str]:
    """A process group for ``module``'s collectives while the block runs; yields how it was had:
    ``"none"`` (no collectives), ``"existing"``, ``"torchrun"`` or ``"local"`` (one rank)."""
    if not has_collectives(module):
        yield "none"
        return
    import torch.distributed as dist

    from acir.errors import RunError

    if not dist.is_available():
        raise RunError("the step holds collectives, and this torch build has no torch.distributed")
    if dist.is_initialized():
        yield "existing"
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    rank_ = sharded_rank(module)
    if rank_ is not None and not under_torchrun():
        with fake_group(world_size(module), rank_):
            yield "local"
        return
    if under_torchrun():
        dist.init_process_group(backend)
        how = "torchrun"
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        how = "local"
    try:
        yield how
    finally:
        dist.destroy_process_group()


def sync_like_ddp(model) -> None:
    """What ``DistributedDataParallel(model)`` does when it wraps a model: parameters and buffers
    broadcast from rank 0 (a no-op on one rank)."""
    import torch.distributed as dist
    from torch.distributed.utils import _sync_module_states

    if dist.is_initialized() and dist.get_world_size() > 1:
        _sync_module_states(module=model, process_group=dist.group.WORLD, broadcast_bucket_size=250 * 1024 * 1024,
                            src=0, params_and_buffers_to_ignore=set())


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


# ---------------------------------------------------------------------------
# Sharded data parallelism (FSDP2): the parameters as ``fully_shard`` leaves them.


def find_blocks(model) -> list[str]:
    """The module paths FSDP2 users give ``fully_shard`` one by one: the outermost children of an
    ``nn.ModuleList`` or ``nn.Sequential`` of a class that occurs at least twice there and has
    submodules of its own (a transformer layer, a ResNet block; acir-bench's rule for blocks)."""
    from collections import Counter

    from torch import nn

    found: list[str] = []

    def walk(mod, prefix: str) -> None:
        kids = list(mod.named_children())
        chosen: set[str] = set()
        if isinstance(mod, (nn.ModuleList, nn.Sequential)):
            counts = Counter(type(c) for _, c in kids)
            chosen = {n for n, c in kids if counts[type(c)] >= 2 and next(c.children(), None) is not None}
        for n, c in kids:
            path = f"{prefix}.{n}" if prefix else n
            if n in chosen:
                found.append(path)
            else:
                walk(c, path)

    walk(model, "")
    return found


def fsdp_mesh(device: str, group=None):
    """The 1-D device mesh ``fully_shard`` builds: over the default group as FSDP2's default
    (``init_device_mesh``), or over ``group``."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

    if group is None or group is dist.group.WORLD:
        return init_device_mesh(device, (dist.get_world_size(),))
    return DeviceMesh.from_group(group, device)


def _shard_tensor(full, mesh, world: int, rank: int, padded: bool):
    """FSDP2's dim-0 shard of ``full`` for ``rank`` as a DTensor: ``torch.chunk`` (empty chunks
    for ranks past the last one); with ``padded``, the local tensor is the first rows of a
    zero-padded chunk-0-sized tensor (``FSDPParam._init_sharded_param``), else a contiguous copy
    (what ``zeros_like`` on a sharded parameter makes, as optimizer state is)."""
    import torch
    from torch.distributed.tensor import DTensor, Shard
    from torch.distributed.tensor._dtensor_spec import DTensorSpec, TensorMeta

    chunks = list(torch.chunk(full, world, dim=0))
    while len(chunks) < world:
        chunks.append(chunks[0].new_empty(0))
    mine = chunks[rank]
    length = mine.size(0) if mine.numel() > 0 else 0
    if padded:
        store = full.new_zeros(chunks[0].size())
        if length:
            store.narrow(0, 0, length).copy_(mine)
        local = store.narrow(0, 0, length)
    else:
        local = full.new_empty((length, *full.shape[1:]))
        if length:
            local.copy_(mine)
    spec = DTensorSpec(mesh, (Shard(0),), tensor_meta=TensorMeta(full.size(), full.stride(), full.dtype))
    return DTensor(local, spec, requires_grad=False)


def shard_like_fully_shard(model, optimizer=None, group=None) -> int:
    """Shard every parameter of ``model`` in place across ``group`` (default: the world) exactly
    as ``torch.distributed.fsdp.fully_shard`` leaves it: an ``nn.Parameter`` holding a DTensor
    with ``Shard(0)`` on a 1-D mesh, whose local tensor is this rank's ``torch.chunk`` of dim 0,
    the first rows of a zero-padded chunk-sized storage (the storage FSDP2's all-gather reads).
    As ``fully_shard``, nothing is broadcast: each rank keeps its own rows of its own tensor,
    so every rank must start from the same parameters (same seed, or a loaded checkpoint).

    The ``optimizer``'s param groups are pointed at the new parameters, and any state it holds
    is sharded the same way (a step counter stays as it is). Returns the parameter bytes this
    rank now holds (padded)."""
    import torch
    import torch.distributed as dist
    from torch import nn

    from acir.errors import UsageError

    world, rank = dist.get_world_size(group), dist.get_rank(group)
    old = list(model.parameters())  # alive until the end, so that no id is reused while they are looked up
    if not old:
        raise UsageError(f"the model ({type(model).__name__}) has no parameters to shard")
    mesh = fsdp_mesh(old[0].device.type, group)
    new: dict[int, nn.Parameter] = {}
    held = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if type(p).__name__ == "DTensor" or hasattr(p, "_local_tensor"):
                raise UsageError(f"parameter {name} is already a DTensor (fully_shard or acir sharded it); "
                                 "give acir.compile the unsharded model")
            if p.dim() == 0:
                raise UsageError(f"parameter {name} is a scalar: FSDP2 shards dim 0 and cannot shard it "
                                 "(fully_shard raises too); make it a 1-element tensor")
            if not p.is_contiguous():
                raise UsageError(f"parameter {name} is not contiguous; FSDP2 does not support that either")
            dt = _shard_tensor(p.detach(), mesh, world, rank, padded=True)
            new[id(p)] = nn.Parameter(dt, requires_grad=p.requires_grad)
            held += dt._local_tensor.untyped_storage().nbytes()
        for mod in model.modules():
            for key, p in list(mod._parameters.items()):
                if p is not None and id(p) in new:
                    mod._parameters[key] = new[id(p)]
        if optimizer is not None:
            old_state = optimizer.state
            moved = {}
            for g in optimizer.param_groups:
                for i, p in enumerate(g["params"]):
                    q = new.get(id(p))
                    if q is None:
                        continue
                    g["params"][i] = q
                    if p in old_state:
                        moved[q] = {k: _shard_tensor(v, mesh, world, rank, padded=False)
                                    if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape == p.shape else v
                                    for k, v in old_state[p].items()}
            for q, s in moved.items():
                old_state[q] = s
            for p in [p for p in list(old_state) if id(p) in new]:
                del old_state[p]
    del old
    return held


def local_tensor(t):
    """A DTensor's local tensor (what a sharded step reads and updates in place), else ``t``."""
    local = getattr(t, "_local_tensor", None)
    return t if local is None else local


@contextlib.contextmanager
def fake_group(world: int, rank: int = 0) -> Iterator[None]:
    """The default process group, while the block runs, as ``world`` ranks in this one process
    (torch's ``fake`` backend): rank ``rank``'s collectives return at once, with outputs of the
    right sizes left uninitialised, so a sharded step of N ranks runs (and its memory is
    measured) on one machine; its numbers mean nothing."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def prepare_rank(module: Module, model, optimizer) -> None:
    """Start a rebuilt model where this rank starts: as DDP's constructor leaves it for a ``ddp``
    artifact (:func:`sync_like_ddp`), sharded as ``fully_shard`` leaves it for an ``fsdp`` one
    (:func:`shard_like_fully_shard`, the optimizer pointed at the shards)."""
    if sharded_rank(module) is not None:
        shard_like_fully_shard(model, optimizer)
    else:
        sync_like_ddp(model)
