"""The ``profile`` pass: the run time and memory of every node, measured on the real model or estimated.

``method=measured`` (the default): the model, batch and optimizer are rebuilt from the
artifact's provenance (as ``acir-run`` does) and the graph runs node by node
(:mod:`acir.runtime.node_runner`): after ``warmup`` iterations, ``reps`` timed iterations give
each node's median time; one more iteration under the live-storage tracker gives the bytes
each node allocates and frees, the live bytes after it, and the measured peak. Finally the
lowered ``torch.fx`` step runs ``reps`` times un-instrumented, so that a report can show that
per-node timing does not distort what it measures (the node times should sum to the
iteration time). On the CPU, times depend on glibc's malloc (../shared/TORCH-NOTES.md):
freed memory is kept in the heap unless ``malloc=default`` (:mod:`acir.runtime.measure`), and
the setting is recorded in the block (``malloc``).

``method=analytic``: measured times differ from run to run, and a planner follows them (two
profiles of one model gave 44 and 7 recomputations at one budget). The analytic profile
runs nothing and so needs no rebuild (it profiles artifacts from ``acir.compile`` too) and
gives the same times, hence the same plan, every time: each node's time is a roofline
estimate, ``overhead + max(flops / F, bytes / B)`` with the device's constants in
:data:`ROOFLINE`. The FLOPs are what ``torch.utils.flop_counter.FlopCounterMode`` counts
when the op runs on meta tensors shaped as the IR records (matrix products, convolutions and
their backwards, attention: the ops it has formulas for; any other op counts 0 and is priced
by its bytes). The bytes are those of the node's tensor inputs and of the outputs it writes
(a new storage, or an input it writes in place); a view moves none. The block says
``method: "analytic"``, ``reps: 0``; its memory fields are 0 (nothing was measured: the
``liveness`` simulator gives the memory) and ``iteration_s`` is the sum of the estimates.
Every plan records the profile it was made from (method, reps, a digest of the node times:
:mod:`acir.passes.planner_base`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar

from acir.ir.analyses import PROFILE
from acir.ir.graph import Module
from acir.pipeline.pass_base import Pass, PassResult

#: The analytic roofline per device type: (FLOP/s, bytes/s, seconds per op). Orders of magnitude,
#: not a calibration: fp32 on a few x86 cores (~100 GFLOP/s with AVX2/AVX-512 FMA, ~20 GB/s of
#: DRAM bandwidth, ~5 us of dispatch per op) and on one current data-centre GPU (~50 TFLOP/s fp32
#: and TF32, ~3 TB/s of HBM, ~5 us of launch). A planner compares times with each other, so what
#: matters is their ratios: how compute-bound ops weigh against memory-bound ones.
ROOFLINE: dict[str, tuple[float, float, float]] = {"cpu": (1e11, 2e10, 5e-6), "cuda": (5e13, 3e12, 5e-6)}
METHODS = ("measured", "analytic")
MALLOC = ("heap-retained", "default")


@dataclass(frozen=True)
class Profile(Pass):
    """Measure every node's run time and memory on the rebuilt model (or estimate times: method=analytic)."""

    name: ClassVar[str] = "profile"
    ensures = (PROFILE,)

    reps: int = field(default=5, metadata={"help": "timed iterations; each node's time is their median", "min": 1})
    warmup: int = field(default=2, metadata={"help": "untimed iterations first", "min": 0})
    method: str = field(default="measured", metadata={
        "help": "measured (run the rebuilt model) or analytic (a roofline from FLOPs and bytes: runs nothing, "
                "the same times every time)"})
    malloc: str = field(default="heap-retained", metadata={
        "help": "CPU, measured: heap-retained (freed memory kept, as a caching allocator does) or default (glibc's)"})

    def __post_init__(self) -> None:
        from acir.errors import ParseError

        if self.method not in METHODS:
            raise ParseError(f"pass 'profile' option 'method': {self.method!r}; use {' or '.join(METHODS)}")
        if self.malloc not in MALLOC:
            raise ParseError(f"pass 'profile' option 'malloc': {self.malloc!r}; use {' or '.join(MALLOC)}")

    def run(self, module: Module) -> PassResult:
        from acir.errors import AcirError, PassFailed
        from acir.frontend.rebuild import provenance_for, rebuild

        if self.method == "analytic":
            prof = analytic_profile(module)
            module.analyses[PROFILE] = prof
            return PassResult(False, {"method": prof.method, "iteration_s": round(prof.iteration_s, 6)})
        if self.reps < 1 or self.warmup < 0:
            raise PassFailed("profile: reps must be at least 1 and warmup at least 0")
        prov = provenance_for(module)
        if prov.model.startswith("<"):
            raise PassFailed(f"profile needs to rebuild the model, but the artifact comes from {prov.model}; "
                             "capture it with acir-capture (or profile through the Python API), or estimate "
                             "the times without it: profile{method=analytic}")
        from acir.runtime.distributed import process_group, rank, sync_like_ddp
        from acir.runtime.measure import use_malloc

        try:
            use_malloc(self.malloc)
        except AcirError as e:
            raise PassFailed(f"profile{{malloc={self.malloc}}}: {e}") from None
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
                                  "iteration_s": round(iteration, 6), "malloc": prof.malloc,
                                  "profiled_over_iteration": round(total / iteration, 4) if iteration else 0.0})


def _ticking_runner(module: Module, tick: Callable[[], Any] | None):
    """A :class:`~acir.runtime.node_runner.NodeRunner` that calls ``tick`` after each node, off the clock
    (for the progress bar; a plain runner when there is no bar to move)."""
    from acir.runtime.node_runner import NodeRunner

    if tick is None:
        return NodeRunner(module)

    class Ticking(NodeRunner):
        def run(self, inputs: list, on_node=None, after_release=None):
            def after(rank: int) -> None:
                if after_release is not None:
                    after_release(rank)
                tick()

            return super().run(inputs, on_node, after)

    return Ticking(module)


def profile_step(module: Module, model, opt, batch, reps: int = 5, warmup: int = 2):
    """The ``profile`` block of ``module`` measured on live ``model``, ``opt`` and ``batch``
    (which the runs update in place: pass copies when they must stay as they are), with the
    malloc setting :func:`acir.runtime.measure.ensure_malloc` gives; a progress bar on stderr."""
    import torch

    from acir import progress
    from acir.ir import analyses
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import ensure_malloc, malloc_setting, measure_latency
    from acir.runtime.node_runner import memory_by_node, time_nodes

    ensure_malloc()
    device = module.header.provenance.device
    step = BoundStep(module, model, opt)
    n = len(module.graph.nodes)
    # every node-by-node iteration moves the bar one node at a time; an un-instrumented one, n at once
    with progress.bar("profile", total=n * (warmup + reps + 1 + 1 + reps), unit="node") as b:
        runner = _ticking_runner(module, (lambda: b.update(1)) if progress.enabled() else None)

        def phase(what: str) -> None:
            b.set_description_str(f"profile: {what}", refresh=False)

        times = time_nodes(runner, lambda: step.inputs(batch), reps, warmup, device, phase)
        phase("memory")
        memory, peak = memory_by_node(runner, step.inputs(batch), device)
        phase(f"iteration ({reps} un-instrumented)")
        with torch.no_grad():
            iteration = statistics.median(measure_latency(lambda: step(batch), reps, 1, device, lambda: b.update(n)))
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


# -- the analytic profile -------------------------------------------------------------------


def analytic_profile(module: Module):
    """The ``profile`` block of ``module`` estimated by the roofline (module docstring); runs nothing."""
    import torch

    from acir import progress
    from acir.ir import analyses
    from acir.ir.graph import InputKind

    g = module.graph
    device = module.header.provenance.device or "cpu"
    flops_per_s, bytes_per_s, overhead_s = ROOFLINE["cuda" if device.startswith("cuda") else "cpu"]
    numbers = {i.value for i in g.inputs if i.kind is InputKind.HYPERPARAM}
    cache: dict[tuple, int] = {}
    nodes = []
    with progress.bar("profile: analytic", total=len(g.nodes), unit="node") as b:
        for n in g.nodes:
            flops = _flops(n, g, numbers, cache)
            nbytes = _moved_bytes(n, g, numbers)
            nodes.append(analyses.NodeProfile(n.id, overhead_s + max(flops / flops_per_s, nbytes / bytes_per_s),
                                              0, 0, 0, 0))
            b.update(1)
    return analyses.Profile(
        revision=module.header.revision, device=device, method="analytic", reps=0, warmup=0,
        torch_version=torch.__version__, malloc="", nodes=nodes, measured_peak_bytes=0, peak_node=-1,
        iteration_s=sum(p.run_s for p in nodes))


def _moved_bytes(n, g, numbers: set[int]) -> int:
    """Bytes a node reads and writes: its tensor inputs, and the outputs it writes (new storages,
    or inputs written in place); a view, which writes nothing new, moves nothing."""
    from acir.ir.ops import mutated_args

    ins = [v for v in dict.fromkeys(n.input_ids()) if v not in numbers and v in g.values]
    outs = [v for v in dict.fromkeys(n.output_ids()) if v in g.values]
    in_storages = {g.values[v].storage for v in ins}
    writes = mutated_args(n.op)
    written = [v for v in outs if writes or writes is None or g.values[v].storage not in in_storages]
    if not written:
        return 0
    return sum(g.values[v].nbytes for v in ins) + sum(g.values[v].nbytes for v in written)


def _flops(n, g, numbers: set[int], cache: dict[tuple, int]) -> int:
    """What ``FlopCounterMode`` counts for the node's op on meta tensors shaped as the IR records;
    0 for an op it has no formula for, or that cannot run on meta. Cached by op and argument shapes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    from acir.ir.graph import Device, DType, Layout, MemoryFormat, ValueRef
    from acir.ir.ops import resolve_op

    try:
        op = resolve_op(n.op)
    except Exception:  # noqa: BLE001 - an op this torch does not know has no formula either
        return 0
    if getattr(op, "overloadpacket", None) not in flop_registry:
        return 0

    def key(a):
        if isinstance(a, ValueRef):
            if a.id in numbers or a.id not in g.values:
                return ("number",)
            v = g.values[a.id]
            return ("T", v.dtype, tuple(v.shape), tuple(v.strides))
        if isinstance(a, list):
            return ("L", *[key(x) for x in a])
        return (type(a).__name__, repr(a))

    k = (n.op, tuple(key(a) for a in n.args), tuple((name, key(a)) for name, a in n.kwargs.items()))
    if k in cache:
        return cache[k]

    def meta(a):
        if isinstance(a, ValueRef):
            if a.id in numbers or a.id not in g.values:
                return 0.5
            v = g.values[a.id]
            return torch.empty_strided(v.shape, v.strides, dtype=getattr(torch, v.dtype), device="meta")
        if isinstance(a, list):
            return [meta(x) for x in a]
        if isinstance(a, Device):
            return torch.device("meta")
        if isinstance(a, (DType, Layout, MemoryFormat)):
            return getattr(torch, a.name)
        return a

    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            op(*[meta(a) for a in n.args], **{name: meta(a) for name, a in n.kwargs.items()})
        flops = int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - no meta kernel, or data-dependent: priced by its bytes alone
        flops = 0
    cache[k] = flops
    return flops
