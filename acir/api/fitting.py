"""``acir.fit``: the largest batch (or sequence length) whose training step fits a memory size, and its cost.

The first question after an out-of-memory error is "what is the largest batch I can train in
16 GiB, and what does it cost?". The answer is a search over batch sizes (double, then
bisect), and how it is built follows from what is exact and what is not:

* **Memory is exact per capture.** Each candidate is captured under fake tensors (no memory),
  and the simulator gives its no-AC peak, the smallest peak recomputation reaches (the floor)
  and the planned peak at the size, byte for byte what the rewritten step then measures. So
  every candidate is captured; none is guessed.
* **Times are predicted, then measured where the answer is decided.** The planner needs
  per-node run times, and profiling every candidate would be slow (and a candidate cannot run
  without its plan). Where nothing needs recomputing the overhead is 0 whatever the times, so
  the first candidate whose plan recomputes something is profiled for real -- through its plan,
  rewritten, so that the run fits the size too -- and the others' node times are predicted from
  it: each node's time scaled by how much more it reads or writes (bytes in or out, whichever
  grows more: a proxy for its FLOPs), and once two sizes are profiled, read off the line through
  both (a fixed cost plus a cost per byte). Captures of one model at two sizes have the same
  nodes, matched by position (by op and occurrence when they differ). The answer and its next
  neighbour are then profiled for real the same way and re-planned with the measured times; the
  search goes on from there if a verdict changed. Every row says which times it used. (A tiny
  first profile would be cheaper but predicts badly: from seq-len 1, bert-tiny's step at 266 was
  predicted at 1382 s, measured 2.4 s -- a tiny step's node times are fixed costs, not bytes.)

A candidate fits when the planner finds a plan whose predicted peak is at most the size and
whose predicted overhead (recompute time / profiled iteration time) is at most the limit. The
floor is the lowest peak the planner's search reaches (μ-TWO's greedy with nothing left to
keep, or recompute-all), which is the floor the planner passes report.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from acir.api.fit_times import Capture, Times, affine, profile_block, proxy_times, scaled, traffic
from acir.api.memory_sizes import available_ram, no_room, out_of_memory, resolve_memory
from acir.errors import AcirError, UsageError
from acir.frontend.step import CaptureOptions
from acir.ir.analyses import LIVENESS, PLAN, PROFILE

__all__ = ["DEFAULT_MAX", "FitResult", "FitRow", "NothingFits", "available_ram", "fit", "resolve_memory"]

#: The largest batch size (or sequence length) tried unless told otherwise: a model that fits any
#: batch stops here.
DEFAULT_MAX = 65536
#: What may be searched, by the names the CLI and the API accept.
SEARCHES = {"batch": "batch_size", "batch-size": "batch_size", "batch_size": "batch_size",
            "seq-len": "seq_len", "seq_len": "seq_len"}
#: How many times the answer and its neighbour are measured and the search resumed before it stops.
_MAX_ROUNDS = 4


class NothingFits(AcirError):
    """Not even the smallest candidate fits the memory (its floor is above it)."""


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class FitRow:
    """One candidate: its memory figures (exact, from the simulator) and its plan's cost (from the times named)."""

    batch_size: int
    seq_len: int
    no_ac_peak_bytes: int            # the captured graph's simulated peak, nothing recomputed
    floor_bytes: int                 # the smallest peak the planner reaches
    predicted_peak_bytes: int | None  # the plan's peak at the memory size; None when no plan fits
    predicted_recompute_s: float | None
    iteration_s: float               # the step's time without recomputation (measured or predicted)
    predicted_overhead: float | None  # predicted_recompute_s / iteration_s
    recomputed: int                  # activations the plan recomputes
    fits: bool
    reason: str                      # "fits", or why not
    times: str                       # "measured", "predicted" (scaled from times_from) or "proxy" (no profile)
    times_from: int                  # the batch size (or sequence length) whose profile the times come from
    chosen: tuple[tuple[int, int], ...] = field(default=(), repr=False)  # (storage, recompute count) per recomputed

    @property
    def fits_memory(self) -> bool:
        return self.predicted_peak_bytes is not None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "chosen"}


@dataclass
class FitResult:
    """The answer of :func:`fit`, with every candidate it looked at (``rows``) and what was measured."""

    model: str
    search: str                      # "batch_size" or "seq_len"
    memory_bytes: int
    memory_source: str
    max_overhead: float | None       # a fraction (0.2 = 20%); None: no limit
    planner: str
    device: str
    batch_size: int | None           # the answer (batch search) or the fixed batch (sequence search)
    seq_len: int | None              # the answer (sequence search) or the fixed length (0: none)
    image_size: int
    predicted_peak_bytes: int | None
    predicted_overhead: float | None
    predicted_recompute_s: float | None
    iteration_s: float | None
    floor_bytes: int                 # the answer's, or the smallest candidate's when nothing fits
    no_ac_peak_bytes: int
    times: str                       # the answer's: "measured", "predicted" or "proxy"
    capped: bool                     # the largest value allowed fits: the real limit may be higher
    limit: int                       # that largest value allowed
    next: FitRow | None              # the candidate just above the answer (None when capped)
    rows: list[FitRow]
    measurements: list[dict[str, Any]]  # per real profile: predicted vs measured
    profiling: dict[str, Any]        # how much profiling the predictions saved
    verify: dict[str, Any] | None    # the answer rewritten and run, when asked
    notes: list[str]
    elapsed_s: float

    @property
    def value(self) -> int | None:
        """The answer of the search: a batch size or a sequence length (None when nothing fits)."""
        return self.batch_size if self.search == "batch_size" else self.seq_len

    @property
    def found(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "next":
                v = v.to_dict() if v is not None else None
            elif f.name == "rows":
                v = [r.to_dict() for r in v]
            out[f.name] = v
        out["measured"] = [r[self.search] for r in out["rows"] if r["times"] == "measured"]
        out["predicted"] = [r[self.search] for r in out["rows"] if r["times"] != "measured"]
        return out


class _NotATty:
    """``sys.stderr`` that says it is not a terminal, so that the profile pass keeps its progress to itself."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


# ---------------------------------------------------------------------------------------------
# The search


class _Fit:
    def __init__(self, template: CaptureOptions, dim: str, memory: int, max_overhead: float | None, planner: str,
                 limit: int, multiple_of: int, reps: int, warmup: int, measure: bool,
                 progress: Callable[[str], None] | None, time_limit_s: float) -> None:
        self.template, self.dim, self.memory = template, dim, memory
        self.max_overhead, self.planner, self.limit, self.k = max_overhead, planner, limit, multiple_of
        self.reps, self.warmup, self.measure_on, self.progress = reps, warmup, measure, progress
        self.time_limit_s = time_limit_s
        self.captures: dict[int, Capture] = {}
        self.measured: dict[int, Times] = {}
        self.rows: dict[int, tuple[tuple[str, int], FitRow]] = {}
        self.measurements: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.profile_s = 0.0
        self.capture_s = 0.0
        self.unmeasurable: set[int] = set()

    # -- names

    def _label(self, v: int) -> str:
        return f"{'batch' if self.dim == 'batch_size' else 'seq-len'} {v}"

    def _say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)

    # -- captures and times

    def _capture(self, v: int) -> Capture:
        cap = self.captures.get(v)
        if cap is None:
            from acir.api.capturing import capture

            t0 = time.perf_counter()
            module = capture(CaptureOptions(**{**self.template.__dict__, self.dim: v}))
            self.capture_s += time.perf_counter() - t0
            cap = Capture(v, module, tuple(n.op for n in module.graph.nodes), traffic(module))
            self.captures[v] = cap
        return cap

    def _times(self, v: int) -> Times:
        if v in self.measured:
            return self.measured[v]
        cap = self._capture(v)
        if not self.measured:
            return proxy_times(cap)
        near = sorted(self.measured, key=lambda m: (abs(math.log(v / m)), -m))  # the nearest first, larger on ties
        if len(near) == 1:
            return scaled(self.measured[near[0]], self.captures[near[0]], cap)
        a, b = near[0], near[1]
        return affine(self.measured[a], self.captures[a], self.measured[b], self.captures[b], cap)

    # -- one candidate

    def _planner(self):
        """The planner pass at the memory size, exactly as ``acir-opt -p 'mutwo{budget=...}'`` would run it."""
        from acir.pipeline.registry import instantiate
        from acir.pipeline.syntax import PassSpec

        opts = {"budget": str(self.memory)}
        if self.planner == "optimal":
            opts["time-limit"] = repr(float(self.time_limit_s))
        return instantiate(PassSpec(self.planner, opts))

    def _plan(self, cap: Capture, times: Times):
        """(plan block or None, floor, no-AC peak) of ``cap`` planned at the memory with ``times``, by the
        planner pass itself (so that a row is the plan ``acir-opt`` makes from the same times)."""
        from acir.errors import InfeasibleBudget
        from acir.pipeline.manager import PassManager
        from acir.pipeline.registry import build_pipeline

        m = cap.module
        m.analyses[PROFILE] = profile_block(m, times)
        m.analyses.pop(LIVENESS)
        m.analyses.pop(PLAN)
        PassManager(build_pipeline("liveness"), verify=False).run(m)
        no_ac = m.analyses[LIVENESS].simulated_peak_bytes
        try:
            PassManager([self._planner()], verify=False).run(m)
        except InfeasibleBudget as e:  # states the lower of the floor and the planner's best peak
            return None, e.floor_bytes, no_ac
        plan = m.analyses[PLAN]
        return plan, plan.floor_bytes, plan.no_ac_peak_bytes or no_ac

    def row(self, v: int) -> FitRow:
        from acir.units import format_bytes

        times = self._times(v)
        key = (times.source, times.origin)
        cached = self.rows.get(v)
        if cached is not None and cached[0] == key:
            return cached[1]
        cap = self._capture(v)
        plan, floor, no_ac = self._plan(cap, times)
        it = times.iteration_s
        b = v if self.dim == "batch_size" else self.template.batch_size
        s = v if self.dim == "seq_len" else cap.module.header.provenance.seq_len
        if plan is not None:
            rec = plan.predicted_recompute_s
            overhead = rec / it if it > 0 else (0.0 if rec == 0 else math.inf)
            over = self.max_overhead is not None and overhead > self.max_overhead + 1e-12
            reason = (f"overhead {100 * overhead:.1f}% is over the limit {100 * (self.max_overhead or 0):.4g}%"
                      if over else "fits")
            chosen = tuple((t.storage, t.recompute_count) for t in plan.recomputed())
            row = FitRow(b, s, no_ac, floor, plan.predicted_peak_bytes, rec, it, overhead, len(chosen), not over,
                         reason, times.source, times.origin, chosen)
        else:
            if floor > self.memory:
                reason = (f"floor {format_bytes(floor)} ({floor} B) is over {format_bytes(self.memory)} "
                          f"({self.memory} B)")
            else:
                reason = f"{self.planner} finds no plan within {format_bytes(self.memory)}"
            row = FitRow(b, s, no_ac, floor, None, None, it, None, 0, False, reason, times.source, times.origin)
        if cached is None:
            self._say(f"{self._label(v)}: no-AC {format_bytes(no_ac)}, floor {format_bytes(floor)}"
                      + (f", planned {format_bytes(row.predicted_peak_bytes)}, "
                         f"overhead {100 * (row.predicted_overhead or 0):.1f}%" if row.fits_memory else "")
                      + f" ({times.source} times) -> {'fits' if row.fits else 'no: ' + reason}")
        self.rows[v] = (key, row)
        if not self.measured and row.recomputed and self._can_measure(v):
            # the first candidate whose plan recomputes anything: below it the overhead is 0 whatever the
            # times, from it on they decide; it becomes the profile the others' times are scaled from
            self.measure(v)
            return self.row(v)
        return row

    # -- profiling for real

    def _can_measure(self, v: int) -> bool:
        if not self.measure_on or v in self.measured or v in self.unmeasurable:
            return False
        r = self.row(v)
        return r.fits_memory

    def measure(self, v: int) -> None:
        """Profile ``v`` for real through its plan at the memory (rewritten, so the run fits too)."""
        from acir.frontend.rebuild import rebuild
        from acir.passes.profile import profile_step
        from acir.pipeline.manager import PassManager
        from acir.pipeline.registry import build_pipeline
        from acir.units import format_bytes

        row = self.row(v)
        if row.predicted_peak_bytes is None:
            return
        device = self.template.device
        why = no_room(device, row.predicted_peak_bytes)
        if why is not None:
            self.unmeasurable.add(v)
            self.notes.append(f"{self._label(v)} was not profiled for real: {why}; its times stay predicted")
            if not self.measured:  # no profile at all yet: the largest smaller candidate that can run here
                smaller = [u for u, (_, r) in self.rows.items() if u < v and r.fits_memory and u not in
                           self.unmeasurable and no_room(device, r.predicted_peak_bytes or 0) is None]
                if smaller:
                    self.measure(max(smaller))
            return
        self._say(f"{self._label(v)}: profiling for real (planned peak {format_bytes(row.predicted_peak_bytes)}) ...")
        cap = self.captures[v]
        times = self._times(v)
        work = copy.deepcopy(cap.module)
        work.analyses[PROFILE] = profile_block(work, times)
        work.analyses.pop(LIVENESS)
        work.analyses.pop(PLAN)
        PassManager(build_pipeline("liveness") + [self._planner()] + build_pipeline("rewrite"),
                    verify=False).run(work)
        t0 = time.perf_counter()
        saved = sys.stderr
        sys.stderr = _NotATty(saved)
        model = opt = batch = None
        try:
            model, opt, _, batch = rebuild(work.header.provenance)
            prof = profile_step(work, model, opt, batch, self.reps, self.warmup)
        except Exception as e:
            if not out_of_memory(e):
                raise
            del model, opt, batch
            self.unmeasurable.add(v)
            self.notes.append(f"{self._label(v)} ran out of memory when profiled for real ({type(e).__name__}); "
                              "its times stay predicted")
            return
        finally:
            sys.stderr = saved
        del model, opt, batch
        wall = time.perf_counter() - t0
        self.profile_s += wall
        by_id = {n.id: p.run_s for n, p in zip(work.graph.nodes, prof.nodes) if n.recompute_of is None}
        copies_s = sum(p.run_s for n, p in zip(work.graph.nodes, prof.nodes) if n.recompute_of is not None)
        node_s = tuple(by_id.get(n.id, 0.0) for n in cap.module.graph.nodes)
        total = sum(p.run_s for p in prof.nodes)
        iteration = prof.iteration_s * sum(node_s) / total if total else prof.iteration_s
        measured = Times(node_s, iteration, "measured", v)
        before = row
        self.measured[v] = measured
        after = self.row(v)
        # the plan made with the predicted times, priced with the measured ones (row() left them on the module)
        from acir.analysis.candidates import build

        cands = build(cap.module)
        index = {sid: i for i, sid in enumerate(cands.storages)}
        same_plan_s = sum(count * cands.problem.times[index[sid]] for sid, count in before.chosen if sid in index)
        pred = sum(times.node_s)
        self.measurements.append({
            self.dim: v, "times_before": before.times, "times_from": before.times_from,
            "predicted_iteration_s": before.iteration_s, "measured_iteration_s": iteration,
            "node_time_error": (sum(abs(a - b) for a, b in zip(times.node_s, node_s)) / sum(node_s)
                                if sum(node_s) else 0.0),
            "predicted_node_s": pred, "measured_node_s": sum(node_s),
            "predicted_recompute_s": before.predicted_recompute_s, "same_plan_measured_recompute_s": same_plan_s,
            "recompute_copies_measured_s": copies_s, "recomputed": before.recomputed,
            "replanned_recompute_s": after.predicted_recompute_s, "replanned_overhead": after.predicted_overhead,
            "profile_peak_bytes": prof.measured_peak_bytes, "profile_s": wall})
        guess = f" (predicted {before.iteration_s * 1e3:.1f} ms)" if before.times == "predicted" else ""
        self._say(f"{self._label(v)}: measured iteration {iteration * 1e3:.1f} ms{guess}; re-planned: "
                  + (f"overhead {100 * (after.predicted_overhead or 0):.1f}%" if after.fits_memory else after.reason))

    # -- the boundary

    def _boundary(self, lo: int, hi: int | None, top: int) -> tuple[int, int | None]:
        """Adjacent (lo, hi) in grid steps: ``lo`` fits (0: none does), ``hi`` does not (None: ``lo`` is the top)."""
        k = self.k
        if hi is None:
            n = lo * 2 if lo else 1
            while True:
                n = min(n, top)
                if n <= lo:
                    return lo, None
                if self.row(n * k).fits:
                    lo = n
                    n *= 2
                else:
                    hi = n
                    break
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.row(mid * k).fits:
                lo = mid
            else:
                hi = mid
        return lo, hi

    def search(self) -> tuple[int, int | None, int]:
        """(lo, hi, top) in grid steps once the answer and its neighbour are measured (as far as they can be)."""
        top = self.limit // self.k
        if top < 1:
            raise UsageError(f"the largest {self._label(0).split()[0]} allowed, {self.limit}, is below "
                             f"--multiple-of {self.k}")
        lo, hi = 0, None
        for _ in range(_MAX_ROUNDS):
            lo, hi = self._boundary(lo, hi, top)
            todo = [n for n in (lo, hi) if n and n <= top and self._can_measure(n * self.k)]
            if not todo:
                break
            for n in todo:
                self.measure(n * self.k)
            if lo and not self.row(lo * self.k).fits:
                hi = lo
                lo = next((n for n in sorted(self._visited(), reverse=True) if n < hi and self.row(n * self.k).fits),
                          0)
            elif hi and self.row(hi * self.k).fits:
                lo = hi
                hi = next((n for n in sorted(self._visited()) if n > lo and not self.row(n * self.k).fits), None)
        else:
            lo, hi = self._boundary(lo, hi, top)
            self.notes.append(f"measured times moved the answer {_MAX_ROUNDS} times; the last candidates' times "
                              "are predicted")
        return lo, hi, top

    def _visited(self) -> list[int]:
        return [v // self.k for v in self.rows]


def fit(model: str, memory: int | str, *, max_overhead: float | None = None, planner: str = "mutwo",
        search: str = "batch", batch_size: int = 2, seq_len: int = 0, image_size: int = 0, optimizer: str = "adam",
        lr: float = 1e-3, seed: int = 0, device: str | None = None, schedule: str = "interleaved",
        max_value: int = DEFAULT_MAX, multiple_of: int = 1, reps: int = 3, warmup: int = 1, measure: bool = True,
        verify: bool = False, time_limit_s: float = 30.0,
        progress: Callable[[str], None] | None = None) -> FitResult:
    """The largest batch size (``search="batch"``) or sequence length (``search="seq-len"``, at
    ``batch_size``) of ``model`` whose planned training step fits ``memory`` at no more than
    ``max_overhead`` predicted recompute overhead (a fraction: 0.2 = 20%; None: no limit).

    ``model`` is a zoo name or ``path/to/file.py:make`` as for ``acir-capture``; ``memory`` is bytes,
    a size (``"16GiB"``), ``"cuda"`` (the device's free memory) or ``"ram"`` (available RAM). Values
    are multiples of ``multiple_of`` up to ``max_value``. With ``measure`` (the default) the first
    candidate that recomputes anything, the answer and its neighbour are profiled for real (``reps``
    timed iterations after ``warmup``; without, times are a proxy: bytes moved); with ``verify``,
    the answer is rewritten and run, and its measured peak compared with ``memory``. ``progress``
    gets one line per candidate. Nothing fitting is an answer (``result.found`` is False,
    ``floor_bytes`` what the smallest candidate needs), not an error.
    """
    import torch

    from acir.frontend import zoo

    t_start = time.perf_counter()
    dim = SEARCHES.get(search)
    if dim is None:
        raise UsageError(f"unknown search {search!r}; use batch or seq-len")
    if planner not in ("mutwo", "optimal"):
        raise UsageError(f"unknown planner {planner!r}; use mutwo or optimal")
    for name, n, least in (("max_value", max_value, 1), ("multiple_of", multiple_of, 1), ("reps", reps, 1),
                           ("warmup", warmup, 0), ("batch_size", batch_size, 1), ("seq_len", seq_len, 0),
                           ("image_size", image_size, 0)):
        if isinstance(n, bool) or not isinstance(n, int) or n < least:
            raise UsageError(f"{name} must be a whole number of at least {least}, not {n!r}")
    if max_overhead is not None and not (0 <= max_overhead < math.inf):
        raise UsageError(f"the overhead limit must be a finite fraction of at least 0 (0.2 = 20%), not {max_overhead}")
    if dim == "seq_len":
        entry = zoo.ZOO.get(model)
        if entry is None or not entry.default_seq_len:
            seqs = ", ".join(k for k, e in zoo.ZOO.items() if e.default_seq_len)
            raise UsageError(f"searching the sequence length needs a model that has one ({seqs}); {model} has none")
    memory_bytes, source = resolve_memory(memory)
    if device is None:
        device = "cuda" if isinstance(memory, str) and memory.strip().lower() == "cuda" else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AcirError(f"device {device} asked for, but torch sees no CUDA device on this machine")
    template = CaptureOptions(model, batch_size=batch_size, seq_len=seq_len, image_size=image_size,
                              optimizer=optimizer, lr=lr, seed=seed, device=device, schedule=schedule)
    f = _Fit(template, dim, memory_bytes, max_overhead, planner, max_value, multiple_of, reps, warmup, measure,
             progress, time_limit_s)
    rng = torch.random.get_rng_state()
    try:
        lo, hi, top = f.search()
        answer = f.row(lo * multiple_of) if lo else None
        nxt = f.row(hi * multiple_of) if lo and hi is not None and hi <= top else None
        rows = [f.row(v) for v in sorted(f.rows)]  # every row with the best times there are now
        check = _verify(f, lo * multiple_of) if verify and answer is not None else None
    finally:
        torch.random.set_rng_state(rng)
    first = f.row(multiple_of)
    pick = answer or first
    prov = f.captures[pick.batch_size if dim == "batch_size" else pick.seq_len].module.header.provenance
    n_rows, n_measured = len(rows), len(f.measured)
    est = 0.0  # each unprofiled row at the cost of the nearest real profile, scaled by its iteration time
    for r in rows:
        if r.times == "measured" or not f.measurements:
            continue
        v = r.batch_size if dim == "batch_size" else r.seq_len
        m = min(f.measurements, key=lambda m: abs(math.log(v / m[dim])))
        if m["measured_iteration_s"] > 0:
            est += m["profile_s"] * r.iteration_s / m["measured_iteration_s"]
    profiling = {"candidates": n_rows, "profiled": n_measured, "predicted": n_rows - n_measured,
                 "profile_s": f.profile_s, "capture_s": f.capture_s,
                 "estimated_profile_s_saved": est, "reps": reps, "warmup": warmup}
    return FitResult(
        model=model, search=dim, memory_bytes=memory_bytes, memory_source=source, max_overhead=max_overhead,
        planner=planner, device=device,
        batch_size=(answer.batch_size if answer else None) if dim == "batch_size" else batch_size,
        seq_len=(answer.seq_len if answer else None) if dim == "seq_len" else prov.seq_len,
        image_size=prov.image_size,
        predicted_peak_bytes=answer.predicted_peak_bytes if answer else None,
        predicted_overhead=answer.predicted_overhead if answer else None,
        predicted_recompute_s=answer.predicted_recompute_s if answer else None,
        iteration_s=answer.iteration_s if answer else None,
        floor_bytes=pick.floor_bytes, no_ac_peak_bytes=pick.no_ac_peak_bytes,
        times=answer.times if answer else first.times, capped=answer is not None and hi is None, limit=max_value,
        next=nxt, rows=rows, measurements=f.measurements, profiling=profiling, verify=check, notes=f.notes,
        elapsed_s=time.perf_counter() - t_start)


def _verify(f: _Fit, v: int) -> dict[str, Any]:
    """Rewrite ``v``'s plan (with the best times) and run it with the real model, measuring its peak
    as ``acir-run --measure`` does."""
    from acir.frontend.rebuild import rebuild
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline
    from acir.runtime.lower import BoundStep, lower
    from acir.runtime.measure import measure

    row = f.row(v)
    assert row.predicted_peak_bytes is not None
    device = f.template.device
    why = no_room(device, row.predicted_peak_bytes)
    if why is not None:
        return {"ran": False, "reason": why}
    f._say(f"{f._label(v)}: verifying: rewrite and run ...")
    work = copy.deepcopy(f.captures[v].module)
    work.analyses[PROFILE] = profile_block(work, f._times(v))
    work.analyses.pop(LIVENESS)
    work.analyses.pop(PLAN)
    PassManager(build_pipeline("liveness") + [f._planner()] + build_pipeline("rewrite")).run(work)
    try:
        model, opt, _, batch = rebuild(work.header.provenance)
        step = BoundStep(work, model, opt, lower(work))
        m = measure(lambda: step(batch), lambda: step.inputs(batch), 3, 1, device)
    except Exception as e:
        if not out_of_memory(e):
            raise
        return {"ran": True, "out_of_memory": True, "measured_peak_bytes": None, "memory_bytes": f.memory,
                "within": False, "predicted_peak_bytes": row.predicted_peak_bytes, "device": device,
                "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    live = work.analyses.get(LIVENESS)
    return {"ran": True, "measured_peak_bytes": m.peak_bytes, "memory_bytes": f.memory,
            "within": m.peak_bytes <= f.memory, "predicted_peak_bytes": row.predicted_peak_bytes,
            "simulated_peak_bytes": live.simulated_peak_bytes if live is not None else None,
            "latency_s": m.latency_s, "iters": 3, "malloc": m.malloc, "device": device}
