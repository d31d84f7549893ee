"""Sharded data-parallel training with acir, checked against PyTorch's FSDP2 (``fully_shard``) as it ships.

    torchrun --nproc-per-node 2 examples/fsdp_train.py            # CPU ranks, gloo
    torchrun --nproc-per-node 2 examples/fsdp_train.py --budget 80%

Every rank trains a small transformer (a stack of attention layers and a head) on its own
batches twice from the same start: once with ``fully_shard`` applied to every layer and to
the root and an eager loop, once with ``acir.compile(..., distributed="fsdp")``, which shards
the model's parameters in place as ``fully_shard`` would. After every step it prints whether
the two runs are equal bit for bit (loss, every full parameter, every buffer), and at the
end the parameter bytes this rank holds, and this rank's peak of live tensor memory over one
more step, measured and as acir's simulator predicts it from the IR.
Dropout is on: each rank draws its own masks, the same in both runs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

import acir


class Layer(nn.Module):
    def __init__(self, d: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(0.1), nn.Linear(4 * d, d))

    def forward(self, x):
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.mlp(x))


class Model(nn.Module):
    def __init__(self, d: int = 64, depth: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Layer(d) for _ in range(depth))  # the blocks fully_shard is applied to
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean(dim=1))


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--budget", default=None, help="a memory budget for the compiled step (e.g. 80%% or 20MiB)")
    args = ap.parse_args()

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same start on every rank: like fully_shard, acir keeps each rank's own rows
    model = Model()
    ref = copy.deepcopy(model)
    for layer in ref.layers:
        fully_shard(layer)
    fully_shard(ref)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    ref_sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=args.steps)

    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    batches = [(torch.randn(16, 32, 64, generator=g), torch.randint(0, 10, (16,), generator=g))
               for _ in range(args.steps)]
    # shards model's parameters in place (DTensors, as fully_shard leaves them) and points opt at them
    step = acir.compile(model, opt, loss_fn, batches[0], distributed="fsdp", budget=args.budget, quiet=rank != 0)
    times: dict[str, list[float]] = {"acir": [], "FSDP2": []}
    for k, batch in enumerate(batches):
        torch.manual_seed(1000 * rank + k)
        t0 = time.perf_counter()
        loss = step(batch)
        times["acir"].append(time.perf_counter() - t0)
        sched.step()
        torch.manual_seed(1000 * rank + k)
        t0 = time.perf_counter()
        want = loss_fn(ref, batch)
        want.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        times["FSDP2"].append(time.perf_counter() - t0)
        ref_sched.step()
        same = torch.equal(loss, want.detach()) and all(
            torch.equal(a.full_tensor(), b.full_tensor()) for a, b in zip(model.parameters(), ref.parameters())) \
            and all(torch.equal(a, b) for a, b in zip(model.buffers(), ref.buffers()))
        print(f"rank {rank} step {k}: loss {loss.item():.5f}, {'bit-identical to' if same else 'DIFFERS from'} "
              "FSDP2 (fully_shard)", flush=True)
    print(f"rank {rank}: median step after the first, " + ", ".join(
        f"{who} {statistics.median(ts[1:] or ts) * 1e3:.0f} ms" for who, ts in times.items()), flush=True)
    held = sum(p.to_local().untyped_storage().nbytes() for p in model.parameters())
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"rank {rank}: holds {held / 2**10:.1f} KiB of the {full / 2**10:.1f} KiB of parameters", flush=True)

    from acir.analysis.simulator import simulate
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import measure_peak

    bound = BoundStep(step.module, model, opt)  # the step's graph on this rank's shards
    measured = measure_peak(lambda: bound.run(batches[-1]), bound.inputs(batches[-1]))
    simulated = simulate(step.module.graph).peak_bytes
    # gloo's worker thread may drop a collective's tensors a moment after the wait returns: on a loaded machine
    # the measured peak can then hold one gathered parameter more than the graph does
    why = "equal" if measured == simulated else f"{measured - simulated:+d} bytes held by gloo's worker thread"
    print(f"rank {rank}: peak {measured} bytes measured, {simulated} simulated ({why})", flush=True)
    if step.plan is not None and rank == 0:
        print(f"rank 0: planned peak {step.plan.predicted_peak_bytes / 2**20:.2f} MiB "
              f"(budget {step.plan.budget_bytes / 2**20:.2f} MiB)")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
