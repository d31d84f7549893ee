"""Data-parallel training with acir, checked against PyTorch's DistributedDataParallel as it ships.

    torchrun --nproc-per-node 2 examples/ddp_train.py            # CPU ranks, gloo
    torchrun --nproc-per-node 2 examples/ddp_train.py --budget 80%

Every rank trains a small transformer-style block on its own batches twice from the same
start: once wrapped in ``DistributedDataParallel`` (default settings) with an eager loop,
once with ``acir.compile(..., distributed="ddp")``, and prints whether the two runs are
equal bit for bit after every step (loss, every parameter and buffer), with the peak of
live tensor memory the compiled step was planned to. Dropout is on: each rank draws its
own masks, the same in both runs.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.distributed as dist
from torch import nn

import acir


class Block(nn.Module):
    def __init__(self, d: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(0.1), nn.Linear(4 * d, d))
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        x = self.norm2(x + self.mlp(x))
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
    torch.manual_seed(0)
    model = Block()
    ref = copy.deepcopy(model)
    ddp = nn.parallel.DistributedDataParallel(ref)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    ref_sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=args.steps)

    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    batches = [(torch.randn(16, 32, 64, generator=g), torch.randint(0, 10, (16,), generator=g))
               for _ in range(args.steps)]
    step = acir.compile(model, opt, loss_fn, batches[0], distributed="ddp", budget=args.budget,
                        clip_grad_norm=1.0, quiet=rank != 0)
    for k, batch in enumerate(batches):
        torch.manual_seed(1000 * rank + k)
        loss = step(batch)
        sched.step()
        torch.manual_seed(1000 * rank + k)
        ref_opt.zero_grad(set_to_none=True)
        want = loss_fn(ddp, batch)
        want.backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), 1.0)
        ref_opt.step()
        ref_sched.step()
        same = torch.equal(loss, want.detach()) and all(
            torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
        print(f"rank {rank} step {k}: loss {loss.item():.5f}, "
              f"{'bit-identical to' if same else 'DIFFERS from'} DistributedDataParallel", flush=True)
    if step.plan is not None and rank == 0:
        print(f"rank 0: planned peak {step.plan.predicted_peak_bytes / 2**20:.1f} MiB "
              f"(budget {step.plan.budget_bytes / 2**20:.1f} MiB)")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
