"""How μ-TWO's selection (passes/mutwo/solver.py) scales with the number of candidates.

Not a test: builds random layered problems shaped like a training step (a forward of
``k`` activations, each read by a couple of later layers and idle until its mirror in
the backward, ~18 ranks per candidate as in resnet152's graph, replays reading one or
two earlier activations, a few candidates that must be kept), solves each at budgets
between the recomputable floor and the no-AC peak, and prints the median solve time
with the growth exponent fitted on a log-log scale (1 = linear, 2 = quadratic).

    .venv/bin/python benchmarks/mutwo_scaling.py [--sizes 300,600,1200,2400] [--reps 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from acir.passes.mutwo.solver import solve
from acir.plan_problem import Problem

RANKS_PER_CANDIDATE = 18


def layered_problem(k: int, seed: int = 0) -> Problem:
    """``k`` candidates over ``2 * 9k`` ranks; memory rises through the forward, falls through the backward."""
    rng = np.random.default_rng(seed)
    fw = RANKS_PER_CANDIDATE * k // 2
    n = 2 * fw
    defined = np.sort(rng.integers(0, fw - 1, k))
    last_fw = np.minimum(fw - 1, defined + rng.integers(0, 10, k))
    first_bw = np.maximum(fw, n - 1 - defined - rng.integers(0, 10, k))
    last_bw = np.minimum(n - 1, first_bw + rng.integers(0, 10, k))
    sizes = rng.choice([1, 2, 4, 8], k) * 2**20 // 4
    times = rng.uniform(1e-5, 1e-3, k)
    temps = rng.choice([0, 0, 2**16, 2**20], k)
    persistent = 2**30
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, defined, sizes)
    np.add.at(delta, last_bw + 1, -sizes)
    acts = np.cumsum(delta)[:n]
    released = np.zeros(n, dtype=np.int64)
    np.add.at(released, last_bw, sizes)
    grads = np.concatenate([np.zeros(fw, dtype=np.int64), np.arange(fw, dtype=np.int64) * 2**10])
    work = rng.choice([0, 2**16, 2**20], n)
    live = persistent + grads + acts + work
    after = persistent + grads + acts - released
    srcs = tuple(tuple(sorted(set(rng.integers(max(0, i - 8), i, rng.integers(0, 3)).tolist()))) if i else ()
                 for i in range(k))
    allowed = tuple(bool(a) for a in rng.random(k) < 0.9)
    return Problem(tuple(live.tolist()), tuple(after.tolist()), persistent, tuple(sizes.tolist()),
                   tuple((last_fw + 1).tolist()), tuple(first_bw.tolist()), tuple(times.tolist()),
                   tuple(temps.tolist()), srcs, allowed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="300,600,1200,2400", help="candidate counts, comma-separated")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per size (median reported)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'candidates':>10} {'ranks':>7} {'budget':>7} {'picks':>6} {'feasible':>8} {'median s':>9}")
    points = []
    for k in sizes:
        p = layered_problem(k)
        full = solve(p, 0)  # everything that can lower the peak: the floor it reaches
        floor, peak = full.evaluation.peak, p.no_ac_peak
        total = 0.0
        for frac in (0.25, 0.5, 0.75):
            budget = floor + round(frac * (peak - floor))
            runs = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                s = solve(p, budget)
                runs.append(time.perf_counter() - t0)
            med = statistics.median(runs)
            total += med
            print(f"{k:>10} {len(p.base_live):>7} {f'{frac:.0%}':>7} {len(s.chosen):>6} {str(s.feasible):>8} "
                  f"{med:>9.4f}")
        points.append((k, total / 3))
    if len(points) >= 2:
        xs = [math.log(k) for k, _ in points]
        ys = [math.log(t) for _, t in points]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        print()
        print(f"{'candidates':>10} {'mean s':>9}")
        for k, t in points:
            print(f"{k:>10} {t:>9.4f}")
        print(f"growth exponent (log-log fit of mean time vs candidates): {slope:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
