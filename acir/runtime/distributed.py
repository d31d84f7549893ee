"""Running a step that holds collectives: which process group, and what rebuilding a rank means.

An artifact made data-parallel (the ``ddp`` pass) names a process group in its collectives.
Where it runs:

* inside an initialised process group (``acir.compile``, a user's script): that group;
* under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` in the environment), as
  ``acir-run`` and ``acir-opt -p profile`` are started there: :func:`process_group` starts the
  default group (gloo on the CPU, NCCL on CUDA) with the environment's settings;
* anywhere else (planning N ranks on one machine): a group of one rank, so the graph runs
  (the all-reduce of one rank is the identity), with the caveat that collective times are
  not measured and the averaged gradient is the local one divided by N.

A rank rebuilt from an artifact's provenance must start where DDP starts: parameters and
buffers broadcast from rank 0 (:func:`sync_like_ddp`), and its own batch (the zoo builds one
batch from the seed; each rank offsets the seed by its rank, so ranks see different data).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from acir.ir.graph import Module

COLLECTIVE_PREFIX = "_c10d_functional."


def has_collectives(module: Module) -> bool:
    return any(n.op.startswith(COLLECTIVE_PREFIX) for n in module.graph.nodes)


def world_size(module: Module) -> int:
    """The ranks the artifact was made for (the ``ddp`` pass's ``world``), 1 without collectives."""
    for spec in module.header.pipeline:
        if spec.startswith("ddp{"):
            from acir.pipeline.syntax import parse_pipeline

            return int(parse_pipeline(spec)[0].options.get("world", "1"))
    return 1


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
