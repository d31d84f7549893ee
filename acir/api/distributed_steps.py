"""``acir.compile`` across ranks: the process group's setup, the data-parallel passes applied to a
captured step, and planning a sharded step so that every rank runs the same collectives.

:func:`distributed_setup` checks the group and the model (DDP: the same parameters on every rank,
broadcast from rank 0; FSDP: the blocks ``fully_shard`` is applied to); :func:`make_data_parallel`
turns a single-process step into one rank's (``ddp`` or ``fsdp{world=N}``). With a budget, a
sharded step is planned on rank 0's profile and every rank takes rank 0's plan
(:func:`plan_sharded`, :func:`rank0_plan_everywhere`): a re-gather is a collective, so all ranks
must replay the same ones. :func:`same_graph_on_every_rank` refuses a step whose graph differs
between ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acir.errors import RunError, UsageError
from acir.ir.analyses import PLAN
from acir.ir.graph import Module

if TYPE_CHECKING:
    from acir.api.steps import _Options

__all__ = ["Distributed", "distributed_setup", "every_rank_planned", "make_data_parallel", "plan_sharded",
           "rank0_plan_everywhere", "same_graph_on_every_rank", "unsharded_stand_ins"]


@dataclass(frozen=True)
class Distributed:
    """How the step runs across ranks: PyTorch's data parallelism (``"ddp"``) or FSDP2's sharded
    data parallelism (``"fsdp"``) on a process group."""

    kind: str
    group: Any            # the torch.distributed ProcessGroup
    world: int
    rank: int
    bucket_bytes: int
    blocks: tuple[str, ...] = ()  # fsdp: the modules fully_shard is applied to besides the root



def make_data_parallel(module: Module, d: Distributed, reduce: bool = True, broadcast: bool = True,
                        reshard: bool = True) -> None:
    """Run the ``ddp`` or ``fsdp`` pass for this process group (recorded in the header's pipeline);
    ``reduce=False``: a micro-batch that does not step, as DDP runs it under ``no_sync()``;
    ``reshard=False``: every gathered parameter kept from the forward to the backward, so that
    a planner decides which to gather again (each is a candidate, its gather the replay)."""
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import instantiate
    from acir.pipeline.syntax import PassSpec

    if d.kind == "fsdp":
        spec = PassSpec("fsdp", {"world": str(d.world), "rank": str(d.rank), "group": d.group.group_name,
                                 "blocks": " ".join(d.blocks),
                                 "reshard-after-forward": "true" if reshard else "false"})
    else:
        spec = PassSpec("ddp", {"world": str(d.world), "bucket": str(d.bucket_bytes), "group": d.group.group_name,
                                "reduce": "true" if reduce else "false",
                                "broadcast-buffers": "true" if broadcast else "false"})
    PassManager([instantiate(spec)]).run(module)


class unsharded_stand_ins:  # noqa: N801 - used as a context manager, named like one
    """While a sharded model's step is captured: each DTensor parameter of the model, and its
    optimizer state, replaced by a fake tensor of its full shape (no memory, no collective), so
    that the trace is the single-process step, which the ``fsdp`` pass then shards. Yields a
    stand-in optimizer (the same class, groups and hyper-parameters, on the stand-ins) and the
    call's updates on the stand-ins; the model's parameters are put back on exit."""

    def __init__(self, model, optimizer, updates) -> None:
        self.model, self.optimizer, self.updates = model, optimizer, updates
        self.swapped: list[tuple[Any, str, Any]] = []

    def __enter__(self):
        import dataclasses
        from collections import defaultdict

        import torch
        from torch._subclasses.fake_tensor import FakeTensorMode

        from acir.frontend.optim.updates import Updates

        mode = FakeTensorMode(allow_non_fake_inputs=True)

        def stand_in(t):
            with mode:
                return torch.empty(t.shape, dtype=t.dtype, device=t.device)

        full: dict[int, torch.nn.Parameter] = {}
        for p in self.model.parameters():
            full[id(p)] = torch.nn.Parameter(stand_in(p), requires_grad=p.requires_grad)
        for mod in self.model.modules():
            for key, p in list(mod._parameters.items()):
                if p is not None and id(p) in full:
                    self.swapped.append((mod, key, p))
                    mod._parameters[key] = full[id(p)]
        opt = object.__new__(type(self.optimizer))
        opt.__dict__.update({k: v for k, v in vars(self.optimizer).items() if k != "step"})
        opt.param_groups = [{**g, "params": [full[id(p)] for p in g["params"]]} for g in self.optimizer.param_groups]
        opt.state = defaultdict(dict)
        for u in self.updates.items:
            state = self.optimizer.state.get(u.param, {})
            opt.state[full[id(u.param)]] = {k: stand_in(v) if hasattr(v, "_local_tensor") else v
                                            for k, v in state.items()}
        items = [dataclasses.replace(u, param=full[id(u.param)]) for u in self.updates.items]
        return opt, Updates(self.updates.rule, items)

    def __exit__(self, *exc) -> None:
        for mod, key, p in self.swapped:
            mod._parameters[key] = p


def plan_sharded(module: Module, model, optimizer, batch, o: _Options) -> tuple:
    """``plan_and_rewrite`` for an fsdp step: profile on copies of the sharded model and optimizer
    (every rank runs the same collectives), plan every rank on rank 0's times, rewrite. Returns
    the module as it was before planning (:func:`rank0_plan_everywhere` may rewrite it again)."""
    import copy

    import torch
    import torch.distributed as dist

    from acir.api.planning import _snapshot, plan_within, planner_pass
    from acir.ir.analyses import PROFILE
    from acir.passes.profile import profile_step
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    plan_pass = planner_pass(o.planner, o.budget)
    cpu_rng = torch.random.get_rng_state()
    try:
        work_model, work_opt = copy.deepcopy((model, optimizer))
        module.analyses[PROFILE] = profile_step(module, work_model, work_opt, batch, o.profile_reps, 1)
        del work_model, work_opt
    finally:
        torch.random.set_rng_state(cpu_rng)
    shared = [module.analyses[PROFILE]]
    dist.broadcast_object_list(shared, src=0, group=o.distributed.group)
    module.analyses[PROFILE] = shared[0]
    module.header.pipeline.append(f"profile{{reps={o.profile_reps},warmup=1}}")
    PassManager(build_pipeline("liveness"), verify=o.verify).run(module)
    unplanned = _snapshot(module)
    plan_within(module, plan_pass, o.verify)
    return unplanned


def rank0_plan_everywhere(module: Module, unplanned: tuple, d: Distributed, verify: bool) -> None:
    """Make every rank's plan rank 0's. A sharded step's replays run collectives (a parameter
    gathered again from its shard), so every rank must replay the same ones at the same points.
    The ranks plan on the same times, but the last ranks' shards can be smaller (FSDP2 pads the
    parameters' storage, not their optimizer state), so their memory, and from it their plans,
    can differ: a rank whose plan is not rank 0's is rewritten from ``unplanned`` with rank 0's
    plan, and its simulated peak must then be within the budget rank 0 planned to."""
    import dataclasses

    import torch.distributed as dist

    from acir.api.planning import _snapshot
    from acir.errors import RewriteOverBudget
    from acir.ir.analyses import LIVENESS
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    plan = module.analyses[PLAN]
    mine = sorted((t.storage, t.retained) for t in plan.recomputed())
    shared = [(mine, plan)]
    dist.broadcast_object_list(shared, src=0, group=d.group)
    theirs, plan0 = shared[0]
    if theirs == mine:
        return
    module.header, module.graph, module.analyses = _snapshot(unplanned)
    module.analyses[PLAN] = dataclasses.replace(plan0, revision=module.header.revision)
    module.header.pipeline.append(plan0.planner)
    PassManager(build_pipeline("rewrite"), verify=verify).run(module)
    peak = module.analyses[LIVENESS].simulated_peak_bytes
    if peak > plan0.budget_bytes:  # its shards are no larger than rank 0's, so this is not expected
        raise RewriteOverBudget(plan0.budget_bytes, peak, plan0.planner.split("{")[0], 1)


def every_rank_planned(failed, d: Distributed) -> None:
    """Raise on every rank when planning failed on any (each rank's shards and so its budget in
    bytes can differ): this rank's own error, or a RunError naming the ranks that failed."""
    import torch.distributed as dist

    every: list = [None] * d.world
    dist.all_gather_object(every, None if failed is None else f"{type(failed).__name__}: {failed}", group=d.group)
    if failed is not None:
        raise failed
    bad = {r: why for r, why in enumerate(every) if why is not None}
    if bad:
        r, why = next(iter(bad.items()))
        raise RunError(f"rank {d.rank} of {d.world}: rank{'s' if len(bad) > 1 else ''} "
                       f"{', '.join(map(str, bad))} could not plan the step ({why})")


def same_graph_on_every_rank(module: Module, d: Distributed) -> None:
    """Every rank must run the same collectives on the same shapes: compare a digest of the graph
    across ranks before the first call, and name the ranks that differ."""
    import hashlib

    import torch.distributed as dist

    from acir.ir.graph import InputKind

    sharded = {InputKind.PARAMETER, InputKind.OPTIMIZER_STATE} if d.kind == "fsdp" else set()
    h = hashlib.sha256()
    for n in module.graph.nodes:
        if n.op.startswith("_c10d_functional."):
            shapes = [module.graph.values[v].shape for v in n.input_ids()]
            h.update(f"{n.op}{shapes}{n.args[1:]}".encode())
    for i in module.graph.inputs:  # the model's and the optimizer's tensors (each rank's batch may differ)
        if i.kind not in (InputKind.PARAMETER, InputKind.MODULE_BUFFER, InputKind.OPTIMIZER_STATE):
            continue
        v = module.graph.values[i.value]
        shape = "" if i.kind in sharded else v.shape  # each rank holds its own rows of a sharded tensor
        h.update(f"{i.kind.name}{i.name}{shape}{v.dtype}".encode())
    mine = h.hexdigest()
    every: list = [None] * d.world
    dist.all_gather_object(every, mine, group=d.group)
    differ = [r for r, x in enumerate(every) if x != every[0]]
    if differ:
        raise RunError(f"rank {d.rank}: the ranks captured different steps (ranks {differ} differ from rank 0: "
                       "other parameters, optimizer state, gradient buckets or collectives); every rank must compile "
                       "the same model and optimizer with the same options")


def distributed_setup(kind: str | None, process_group, bucket_cap_mb, model, optimizer=None) -> Distributed | None:
    """Check the process group and start as DDP starts (parameters and buffers broadcast from
    rank 0) or as ``fully_shard`` leaves a model (every parameter sharded in place, nothing sent)."""
    if kind is None:
        return None
    if kind not in ("ddp", "fsdp"):
        raise UsageError(f"distributed must be \"ddp\" or \"fsdp\" (or None), not {kind!r}")
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise UsageError(f'distributed="{kind}" runs inside an initialised process group: call '
                         "torch.distributed.init_process_group first (torchrun sets up its environment)")
    group = process_group if process_group is not None else dist.group.WORLD
    if kind == "fsdp":
        from acir.runtime.distributed import find_blocks, shard_like_fully_shard

        blocks = tuple(find_blocks(model))
        shard_like_fully_shard(model, optimizer, None if process_group is None else group)
        return Distributed(kind, group, dist.get_world_size(group), dist.get_rank(group), 0, blocks)
    if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or not bucket_cap_mb > 0:
        raise UsageError(f"bucket_cap_mb must be a positive number of MiB, not {bucket_cap_mb!r}")
    from torch.distributed.utils import _sync_module_states, _verify_param_shape_across_processes

    params = [p for p in model.parameters() if p.requires_grad]
    _verify_param_shape_across_processes(group, params)
    _sync_module_states(module=model, process_group=group, broadcast_bucket_size=250 * 1024 * 1024, src=0,
                        params_and_buffers_to_ignore=set())
    return Distributed(kind, group, dist.get_world_size(group), dist.get_rank(group), int(bucket_cap_mb * 2**20))
