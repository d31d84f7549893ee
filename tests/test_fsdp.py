"""Sharded data parallelism: acir.compile(distributed="fsdp") against FSDP2's fully_shard, bit for bit; the fsdp pass.

Ranks are CPU processes (gloo, loopback) with a timeout, so a failed rank never hangs the
suite. Each runs the same loop twice from the same start: once with PyTorch's FSDP2 as it
ships (``fully_shard`` on every block and on the root, eager, the optimizer on the DTensor
parameters), once with the compiled step on a model ``acir.compile`` shards in place. After
every step the loss, every full parameter (``full_tensor()``), every buffer and every
optimizer state entry must be equal (``torch.equal``) on every rank. Planning N ranks on one
machine (torch's ``fake`` process group) checks the per-rank memory: simulated = measured.
"""

from __future__ import annotations

import copy
import os
import socket
import traceback
from datetime import timedelta

import pytest
import torch
from torch import nn

STEPS = 3


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 3 * d)
        self.fc2 = nn.Linear(3 * d, d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return x + self.drop(self.fc2(torch.relu(self.fc1(self.norm(x)))))


class Net(nn.Module):
    """Blocks (what fully_shard is applied to) and root parameters around them: an input layer
    with batch norm, a head, and a 1-element scale (rank 1 of 2 holds none of it); odd sizes,
    so most shards are padded."""

    def __init__(self, d: int = 7, depth: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(8, d)
        self.bn = nn.BatchNorm1d(d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.head = nn.Linear(d, classes)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        x = torch.relu(self.bn(self.inp(x)))
        for b in self.blocks:
            x = b(x)
        return self.head(x) * self.scale


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _batch(rank: int, k: int, size: int = 32):
    g = torch.Generator().manual_seed(1000 * rank + k)
    return torch.randn(size, 8, generator=g), torch.randint(0, 3, (size,), generator=g)


def _sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(world: int, cases: list[dict], tmp_path, target, timeout: float = 240.0) -> list[str]:
    """Run ``target(rank, world, port, cases, out)`` on ``world`` spawned ranks; what each wrote."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    port = _free_port()
    outs = [str(tmp_path / f"rank{r}.txt") for r in range(world)]
    procs = [ctx.Process(target=target, args=(r, world, port, cases, outs[r])) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    return [open(o).read() if os.path.exists(o) else f"rank {r} wrote nothing (exit code {p.exitcode})"
            for r, (o, p) in enumerate(zip(outs, procs))]


def _full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _compare(k: int, model, ref, opt, ref_opt) -> None:
    for (n, a), (_, b) in zip(model.named_parameters(), ref.named_parameters()):
        assert type(a) is type(b) and a.placements == b.placements, f"{n}: {type(a)} vs {type(b)}"
        assert a._local_tensor.shape == b._local_tensor.shape, f"{n}: local shard differs in shape"
        assert torch.equal(_full(a), _full(b)), f"step {k}: parameter {n} differs"
    for (n, a), (_, b) in zip(model.named_buffers(), ref.named_buffers()):
        assert torch.equal(a, b), f"step {k}: buffer {n} differs"
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        sa, sb = opt.state.get(p, {}), ref_opt.state.get(q, {})
        assert sorted(sa) == sorted(sb), f"step {k}: optimizer state keys of {n}: {sorted(sa)} vs {sorted(sb)}"
        for key in sa:
            assert torch.equal(_full(sa[key]), _full(sb[key])), f"step {k}: optimizer state {n}:{key} differs"


def _worker(rank: int, world: int, port: int, cases: list[dict], out: str) -> None:
    """Each case in turn, in one process group (a rank's start-up costs seconds)."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
        for case in cases:
            _train(rank, case, out)
        with open(out, "w") as f:
            f.write("ok")
    except BaseException:
        with open(out, "w") as f:
            f.write(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(rank: int, case: dict, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    import acir

    torch.manual_seed(0)  # the same start on every rank: fully_shard keeps each rank's own rows
    model = Net(depth=case.get("depth", 3))
    ref = copy.deepcopy(model)
    for block in ref.blocks:
        fully_shard(block)
    fully_shard(ref)
    make = case["optimizer"]
    opt, ref_opt = make(model.parameters()), make(ref.parameters())
    step = acir.compile(model, opt, loss_fn, _batch(rank, 0), distributed="fsdp", budget=case.get("budget"),
                        quiet=True, profile_reps=1)
    if case.get("budget"):
        assert step.plan is not None and any(t.decision.name == "RECOMPUTE" for t in step.plan.tensors), \
            "the budget recomputes nothing: the test would not test a rewrite"
    steps = case.get("steps", STEPS)
    for k in range(steps):
        last = k == steps - 1 and case.get("shrink", True)
        b = _batch(rank, k, 20 if last else 32)  # a smaller last batch is captured again
        torch.manual_seed(7 + 100 * rank + k)
        got = step(b)
        torch.manual_seed(7 + 100 * rank + k)
        want = loss_fn(ref, b)
        want.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        assert torch.equal(got, want.detach()), f"{case}, step {k}: loss {got.item()} vs {want.item()}"
        _compare(k, model, ref, opt, ref_opt)
    if case.get("checkpoint"):
        _checkpoints(model, ref, out)


def _checkpoints(model, ref, out: str) -> None:
    """The compiled model's state is FSDP2's: full state dicts agree, and a distributed checkpoint
    of it loads into a fresh fully_shard model that then holds the same parameters."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    full = StateDictOptions(full_state_dict=True)
    mine, theirs = get_model_state_dict(model, options=full), get_model_state_dict(ref, options=full)
    assert sorted(mine) == sorted(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    where = os.path.join(os.path.dirname(out), "dcp")
    dcp.save(get_model_state_dict(model), checkpoint_id=where)
    torch.manual_seed(123)
    fresh = Net()
    for block in fresh.blocks:
        fully_shard(block)
    fully_shard(fresh)
    state = get_model_state_dict(fresh)
    dcp.load(state, checkpoint_id=where)
    fresh.load_state_dict(state)
    for (n, a), b in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(a.full_tensor(), b.full_tensor()), f"{n} did not round-trip through dcp"


@pytest.mark.parametrize("world,cases", [(2, [{"optimizer": _sgd, "checkpoint": True},
                                                {"optimizer": _adamw, "budget": "90%", "steps": 2, "shrink": False}]),
                                         (4, [{"optimizer": _adamw, "steps": 2, "depth": 2, "shrink": False}])],
                         ids=["2-ranks-sgd-checkpoint-adamw-budget", "4-ranks-adamw"])
def test_fsdp_matches_fully_shard(world, cases, tmp_path):
    results = run_ranks(world, cases, tmp_path, _worker)
    assert results == ["ok"] * world, "\n".join(results)


# -- the pass, on one machine ---------------------------------------------------------------------


def _single_process_step(d: int = 7, depth: int = 3, batch: int = 32):
    import acir

    torch.manual_seed(0)
    model = Net(d, depth)
    opt = _adamw(model.parameters())
    b = _batch(0, 0, batch)
    return model, opt, b, acir.compile(model, opt, loss_fn, b, quiet=True).module


def _sharded(module, world: int, rank: int, then: str = "liveness", reshard: bool = True):
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    mod = copy.deepcopy(module)
    text = f"fsdp{{world={world},rank={rank},reshard-after-forward={str(reshard).lower()}}}" + \
        (f",{then}" if then else "")
    PassManager(build_pipeline(text), verify=True).run(mod)
    return mod


def test_the_pass_shards_storage_and_places_the_collectives():
    from acir.ir.verify import verify

    model, _, _, module = _single_process_step()
    mod = _sharded(module, 2, 1)
    verify(mod)  # re-derived on meta tensors: every shape, stride and storage size
    g = mod.graph
    params = {i.name: g.values[i.value] for i in g.inputs if i.kind.name == "PARAMETER"}
    assert params["blocks.0.fc1.weight"].shape == (10, 7)                 # 21 rows: 11 on rank 0, 10 on rank 1
    assert g.storage(params["blocks.0.fc1.weight"].storage).nbytes == 11 * 7 * 4  # padded as FSDP2 pads
    assert params["scale"].shape == (0,)                                   # one element: rank 1 holds none
    ops = [n.op.split(".")[1] for n in g.nodes if n.region.name == "COMMUNICATION"]
    gathers = [n for n in g.nodes if n.op.endswith("all_gather_into_tensor.default")]
    re_gathers = [n for n in gathers if n.name.startswith("fsdp_re_gather")]
    # every parameter gathered once for the forward; the blocks' weights and norms again for the backward
    assert len(gathers) - len(re_gathers) == len(params)
    assert {n.module.rsplit(".", 1)[0] for n in re_gathers} == {"blocks.0", "blocks.1", "blocks.2"}
    assert ops.count("reduce_scatter_tensor") == 4                         # three blocks and the root
    for n in gathers:  # a parameter's gather reads its shard
        src = g.values[n.args[0].id]
        assert src.storage in {v.storage for v in params.values()}
    for name, vid in g.param_grads.items():
        assert g.values[vid].shape == params[name].shape and g.values[vid].role.name == "GRAD"


@pytest.mark.parametrize("world", [2, 4])
def test_simulated_peak_equals_measured_on_every_rank(world):
    from acir.analysis.simulator import simulate
    from acir.runtime.distributed import fake_group, shard_like_fully_shard
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import measure_peak

    model, opt, b, module = _single_process_step()
    for rank in (0, world - 1):
        mod = _sharded(module, world, rank)
        m, o = copy.deepcopy((model, opt))
        with fake_group(world, rank):
            shard_like_fully_shard(m, o)
            step = BoundStep(mod, m, o)
            measured = measure_peak(lambda: step.run(b), step.inputs(b))  # noqa: B023 - called at once
        assert simulate(mod.graph).peak_bytes == measured, f"rank {rank} of {world}"


def _floor(module, model, opt, b, world: int) -> tuple[int, int]:
    """(the smallest peak recomputation reaches, the bytes held throughout), rank 0 of ``world``
    planned on this machine."""
    import contextlib

    from acir.analysis.candidates import build
    from acir.analysis.problem import known_floor
    from acir.analysis.simulator import simulate
    from acir.ir.analyses import PROFILE
    from acir.passes.profile import profile_step
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline
    from acir.runtime.distributed import fake_group, shard_like_fully_shard

    mod = copy.deepcopy(module) if world == 1 else _sharded(module, world, 0, "")
    m, o = copy.deepcopy((model, opt))
    with fake_group(world, 0) if world > 1 else contextlib.nullcontext():
        if world > 1:
            shard_like_fully_shard(m, o)
        mod.analyses[PROFILE] = profile_step(mod, m, o, b, reps=1, warmup=0)
    PassManager(build_pipeline("liveness")).run(mod)
    return known_floor(build(mod).problem), simulate(mod.graph).persistent_bytes


def test_the_floor_falls_as_one_over_n():
    """Parameters, gradients and optimizer state shrink as 1/N; what does not is one block's
    gathered parameters and scattered gradients, and the activations (here mostly the saved
    random-number states of the dropouts, 5056 bytes each)."""
    model, opt, b, module = _single_process_step(d=32, depth=12, batch=4)  # parameters and their state dominate
    floors, held = zip(*(_floor(module, model, opt, b, w) for w in (1, 2, 4)))
    assert floors[0] / floors[1] > 1.5 and floors[1] / floors[2] > 1.5, floors
    assert 1.9 < held[0] / held[1] < 2.0 and 1.9 < held[1] / held[2] < 2.0, held  # the batch is not sharded


def test_refusals():
    import acir
    from acir.errors import PassFailed, UsageError

    model, opt, b, module = _single_process_step()
    with pytest.raises(PassFailed, match="already holds collectives"):
        _sharded(_sharded(module, 2, 0, ""), 2, 0)
    with pytest.raises(Exception, match="rank 2 is not one of the 2 ranks"):
        _sharded(module, 2, 2)
    other = Net()
    with pytest.raises(UsageError, match="clip_grad_norm"):
        acir.compile(other, _sgd(other.parameters()), loss_fn, b, distributed="fsdp", clip_grad_norm=1.0)
    clipped = acir.compile(model, opt, loss_fn, b, quiet=True, clip_grad_norm=1.0).module
    with pytest.raises(PassFailed, match="gradient clipping"):
        _sharded(clipped, 2, 0)


def test_groups_are_fsdp2s():
    from acir.passes.fsdp import _auto_blocks, fsdp_groups, shard_rows

    names = [n for n, _ in Net().named_parameters()]
    blocks = _auto_blocks(names)
    assert blocks == ["blocks.0", "blocks.1", "blocks.2"]
    groups = fsdp_groups(names, blocks)
    assert [g for g, _ in groups] == blocks + [""]
    # FSDP2's post-order: each module's own parameters after its children's (the root's scale last)
    assert groups[-1][1] == ["inp.weight", "inp.bias", "bn.weight", "bn.bias", "head.weight", "head.bias", "scale"]
    assert groups[0][1][:2] == ["blocks.0.norm.weight", "blocks.0.norm.bias"]
    assert [shard_rows(7, 4, r) for r in range(4)] == [(2, 2), (2, 2), (2, 2), (2, 1)]
    assert [shard_rows(1, 2, r) for r in range(2)] == [(1, 1), (1, 0)]
    assert [shard_rows(10, 4, r) for r in range(4)] == [(3, 3), (3, 3), (3, 3), (3, 1)]


@pytest.mark.parametrize("budget", ["80%", "60%", "40%"])
def test_a_budget_holds_after_the_rewrite(budget):
    """With a budget the step keeps its gathered parameters and the plan chooses which to gather
    again; a replay that reads a block's weight reads it as a priced source (kept, or gathered
    again there), so the rewritten step simulates exactly what the plan predicted, within the
    budget asked (acir.compile would plan again if not: acir.api.planning.plan_within)."""
    import acir
    from acir.analysis.budget import parse_budget
    from acir.errors import InfeasibleBudget
    from acir.ir.analyses import LIVENESS
    from acir.runtime.distributed import fake_group

    with fake_group(2, 0):
        torch.manual_seed(0)
        model = Net(d=32, depth=3)
        opt = _adamw(model.parameters())
        b = _batch(0, 0, 64)
        try:
            step = acir.compile(model, opt, loss_fn, b, distributed="fsdp", budget=budget, quiet=True,
                                profile_reps=1)
        except InfeasibleBudget as e:
            assert str(e).startswith("mutwo:")  # the plan cannot fit, or no rewritten step did (RewriteOverBudget)
            return
    live = step.module.analyses[LIVENESS]
    target = parse_budget(budget).resolve(live.persistent_bytes, step.plan.no_ac_peak_bytes)  # as the planner does
    assert live.simulated_peak_bytes <= target, (live.simulated_peak_bytes, target, step.plan.budget_bytes)
    assert live.simulated_peak_bytes == step.plan.predicted_peak_bytes


def test_gathering_again_is_a_planning_decision():
    """Kept from the forward (reshard-after-forward=false), each gathered parameter is a candidate
    like an activation: the planner frees the ones it pays to free and the rewrite gathers them
    again from the shard before their backward use, priced at the gather's time; the plan's
    prediction is what the rewritten step simulates, within the budget."""
    from acir.analysis.candidates import build
    from acir.analysis.simulator import simulate
    from acir.ir.analyses import PLAN
    from acir.ir.verify import verify
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    _, _, _, module = _single_process_step(d=32, batch=64)
    kept = _sharded(module, 2, 0, "profile{method=analytic},liveness", reshard=False)
    cands = build(kept)
    gathered = [i for i, chain in enumerate(cands.chains)
                if any(cands.graph.nodes[r].op.endswith("all_gather_into_tensor.default") for r in chain)]
    assert gathered and all(not cands.reasons[i] for i in gathered)  # every block weight may be gathered again
    peak = simulate(kept.graph).peak_bytes
    budget = peak - sum(cands.problem.sizes[i] for i in gathered) // 2
    PassManager(build_pipeline(f"mutwo{{budget={budget}B}},rewrite"), verify=True).run(kept)
    verify(kept)
    plan = kept.analyses[PLAN]
    regathers = [n for n in kept.graph.nodes if n.op.endswith("all_gather_into_tensor.default") and n.recompute_of]
    assert regathers and all(n.region.name == "COMMUNICATION" for n in regathers)
    assert simulate(kept.graph).peak_bytes == plan.predicted_peak_bytes <= budget


def test_a_tied_weight_is_never_read_by_a_replay_after_its_last_use():
    """BERT ties its word embedding to the masked-LM decoder: the gathered weight is last read
    early in the backward (the decoder's), while a replay of an embedding-side activation at the
    end of the backward would read it again and keep it alive, unpriced. Such a replay is not a
    candidate, so whatever the plan, the rewritten step simulates what it predicted."""
    import acir
    from acir.analysis.candidates import build
    from acir.analysis.simulator import simulate
    from acir.frontend.step import CaptureOptions, build_workload
    from acir.ir.analyses import PLAN
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    wl, opt = build_workload(CaptureOptions("bert-tiny", 2, 16, 0, "adamw", 1e-3, 0, "cpu"))
    module = acir.compile(wl.model, opt, wl.loss_fn, wl.batch, quiet=True).module
    kept = _sharded(module, 4, 0, "profile{method=analytic},liveness", reshard=False)
    reasons = build(kept).reasons
    assert any("after that tensor's last use" in r for r in reasons)
    for planner in ("recompute-all", "mutwo{budget=1%}"):
        mod = copy.deepcopy(kept)
        try:
            PassManager(build_pipeline(f"{planner},rewrite"), verify=True).run(mod)
        except acir.errors.InfeasibleBudget:
            mod = copy.deepcopy(kept)  # at the floor instead
            PassManager(build_pipeline(f"mutwo{{budget={_floor_of(kept)}B}},rewrite"), verify=True).run(mod)
        assert simulate(mod.graph).peak_bytes == mod.analyses[PLAN].predicted_peak_bytes, planner


def _floor_of(module) -> int:
    from acir.analysis.candidates import build
    from acir.passes.mutwo import block_start, floor_with

    cands = build(module)
    return floor_with(block_start(cands))(cands.problem)
