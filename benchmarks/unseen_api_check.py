"""acir.compile on a user-written loop vs the same loop eagerly on a deep copy, bit for bit.
AdamW with two parameter groups (decay / no decay) and an LR scheduler, 3 steps.
  python benchmarks/unseen_api_check.py MODEL [BUDGET]   (BUDGET: a budget, or none)"""
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
import unseen

import acir

name = sys.argv[1]
budget = sys.argv[2] if len(sys.argv) > 2 else "60%"
budget = None if budget == "none" else budget
STEPS = 3

torch.manual_seed(0)
model, batch, loss_fn = getattr(unseen, name)(4)
model.train()
ref = copy.deepcopy(model)

def make_opt(m):
    decay = [p for n, p in m.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in m.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": rest, "weight_decay": 0.0, "lr": 5e-4}], lr=1e-3)
    if name == "vit_small":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[1e-3, 5e-4], total_steps=10)  # also cycles beta1
    elif name == "roberta_cls":
        sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=3)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    return opt, sched

opt, sched = make_opt(model)
ropt, rsched = make_opt(ref)

print(f"{name}: acir.compile(budget={budget!r}), {STEPS} steps, {sched.__class__.__name__}", flush=True)
step = acir.compile(model, opt, loss_fn, batch, budget=budget)
ok = True
for k in range(STEPS):
    torch.manual_seed(100 + k)
    loss = step(batch)
    sched.step()
    torch.manual_seed(100 + k)
    ropt.zero_grad(set_to_none=True)
    rloss = loss_fn(ref, batch)
    rloss.backward()
    ropt.step()
    rsched.step()
    same_loss = torch.equal(loss.detach(), rloss.detach())
    pa, pb = dict(model.named_parameters()), dict(ref.named_parameters())
    bad = [n for n in pa if not torch.equal(pa[n], pb[n])]
    ba, bb = dict(model.named_buffers()), dict(ref.named_buffers())
    badb = [n for n in ba if not torch.equal(ba[n], bb[n])]
    # optimizer state, matched by parameter order in the groups
    bads = 0
    for ga, gb in zip(opt.param_groups, ropt.param_groups):
        for p, q in zip(ga["params"], gb["params"]):
            sa, sb = opt.state.get(p, {}), ropt.state.get(q, {})
            for key in sb:
                if not torch.equal(torch.as_tensor(sa.get(key)), torch.as_tensor(sb[key])):
                    bads += 1
    lrs = [g["lr"] for g in opt.param_groups]
    print(f"  step {k}: loss acir {loss.item():.6f} eager {rloss.item():.6f} equal={same_loss}; "
          f"params differing {len(bad)}/{len(pa)}{' e.g. ' + ', '.join(bad[:3]) if bad else ''}; "
          f"buffers differing {len(badb)}/{len(ba)}; optimizer-state entries differing {bads}; lr {lrs}", flush=True)
    if bad:
        n = bad[0]
        print(f"    max |diff| {n}: {(pa[n] - pb[n]).abs().max().item():.3e}")
    ok &= same_loss and not bad and not badb and not bads
print(f"{name}: {'BIT-IDENTICAL' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
