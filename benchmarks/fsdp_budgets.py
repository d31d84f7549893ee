"""Does a budget hold on a sharded step after the rewrite? One rank of an FSDP step, planned at
several budgets.

Not a test. Builds ``examples/fsdp_train.py``'s model (a small transformer), compiles its step
with ``acir.compile(..., distributed="fsdp", budget=B)`` as rank ``--rank`` of ``--world`` on a
fake process group (collectives return at once: the memory is exact, the collective times
mean nothing), and prints per budget: the budget asked, the budget the last plan was made to
(lower when the rewrite overshot and ``acir.api.planning.plan_within`` planned again), the
plan's predicted peak and the rewritten step's simulated peak, in bytes. ``--no-replan`` plans
once (``plan_within`` with no second plan): a rewritten step over its budget is then refused,
and the row shows its simulated peak.

    .venv/bin/python benchmarks/fsdp_budgets.py [--world 2] [--budgets 90%,80%,...] [--no-replan]
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=int, default=2, help="ranks of the fake process group")
    ap.add_argument("--rank", type=int, default=0, help="the rank planned (rank 0 holds the largest shards)")
    ap.add_argument("--budgets", default="90%,80%,70%,60%,50%,40%,30%", help="comma-separated budgets")
    ap.add_argument("--no-replan", action="store_true", help="plan once, without checking after the rewrite")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
    from fsdp_train import Model, loss_fn

    import acir
    import acir.api.planning as planning
    from acir.analysis.budget import parse_budget
    from acir.errors import InfeasibleBudget
    from acir.ir.analyses import LIVENESS
    from acir.runtime.distributed import fake_group

    if args.no_replan:
        planning.TIGHTENINGS = 0
    print("budget  asked_B  planned_to_B  predicted_B  simulated_B  verdict")
    for text in args.budgets.split(","):
        with fake_group(args.world, args.rank):
            torch.manual_seed(args.seed)
            model = Model()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            g = torch.Generator().manual_seed(args.seed)
            batch = (torch.randn(16, 32, 64, generator=g), torch.randint(0, 10, (16,), generator=g))
            try:
                step = acir.compile(model, opt, loss_fn, batch, distributed="fsdp", budget=text, quiet=True,
                                    profile_reps=1)
            except InfeasibleBudget as e:
                print(f"{text:>6}  {e.budget_bytes:>7}  {'-':>12}  {'-':>11}  {e.floor_bytes:>11}  infeasible: {e}")
                continue
        plan, live = step.plan, step.module.analyses[LIVENESS]
        asked = parse_budget(text).resolve(live.persistent_bytes, plan.no_ac_peak_bytes)
        verdict = "fits" if live.simulated_peak_bytes <= asked else "OVER"
        print(f"{text:>6}  {asked:>7}  {plan.budget_bytes:>12}  {plan.predicted_peak_bytes:>11}  "
              f"{live.simulated_peak_bytes:>11}  {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
