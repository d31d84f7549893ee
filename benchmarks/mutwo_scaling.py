"""How μ-TWO's selection (passes/mutwo/solver.py) scales with the number of candidates.

Not a test. Two modes:

* ``--graphs``: real graphs. Captures (once, into ``--out``) the deep ResNets of
  ``benchmarks/models/deep_resnet.py`` — ResNet-152's Bottleneck layout [3, 8, 36, 3] and
  the same twice as deep, [6, 16, 72, 6], at batch 4 and 64×64 — profiles them
  (``profile{reps=1,warmup=0},liveness``), solves each at 80%, 60% and 40% budgets (as a
  pipeline resolves them; one below the lowest reachable peak is clamped to it), and prints
  the median solve time (wall and CPU), the activations, and how the time grows against the
  activations (at most quadratic: a time ratio no more than the activation ratio squared).
  Other profiled artifacts can be given with ``--artifacts A.acir,B.acir``.
* default: random layered problems shaped like a training step (a forward of ``k``
  activations, each read by a couple of later layers and idle until its mirror in the
  backward, ~18 ranks per candidate as in resnet152's graph, replays reading one or two
  earlier activations, a few candidates that must be kept), solved at budgets between the
  recomputable floor and the no-AC peak, with the growth exponent fitted on a log-log
  scale (1 = linear, 2 = quadratic).

    .venv/bin/python benchmarks/mutwo_scaling.py --graphs [--out out/mutwo] [--reps 5]
    .venv/bin/python benchmarks/mutwo_scaling.py [--sizes 300,600,1200,2400] [--reps 3]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from acir.analysis.problem import Problem
from acir.passes.mutwo.solver import solve

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


HERE = os.path.dirname(os.path.abspath(__file__))
DEEP_RESNETS = (("resnet [3,8,36,3]", "make"), ("resnet [6,16,72,6]", "make_deep"))


def deep_resnet_artifacts(out: str) -> list[tuple[str, str]]:
    """(label, profiled artifact) of the two deep ResNets, captured and profiled into ``out`` if missing."""
    bindir = os.path.dirname(sys.executable)
    model = os.path.join(HERE, "models", "deep_resnet.py")
    os.makedirs(out, exist_ok=True)
    found = []
    for label, factory in DEEP_RESNETS:
        raw = os.path.join(out, f"deep_resnet_{factory}.acir")
        profiled = os.path.join(out, f"deep_resnet_{factory}.p.acir")
        if not os.path.exists(profiled):
            if not os.path.exists(raw):
                print(f"capturing {label} -> {raw}", file=sys.stderr)
                subprocess.run([os.path.join(bindir, "acir-capture"), f"{model}:{factory}", "-b", "4", "-o", raw],
                               check=True)
            print(f"profiling {label} -> {profiled} (minutes)", file=sys.stderr)
            subprocess.run([os.path.join(bindir, "acir-opt"), raw, "-p", "profile{reps=1,warmup=0},liveness",
                            "-o", profiled], check=True)
        found.append((label, profiled))
    return found


def graphs(artifacts: list[tuple[str, str]], budgets: list[str], reps: int) -> int:
    import acir
    from acir.analysis.candidates import build
    from acir.passes.mutwo.solver import reachable_floor
    from acir.passes.planner_base import resolve_budget

    rows = []
    print(f"| graph | activations | ranks | budget | picks | feasible | wall s (median of {reps}) | cpu s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, path in artifacts:
        p = build(acir.load(path)).problem
        floor = reachable_floor(p)
        acts = p.n_candidates
        for text in budgets:
            b = resolve_budget(text, p)
            shown = text if b >= floor else f"{text} (clamped to the floor)"
            b = max(b, floor)
            walls, cpus = [], []
            for _ in range(reps):
                w0, c0 = time.perf_counter(), time.process_time()
                s = solve(p, b)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            rows.append((label, acts, text, wall, cpu))
            print(f"| {label} | {acts} | {len(p.base_live)} | {shown} | {len(s.chosen)} | {s.feasible} | "
                  f"{wall:.3f} | {cpu:.3f} |")
    if len(artifacts) >= 2:
        first, last = artifacts[0][0], artifacts[-1][0]
        a0 = next(r[1] for r in rows if r[0] == first)
        a1 = next(r[1] for r in rows if r[0] == last)
        ar = a1 / a0
        print()
        print(f"growth from {first} to {last}: activations × {ar:.2f}; quadratic would be × {ar * ar:.2f}")
        print()
        print("| budget | wall ratio | cpu ratio | within quadratic |")
        print("| --- | --- | --- | --- |")
        tot = [[0.0, 0.0], [0.0, 0.0]]
        for text in budgets:
            w0, c0 = next((r[3], r[4]) for r in rows if r[0] == first and r[2] == text)
            w1, c1 = next((r[3], r[4]) for r in rows if r[0] == last and r[2] == text)
            tot[0][0] += w0
            tot[0][1] += c0
            tot[1][0] += w1
            tot[1][1] += c1
            print(f"| {text} | {w1 / w0:.2f} | {c1 / c0:.2f} | {'yes' if max(w1 / w0, c1 / c0) <= ar * ar else 'no'} |")
        wr, cr = tot[1][0] / tot[0][0], tot[1][1] / tot[0][1]
        print(f"| all | {wr:.2f} | {cr:.2f} | {'yes' if max(wr, cr) <= ar * ar else 'no'} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", action="store_true",
                    help="time real graphs (the deep ResNets) instead of random problems")
    ap.add_argument("--artifacts", default="", help="with --graphs: profiled artifacts to use, comma-separated, "
                    "smallest first (default: the deep ResNets, made in --out)")
    ap.add_argument("--out", default="out/mutwo", help="with --graphs: where the deep ResNet artifacts are kept")
    ap.add_argument("--budgets", default="80%,60%,40%", help="with --graphs: budgets, comma-separated")
    ap.add_argument("--sizes", default="300,600,1200,2400", help="candidate counts, comma-separated")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per size (median reported)")
    args = ap.parse_args(argv)
    if args.graphs:
        if args.artifacts:
            arts = [(os.path.basename(a), a) for a in args.artifacts.split(",")]
        else:
            arts = deep_resnet_artifacts(args.out)
        return graphs(arts, args.budgets.split(","), args.reps)
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
