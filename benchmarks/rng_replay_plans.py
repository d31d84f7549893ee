"""μ-TWO's plans with and without dropout replay (acir.ir.rng), from one capture and one profile.

    python benchmarks/rng_replay_plans.py "bert-base --seq-len 128 -b 16" 2076.7MiB 2900MiB

The first argument is acir-capture's model and options; the others are budgets (bytes,
units, or percentages of the no-AC peak). The workload is captured and profiled once; the
"without" column plans the same graph with its saved generator states dropped (its
``keep_rng_states`` node removed), which is what acir planned before dropout could be
replayed. For each, it prints the smallest reachable peak and, per budget, the predicted
peak and added time of μ-TWO's plan. These are the planner's predictions (the rewrite
realises them to the byte, see tests/test_rewrite.py); the added time is the profile's
sum, not a measurement: measure with acir-run --measure or acir-bench.
"""

from __future__ import annotations

import copy
import shlex
import sys

from acir.ir.analyses import PLAN, PROFILE


def main(spec: str, budgets: list[str]) -> None:
    from acir.api import CaptureOptions, capture
    from acir.errors import PassFailed
    from acir.ir.rng import KEEP_OP
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline
    from acir.tools.capture import _parser as capture_parser

    a = capture_parser().parse_args(shlex.split(spec))
    m = capture(CaptureOptions(a.model, a.batch_size, a.seq_len, a.image_size))
    PassManager(build_pipeline("profile{reps=1,warmup=1},liveness")).run(m)
    without = copy.deepcopy(m)
    without.graph.nodes = [n for n in without.graph.nodes if n.op != KEEP_OP]
    PassManager(build_pipeline("liveness")).run(without)
    mib = 2 ** 20
    iteration = sum(m.analyses[PROFILE].run_s().values())
    print(f"{spec}: one iteration {iteration * 1e3:.0f} ms (sum of profiled node times)")
    for label, module in (("with dropout replay", m), ("without (masks kept)", without)):
        for budget in budgets:
            trial = copy.deepcopy(module)
            try:
                PassManager(build_pipeline(f"mutwo{{budget={budget}}}")).run(trial)
            except PassFailed as e:
                print(f"  {label:22} budget {budget:>10}: {e}")
                continue
            plan = trial.analyses[PLAN]
            print(f"  {label:22} budget {budget:>10}: floor {plan.floor_bytes / mib:.1f} MiB; predicted peak "
                  f"{plan.predicted_peak_bytes / mib:.1f} MiB, added time {plan.predicted_recompute_s * 1e3:.0f} ms "
                  f"({100 * plan.predicted_recompute_s / iteration:+.1f}%), {len(plan.recomputed())} recomputed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
