"""Time the liveness pass on an artifact (the issue's target: resnet152 in under 2 s).

Usage: python benchmarks/liveness_time.py ARTIFACT [REPS]
"""

import statistics
import sys
import time

import acir
from acir.passes.liveness import Liveness

module = acir.load(sys.argv[1])
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    Liveness().run(module)
    times.append(time.perf_counter() - t0)
g = module.graph
print(f"liveness on {len(g.nodes)} nodes, {len(g.values)} values, {len(g.storages)} storages: "
      f"median {statistics.median(times):.3f} s over {reps} runs (min {min(times):.3f} s)")
