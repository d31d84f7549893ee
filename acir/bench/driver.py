"""``acir-bench``: acir's steps measured side by side with what users would pick instead.

For each model and batch size, every configuration (:mod:`acir.bench.configs`) is built
from the same seed and kept alive in one process, then

1. warm-up: ``warmup`` iterations of each, in turn (the first compiles ``torch.compile``'s
   configurations, so it is never measured);
2. peak: one iteration of each alone, its peak measured as DESIGN.md says: on the CPU the
   peak of live tensor storages tracked at the dispatcher (each storage once, including
   parameters, optimizer state and the batch; the tracker tells Dynamo to ignore it, so
   that compiled graphs run compiled under it and are counted op by op); on CUDA
   ``max_memory_allocated`` over the iteration, less what the other configurations hold.
   Checked on ResNet-18: at every operator boundary the tracker's count equals the sum of the
   profiler's allocation events, for eager, ``torch.utils.checkpoint``, AOT-compiled and acir
   steps alike; only scratch memory an operator frees before it returns is not counted
   (``allocator_peak`` records the profiler's peak, which includes it);
3. latency: ``iters`` rounds, one iteration of each configuration per round, the order
   rotated every round, so that the machine's drift falls on all of them alike; the median,
   of wall-clock time and of the process's CPU time.

A configuration whose budget is another's measured peak (``=checkpoint``) is built after
step 2 and then takes the same warm-up and peak iterations before step 3.

The RNG is seeded with ``step_seed + k`` before the k-th iteration of every
configuration, so after the run each has taken the same steps from the same start, and its
loss, parameters, optimizer state and buffers are compared with the no-AC step's, bit for
bit (``torch.utils.checkpoint`` replays batch-norm and so updates its running statistics
twice; PyTorch's budget below 1.0 re-runs dropout with fresh random numbers: the table says
so rather than hiding it). A configuration that fails — to build (an infeasible budget, a
peer that cannot compile) or to run (out of memory) — is recorded with its reason and the
run goes on without it. What is recorded, and how it is written and read back, is
:mod:`acir.bench.results`.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from acir.bench.configs import (
    FAMILIES,
    Builder,
    ConfigSpec,
    Runner,
    Workload,
    timed_build,
)
from acir.bench.results import Result
from acir.errors import BenchError

__all__ = ["BenchError", "BenchOptions", "compare", "config_specs", "describe_machine", "measure_peak", "run",
           "run_workload", "stderr_log"]


@dataclass(frozen=True)
class BenchOptions:
    models: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    configs: tuple[str, ...] = FAMILIES
    budgets: tuple[str, ...] = ("60%", "40%")
    optimal_budgets: tuple[str, ...] | None = None  # acir-optimal's; None: the same as budgets
    torch_budgets: tuple[float, ...] = (0.5, 0.2)
    seq_len: int = 0
    image_size: int = 0
    iters: int = 5
    warmup: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    seed: int = 0
    step_seed: int = 1234
    device: str = "cpu"
    profile_reps: int = 3
    time_limit: float = 30.0
    blocks: tuple[str, ...] = ()
    torch_backend: str = ""
    allocator_peak: bool = False


def config_specs(opts: BenchOptions) -> list[ConfigSpec]:
    """The configurations to run, in :data:`FAMILIES` order; ``noac`` always (it is the baseline)."""
    out = []
    for fam in FAMILIES:
        if fam not in opts.configs and fam != "noac":
            continue
        if fam == "acir-mutwo" or (fam == "acir-optimal" and opts.optimal_budgets is None):
            out += [ConfigSpec(fam, b) for b in opts.budgets]
        elif fam == "acir-optimal":
            out += [ConfigSpec(fam, b) for b in opts.optimal_budgets]
        elif fam == "torch-budget":
            out += [ConfigSpec(fam, f"{b:g}") for b in opts.torch_budgets]
        else:
            out.append(ConfigSpec(fam))
    return out


def describe_machine(device: str = "cpu") -> dict:
    """What a reader needs to weigh the numbers: CPU, cores, memory, versions, malloc setting."""
    import torch

    import acir
    from acir.runtime.measure import malloc_setting

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            kib = next((int(ln.split()[1]) for ln in f if ln.startswith("MemTotal:")), None)
            mem = kib * 1024 if kib else None
    except OSError:
        pass
    d = {"cpu": cpu, "cpu_count": os.cpu_count(),
         "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
         "torch_threads": torch.get_num_threads(), "memory_bytes": mem, "platform": platform.platform(),
         "python": platform.python_version(), "torch": torch.__version__, "acir": acir.__version__,
         "malloc": malloc_setting(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""), "device": device,
         "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        d.update(gpu=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    return d


def run(opts: BenchOptions, log: Callable[[str], None] = lambda s: None,
        done: Callable[[list[Result]], None] | None = None, prior: list[Result] = ()) -> list[Result]:
    """Every configuration of every model and batch size; see the module docstring. ``done``
    is called with the results so far after each model and batch size (to save them).
    ``prior`` holds an earlier run's results (``acir-bench --resume``): a model and batch
    size it holds every configuration of is taken from it, not measured again."""
    from acir.frontend import zoo

    specs = config_specs(opts)
    order = {sp.name: k for k, sp in enumerate(specs)}
    results: list[Result] = []
    total = len(opts.models) * len(opts.batch_sizes)
    k = 0
    for model in opts.models:
        seq_len, image_size = zoo.effective_sizes(model, opts.seq_len, opts.image_size)
        for b in opts.batch_sizes:
            k += 1
            kept = [r for r in prior if (r.model, r.batch_size) == (model, b) and r.config in order]
            if {r.config for r in kept} == set(order):
                log(f"{model} b{b}: kept from the earlier run (--resume)")
                results += sorted(kept, key=lambda r: order[r.config])
                continue
            w = Workload(model, b, seq_len, image_size, opts.optimizer, opts.lr, opts.seed, opts.device)
            results += run_workload(w, specs, opts, log, position=f"{k}/{total}" if total > 1 else "")
            if done is not None:
                done(results)
    return results


class _Session:
    """One workload's configurations, alive together; a failure drops just that one."""

    def __init__(self, w: Workload, specs: list[ConfigSpec], opts: BenchOptions, log: Callable[[str], None]):
        from acir.runtime.measure import malloc_setting

        self.w, self.opts, self.log = w, opts, log
        self.tag = f"{w.model} b{w.batch_size}"
        self.results = {s.name: Result(w.model, w.batch_size, w.seq_len, w.image_size, s.name, s.family, s.budget,
                                       iters=opts.iters, warmup=opts.warmup, device=w.device,
                                       malloc=malloc_setting() if w.device == "cpu" else "cuda-caching")
                        for s in specs}
        self.runners: dict[str, Runner] = {}
        self.losses: dict[str, Any] = {}
        self.builder: Builder | None = None
        self.built = 0
        self.bar: Any = None  # the workload's progress bar (acir.progress), while it runs
        self.steps = 1 + opts.warmup + 1 + opts.iters  # per configuration: build, warm-up, peak, timed rounds
        self.taken: dict[str, int] = {}

    def doing(self, what: str) -> None:
        """Say on the bar what runs now (configuration, round)."""
        if self.bar is not None:
            self.bar.set_description_str(f"{self.tag}: {what}", refresh=True)

    def done_one(self, name: str) -> None:
        """Configuration ``name`` took one more step (or failed at it)."""
        self.taken[name] = self.taken.get(name, 0) + 1
        if self.bar is not None:
            self.bar.update(1)

    def fail(self, name: str, e: BaseException) -> None:
        import torch

        from acir.errors import AcirError

        r = self.results[name]
        r.status = "failed"
        if isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower():
            r.reason = f"out of memory: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        elif isinstance(e, AcirError):
            r.reason = str(e)
        else:
            r.reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        self.log(f"{self.tag}: {name} FAILED: {r.reason}")
        if self.bar is not None:  # the steps it will not take (the one it failed at is counted after this)
            self.bar.total -= max(0, self.steps - self.taken.get(name, 0) - 1)
            self.bar.refresh()
        self.runners.pop(name, None)
        self.losses.pop(name, None)
        gc.collect()
        if self.w.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def guarded(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - every failure is recorded, the run goes on
            self.fail(name, e)
            return None

    def seed(self, k: int) -> None:
        import torch

        torch.manual_seed(self.opts.step_seed + k)

    def sync(self) -> None:
        import torch

        if self.w.device.startswith("cuda"):
            torch.cuda.synchronize()


def run_workload(w: Workload, specs: list[ConfigSpec], opts: BenchOptions,
                 log: Callable[[str], None] = lambda s: None, position: str = "") -> list[Result]:
    """All ``specs`` on one workload (model and batch size): build, warm up, peaks, latencies, match.

    A configuration whose budget is another's measured peak (``=NAME``) is built once that
    peak is measured, then takes the same warm-up and peak iterations the others took. A
    progress bar on stderr (:mod:`acir.progress`) counts the builds and iterations and names
    the configuration and round; ``position`` ("2/6") says which workload of the run this is.
    """
    import torch

    from acir import progress

    s = _Session(w, specs, opts, log)
    first = [sp for sp in specs if not sp.matched]
    matched = [sp for sp in specs if sp.matched]
    label = f"acir-bench [{position}] {s.tag}" if position else f"acir-bench {s.tag}"
    with progress.bar(label, total=len(specs) * s.steps, unit="step", leave=False) as s.bar:
        _build(s, first)
        _warm_up(s, [sp.name for sp in first])
        _peaks(s, [sp.name for sp in first])
        if matched:
            _build(s, matched)
            _warm_up(s, [sp.name for sp in matched])
            _peaks(s, [sp.name for sp in matched])
        _latencies(s)
        s.doing("comparing states with noac")
        _match(s)
        _changes(s)
    s.bar = None
    out = list(s.results.values())
    s.runners.clear()
    s.losses.clear()
    del s
    gc.collect()
    torch._dynamo.reset()
    if w.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def _matched_budget(s: _Session, spec: ConfigSpec) -> str:
    """The measured peak, in bytes, of the configuration ``spec`` is matched to."""
    ref = s.results.get(spec.matched)
    if ref is None:
        raise BenchError(f"{spec.name}: no configuration {spec.matched!r} in this run to match "
                         f"(run it too: see --configs, --budgets and --torch-budgets)")
    if not ref.ok or ref.peak_bytes is None:
        raise BenchError(f"{spec.name}: {spec.matched} has no measured peak ({ref.reason or 'it failed'})")
    return f"{ref.peak_bytes}B"


def _build(s: _Session, specs: list[ConfigSpec]) -> None:
    """Build ``specs``; the builder (the shared capture and profile) is kept for the workload."""
    o = s.opts
    if s.builder is None:
        s.builder = Builder(s.w, profile_reps=o.profile_reps, time_limit=o.time_limit, blocks=o.blocks,
                            torch_backend=o.torch_backend)
    for spec in specs:
        s.built += 1
        s.log(f"{s.tag}: [{s.built}/{len(s.results)}] building {spec.name}")
        s.doing(f"building {spec.name} [{s.built}/{len(s.results)}]")

        def build(spec=spec):
            return timed_build(s.builder, spec, _matched_budget(s, spec) if spec.matched else "")

        built = s.guarded(spec.name, build)
        s.done_one(spec.name)
        if built is None:
            continue
        runner, dt = built
        s.runners[spec.name] = runner
        res = s.results[spec.name]
        res.setup_s = round(dt, 3)
        for k, v in runner.info.items():
            if hasattr(res, k):
                setattr(res, k, v)


def _timed_step(s: _Session, r, k: int) -> tuple:
    """(loss, wall seconds, CPU seconds of this process) of one step of runner ``r``, seeded for step ``k``."""
    s.seed(k)
    s.sync()
    c0, t0 = time.process_time(), time.perf_counter()
    loss = r.step()
    s.sync()
    return loss, time.perf_counter() - t0, time.process_time() - c0


def _warm_up(s: _Session, names: list[str]) -> None:
    """``warmup`` iterations of each of ``names`` in turn: the session's steps 0 .. warmup-1."""
    names = [n for n in names if n in s.runners]
    for it in range(s.opts.warmup):
        if not names:
            return
        s.log(f"{s.tag}: warm-up {it + 1}/{s.opts.warmup} of {len(names)}"
              + (" (compiles torch.compile's graphs)" if it == 0 else ""))
        for name in names:
            if name not in s.runners:
                continue
            s.doing(f"warm-up {it + 1}/{s.opts.warmup}, {name}")
            out = s.guarded(name, lambda r=s.runners[name]: _timed_step(s, r, it))
            s.done_one(name)
            if out is not None:
                s.losses[name] = out[0]
                if it == 0:
                    s.results[name].first_step_s = round(out[1], 4)


def _peaks(s: _Session, names: list[str]) -> None:
    """One iteration of each of ``names`` alone, under the memory tracker: the session's step ``warmup``."""
    for name in names:
        if name not in s.runners:
            continue

        def one(r=s.runners[name]):
            s.seed(s.opts.warmup)
            r.model.zero_grad(set_to_none=True)  # gradients left from the last eager step are not part of it
            return measure_peak(r, s.w.device, s.opts.allocator_peak)
        s.doing(f"peak of {name}")
        out = s.guarded(name, one)
        s.done_one(name)
        if out is not None:
            res = s.results[name]
            res.peak_bytes, loss, res.allocator_peak_bytes = out
            s.losses[name] = loss
            s.log(f"{s.tag}: peak {name}: {res.peak_bytes / 2**20:.1f} MiB")


def _latencies(s: _Session) -> None:
    """``iters`` rounds, one iteration of every configuration each, the order rotated: steps warmup+1 ..."""
    times: dict[str, list[float]] = {name: [] for name in s.runners}
    cpu: dict[str, list[float]] = {name: [] for name in s.runners}
    for it in range(s.opts.iters):
        names = list(s.runners)
        rot = names[it % len(names):] + names[:it % len(names)] if names else []
        for name in rot:
            r = s.runners[name]
            s.doing(f"timed round {it + 1}/{s.opts.iters}, {name}")
            out = s.guarded(name, lambda r=r: _timed_step(s, r, s.opts.warmup + 1 + it))
            s.done_one(name)
            if out is not None:
                s.losses[name] = out[0]
                times[name].append(out[1])
                cpu[name].append(out[2])
        s.log(f"{s.tag}: timed round {it + 1}/{s.opts.iters}: "
              + ", ".join(f"{k} {v[-1] * 1e3:.0f} ms" for k, v in times.items() if k in s.runners and v))
    for name in s.runners:
        res = s.results[name]
        res.latencies_s = [round(t, 6) for t in times[name]]
        res.latency_s = statistics.median(times[name])
        res.cpu_s = round(statistics.median(cpu[name]), 6)


def _match(s: _Session) -> None:
    """Compare every configuration's state after the same steps with noac's (eager's without noac)."""
    ref_name = "noac" if "noac" in s.runners else ("eager" if "eager" in s.runners else None)
    for name, res in s.results.items():
        if name in s.losses:
            res.loss = float(s.losses[name])
        if not res.ok:
            continue
        if ref_name is None:
            res.match, res.mismatch = "n/a", "no reference: noac and eager failed"
            continue
        if name == ref_name:
            res.match = "ref"
            continue
        res.match, res.mismatch, res.max_abs_diff = compare(s.runners[ref_name], s.losses[ref_name],
                                                            s.runners[name], s.losses[name])
        if ref_name != "noac":
            res.mismatch = f"(vs {ref_name}) {res.mismatch}".strip()


def compare(ref: Runner, ref_loss, other: Runner, loss) -> tuple[str, str, float]:
    """("yes"|"no", what differs, the largest absolute difference), bit for bit."""
    import torch

    from acir.runtime.check import compare_states

    diffs = compare_states(ref.model, ref.opt, other.model, other.opt)
    parts = []
    worst = max((d.max_abs_diff for d in diffs if d.mismatched), default=0.0)
    a, b = ref_loss.detach().cpu(), loss.detach().cpu()
    if not torch.equal(a, b):
        parts.append(f"loss {float(a):.9g} vs {float(b):.9g}")
        worst = max(worst, abs(float(a) - float(b)))
    for kind, label in (("param", "params"), ("optimizer", "optimizer state"), ("buffer", "buffers")):
        group = [d for d in diffs if d.what.startswith(kind)]
        bad = [d for d in group if d.mismatched]
        if bad:
            parts.append(f"{label} {len(bad)}/{len(group)} differ (max {max(d.max_abs_diff for d in bad):.3g})")
    return ("no" if parts else "yes"), "; ".join(parts), worst


def _changes(s: _Session) -> None:
    def rel(a, b):
        return None if a is None or not b else round(a / b - 1, 6)

    for ref_name, suffix in (("noac", ""), ("eager", "_vs_eager")):
        ref = s.results.get(ref_name)
        if ref is None or not ref.ok:
            continue
        for res in s.results.values():
            if res.ok:
                setattr(res, "peak_change" + suffix, rel(res.peak_bytes, ref.peak_bytes))
                setattr(res, "latency_change" + suffix, rel(res.latency_s, ref.latency_s))
                if not suffix:
                    res.cpu_change = rel(res.cpu_s, ref.cpu_s)


_TRACKER = None


def _tracker():
    """The live-storage tracker of :mod:`acir.runtime.measure`, marked so that Dynamo runs compiled code under it."""
    global _TRACKER
    if _TRACKER is None:
        from acir.runtime.measure import live_storage_tracker

        class CompileAwareTracker(type(live_storage_tracker())):
            @classmethod
            def ignore_compile_internals(cls) -> bool:
                return True

        _TRACKER = CompileAwareTracker
    return _TRACKER()


def measure_peak(r: Runner, device: str, allocator_peak: bool = False) -> tuple[int, Any, int | None]:
    """(peak bytes, loss, allocator peak or None) of one iteration of ``r``.

    CPU: live tensor storages at the dispatcher, the step's persistent tensors included.
    With ``allocator_peak``, the profiler's allocation events are summed too: that also
    counts the scratch memory operators allocate and free inside themselves.
    CUDA: ``max_memory_allocated`` less what was allocated before the step and is not this
    configuration's (the other configurations' models stay alive meanwhile).
    """
    import torch

    persistent = r.persistent()
    if device.startswith("cuda"):
        own = _storage_bytes(persistent)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        loss = r.step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before + own, loss, None
    tracker = _tracker()
    tracker.register_all(persistent)
    base = tracker.current
    if not allocator_peak:
        with tracker:
            loss = r.step()
        return tracker.peak, loss, None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with tracker:
            loss = r.step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    cur = top = 0
    for _, nbytes in events:
        cur += nbytes
        top = max(top, cur)
    return tracker.peak, loss, base + top


def _storage_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        s = t.untyped_storage()
        if s.data_ptr() not in seen:
            seen.add(s.data_ptr())
            total += s.nbytes()
    return total


def stderr_log(quiet: bool = False) -> Callable[[str], None]:
    """Progress lines on stderr, each with the seconds since the start."""
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if not quiet:  # through acir.progress, so that a line does not tear the bars drawn under it
            from acir import progress

            progress.write(f"acir-bench: [{time.perf_counter() - t0:7.1f} s] {msg}")

    return log

