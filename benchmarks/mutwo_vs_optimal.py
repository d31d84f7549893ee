"""μ-TWO (the paper's loop alone, and with acir's clean-up) against the MILP optimum.

Usage: python benchmarks/mutwo_vs_optimal.py ARTIFACT BUDGET [BUDGET ...]
The artifact needs fresh profile and liveness analyses; budgets as in a pipeline (60%, 3GiB).
Every figure is the shared evaluator's prediction.
"""

import sys
import time

import acir
from acir.analysis.candidates import build
from acir.passes.mutwo.solver import solve as mutwo
from acir.passes.optimal import warm_starts
from acir.passes.optimal.solver import solve as optimal
from acir.passes.planner_base import resolve_budget

problem = build(acir.load(sys.argv[1])).problem
print("| budget | paper loop (s) | with clean-up (s) | optimal (s) | loop / opt | clean-up / opt | solve s (loop, clean-up) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for text in sys.argv[2:]:
    b = resolve_budget(text, problem)
    t0 = time.perf_counter()
    loop = mutwo(problem, b, refine=False)
    t1 = time.perf_counter()
    refined = mutwo(problem, b)
    t2 = time.perf_counter()
    if not loop.feasible:
        print(f"| {text} | infeasible | | | | | |")
        continue
    opt = optimal(problem, b, warm_starts(problem, b)).evaluation.recompute_s
    a, r = loop.evaluation.recompute_s, refined.evaluation.recompute_s
    print(f"| {text} | {a:.4f} | {r:.4f} | {opt:.4f} | {a / opt:.2f} | {r / opt:.2f} | {t1 - t0:.3f}, {t2 - t1:.3f} |")
