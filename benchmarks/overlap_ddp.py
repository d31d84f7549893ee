"""Does pricing recomputation hidden behind the gradient all-reduce pay? Two plans, one budget, real ranks.

Not a test. Run under torchrun (gloo, CPU)::

    MASTER_ADDR=127.0.0.1 torchrun --nproc-per-node 2 benchmarks/overlap_ddp.py --budget 60% --out overlap.json

Every rank builds the same residual MLP (``--blocks`` blocks of Linear(d, 4d), GELU, Linear(4d, d), d = ``--width``;
seed 0) twice,
with AdamW, and compiles each copy with ``acir.compile(..., distributed="ddp", budget=...)``:

- ``windows``: planned as acir plans, the overlap windows in the problem (a recomputation between a bucket's
  all-reduce and its wait is priced net of the wait's profiled blocking time, ``acir.analysis.problem``);
- ``bare``: the same budget planned with the windows left out (every replay priced in full), as before they existed.

Both steps then run ``--rounds`` rounds, one step of each per round, in alternating order, on the same batches;
per plan it prints the predicted added time (the windows plan's net of what they hide), the profiled iteration, and the
median measured step time on rank 0, and checks that both steps' losses are ``torch.equal`` at every step (the
plans change what is replayed, never what is computed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time


def make_model(d: int, blocks: int):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(x)))

    torch.manual_seed(0)
    return nn.Sequential(*[Block() for _ in range(blocks)], nn.Linear(d, 16))


@contextlib.contextmanager
def windows_left_out():
    """Plan as if no collective hid anything: the problem built without overlap windows."""
    from acir.analysis import candidates

    real = candidates.overlap_windows
    candidates.overlap_windows = lambda g, run_s: ()
    try:
        yield
    finally:
        candidates.overlap_windows = real


def plan_facts(step) -> dict:
    from acir.ir.analyses import PLAN, PROFILE

    m = step.module
    plan, prof = m.analyses[PLAN], m.analyses.get(PROFILE)
    run = prof.run_s() if prof is not None else {}
    waits = [run.get(n.id, 0.0) for n in m.graph.nodes if n.op == "_c10d_functional.wait_tensor.default"]
    return {"predicted_recompute_s": plan.predicted_recompute_s, "recomputed": len(plan.recomputed()),
            "profiled_waits_s": sum(waits), "waits": len(waits),
            "predicted_peak_bytes": plan.predicted_peak_bytes, "budget_bytes": plan.budget_bytes,
            "iteration_s": prof.iteration_s if prof is not None else None}


def main() -> None:
    import torch
    import torch.distributed as dist

    import acir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="60%")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)

    def loss_fn(model, batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    def batch(k: int):
        g = torch.Generator().manual_seed(1000 * k + rank)
        return torch.randn(args.batch, args.width, generator=g), torch.randint(0, 16, (args.batch,), generator=g)

    steps, facts = {}, {}
    for name in ("windows", "bare"):
        model = make_model(args.width, args.blocks)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        with windows_left_out() if name == "bare" else contextlib.nullcontext():
            steps[name] = acir.compile(model, opt, loss_fn, batch(0), distributed="ddp", budget=args.budget,
                                       quiet=True)
            steps[name](batch(0))  # the first call captures and plans
        facts[name] = plan_facts(steps[name])
    times: dict[str, list[float]] = {"windows": [], "bare": []}
    same = True
    for k in range(1, args.rounds + 1):
        losses = {}
        for name in (("windows", "bare") if k % 2 else ("bare", "windows")):
            b = batch(k)
            dist.barrier()
            t0 = time.perf_counter()
            losses[name] = steps[name](b)
            times[name].append(time.perf_counter() - t0)
        same = same and torch.equal(losses["windows"], losses["bare"])
    report = {"rank": rank, "world": dist.get_world_size(), "settings": vars(args), "losses_equal": same,
              "plans": {n: facts[n] | {"median_step_s": statistics.median(times[n]), "steps_s": times[n]}
                        for n in steps}}
    if rank == 0:
        text = json.dumps(report, indent=1)
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    main()
