"""The ``profile`` pass: measured run time and memory of every node, on the real model.

The model, batch and optimizer are rebuilt from the artifact's provenance (as
``acir-run`` does) and the graph runs node by node (:mod:`acir.runtime.node_runner`): after
``warmup`` iterations, ``reps`` timed iterations give each node's median time; one more
iteration under the live-storage tracker gives the bytes each node allocates and frees,
the live bytes after it, and the measured peak. Finally the lowered ``torch.fx`` step runs
``reps`` times un-instrumented, so that a report can show that per-node timing does not
distort what it measures (the node times should sum to the iteration time).

On the CPU, times depend on glibc's malloc (../shared/TORCH-NOTES.md); the setting is
recorded in the block (``malloc``).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field, replace
from typing import ClassVar

from acir.ir.analyses import PROFILE
from acir.ir.graph import Module
from acir.pipeline.pass_base import Pass, PassResult


def _progress(msg: str) -> None:
    if sys.stderr.isatty():
        print(f"\rprofile: {msg}   ", end="", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Profile(Pass):
    """Measure every node's run time and memory by running the step on the rebuilt model."""

    name: ClassVar[str] = "profile"
    ensures = (PROFILE,)

    reps: int = field(default=5, metadata={"help": "timed iterations; each node's time is their median", "min": 1})
    warmup: int = field(default=2, metadata={"help": "untimed iterations first", "min": 0})

    def run(self, module: Module) -> PassResult:
        from acir.errors import PassFailed
        from acir.frontend.rebuild import provenance_for, rebuild

        if self.reps < 1 or self.warmup < 0:
            raise PassFailed("profile: reps must be at least 1 and warmup at least 0")
        prov = provenance_for(module)
        if prov.model.startswith("<"):
            raise PassFailed(f"profile needs to rebuild the model, but the artifact comes from {prov.model}; "
                             "capture it with acir-capture (or profile through the Python API)")
        from acir.runtime.distributed import process_group, rank, sync_like_ddp

        with process_group(module, prov.device) as how:
            model, opt, _, batch = rebuild(replace(prov, seed=prov.seed + rank()))  # each rank its own batch
            sync_like_ddp(model)
            prof = profile_step(module, model, opt, batch, self.reps, self.warmup)
        if how == "local":
            prof.method += " (collectives on one local rank: their times not measured)"
        module.analyses[PROFILE] = prof
        total = sum(p.run_s for p in prof.nodes)
        iteration = prof.iteration_s
        return PassResult(False, {"measured_peak_bytes": prof.measured_peak_bytes, "profiled_s": round(total, 6),
                                  "iteration_s": round(iteration, 6),
                                  "profiled_over_iteration": round(total / iteration, 4) if iteration else 0.0})


def profile_step(module: Module, model, opt, batch, reps: int = 5, warmup: int = 2):
    """The ``profile`` block of ``module`` measured on live ``model``, ``opt`` and ``batch``
    (which the runs update in place: pass copies when they must stay as they are)."""
    import torch

    from acir.ir import analyses
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import malloc_setting, measure_latency
    from acir.runtime.node_runner import NodeRunner, memory_by_node, time_nodes

    device = module.header.provenance.device
    step = BoundStep(module, model, opt)
    runner = NodeRunner(module)
    times = time_nodes(runner, lambda: step.inputs(batch), reps, warmup, device, _progress)
    _progress("memory")
    memory, peak = memory_by_node(runner, step.inputs(batch), device)
    _progress("iteration")
    with torch.no_grad():
        iteration = statistics.median(measure_latency(lambda: step(batch), reps, 1, device))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    nodes = module.graph.nodes
    profiles = [analyses.NodeProfile(n.id, statistics.median(t), m.alloc_bytes, m.freed_bytes, m.peak_bytes,
                                     m.live_bytes)
                for n, t, m in zip(nodes, times, memory)]
    peak_rank = max(range(len(nodes)), key=lambda r: memory[r].peak_bytes) if nodes else -1
    return analyses.Profile(
        revision=module.header.revision, device=device,
        method="cuda_events" if device.startswith("cuda") else "perf_counter",
        reps=reps, warmup=warmup, torch_version=torch.__version__, malloc=malloc_setting(),
        nodes=profiles, measured_peak_bytes=peak, peak_node=nodes[peak_rank].id if nodes else -1,
        iteration_s=iteration)
