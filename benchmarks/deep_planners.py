"""The planners on deep stacks of identical layers: solve time, predicted cost and the optimal pass's gap.

Issue 17's item 3 asks μ-TWO to plan a 24-layer model (GPT-2 medium size) in under a second
and the MILP in under a minute with its gap reported. This runs each planner *pass* (the
path ``acir-opt`` and ``acir.compile`` take: candidates, budget, solve, evaluation) on profiled
artifacts at several budgets and prints, per budget and planner, the solve time (the plan
block's ``solve_s``), the whole pass's wall time, the predicted peak and recompute time, how
many candidates are retained, and the optimal pass's gap (against the cover bound, which holds
for every plan: 0 means proven optimal in the schedule model). Every figure is the shared
evaluator's prediction; nothing here is measured on the model.

Budgets: as in a pipeline (``60%``, ``3GiB``, bytes), or ``floor*X`` for X times the lowest peak
μ-TWO and checkpointing every block know how to reach (the floor the plan block records).

    .venv/bin/acir-capture gpt2-medium -b 8 -o out/g2m.acir
    .venv/bin/acir-opt -p 'profile{reps=1,warmup=0},liveness' out/g2m.acir -o out/g2m.p.acir
    .venv/bin/acir-capture benchmarks/models/bert24.py:make -b 4 --seq-len 64 -o out/bert24.acir
    .venv/bin/acir-opt -p 'profile{reps=3},liveness' out/bert24.acir -o out/bert24.p.acir
    .venv/bin/python benchmarks/deep_planners.py out/g2m.p.acir out/bert24.p.acir \\
        --budgets 80%,50%,floor*1.2,floor*1.05,floor*1.0
"""

from __future__ import annotations

import argparse
import time

import acir
from acir.analysis.candidates import build
from acir.errors import InfeasibleBudget
from acir.ir.analyses import PLAN
from acir.passes.mutwo import block_start, floor_with
from acir.pipeline.manager import PassManager
from acir.pipeline.registry import build_pipeline

PLANNERS = ("mutwo", "optimal", "block-checkpoint")


def budget_text(text: str, floor: int) -> str:
    if text.startswith("floor*"):
        return f"{int(floor * float(text[len('floor*'):]))}B"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", nargs="+", help="profiled artifacts (profile and liveness analyses)")
    ap.add_argument("--budgets", default="80%,50%,floor*1.2,floor*1.05,floor*1.0")
    ap.add_argument("--time-limit", type=float, default=60.0, help="the optimal pass's time limit (s)")
    a = ap.parse_args()
    print("| model | budget | planner | solve s | pass s | predicted peak MiB | predicted recompute s "
          "| recomputed | retained | gap |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in a.artifacts:
        m0 = acir.load(path)
        prov = m0.header.provenance
        name = f"{prov.model or path}, batch {prov.batch_size}"
        cands = build(m0)
        floor = floor_with(block_start(cands))(cands.problem)
        for b in a.budgets.split(","):
            bt = budget_text(b, floor)
            for planner in PLANNERS:
                spec = planner if planner == "block-checkpoint" else \
                    f"{planner}{{budget={bt}" + (f",time-limit={a.time_limit}}}" if planner == "optimal" else "}")
                m = acir.load(path)
                t0 = time.perf_counter()
                try:
                    PassManager(build_pipeline(spec), verify=False).run(m)
                except InfeasibleBudget as e:
                    print(f"| {name} | {b} | {planner} | refused: {e} | | | | | | |", flush=True)
                    continue
                dt = time.perf_counter() - t0
                p = m.analyses[PLAN]
                rec = p.recomputed()
                gap = "-" if p.optimality_gap < 0 else f"{100 * p.optimality_gap:.2f}%"
                gap = gap if planner == "optimal" else ""
                print(f"| {name} | {b} | {planner} | {p.solve_s:.3f} | {dt:.2f} | {p.predicted_peak_bytes / 2**20:.1f} "
                      f"| {p.predicted_recompute_s:.3f} | {len(rec)} | {sum(t.retained for t in rec)} | {gap} |",
                      flush=True)


if __name__ == "__main__":
    main()
