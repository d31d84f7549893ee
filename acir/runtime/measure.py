"""Measuring a training step: peak memory and latency, the way every acir report does.

Peak memory on the CPU is the peak of live tensor *storage* bytes over one iteration,
tracked at the dispatcher: every storage an operator returns is registered once (views
and in-place results add nothing) and released by a weak-reference finaliser when it
dies. Storages that exist before the step (parameters, buffers, optimizer state, the
batch) are pre-registered, so that the total includes them and in-place updates are not
counted as new memory. ``ru_maxrss`` would be useless: glibc keeps freed memory. On CUDA
the allocator's own ``max_memory_allocated`` is used.

Latency is the median of N iterations after warm-up (synchronised on CUDA).

Latency on the CPU, and glibc malloc
------------------------------------

With glibc's default settings every block over the mmap threshold (dynamic, up to 32 MiB)
is mapped for each allocation and unmapped when freed, and freed memory at the top of the
heap is given back, so each iteration faults its big tensors' pages in again (ResNet-152,
batch 32, without AC: ~508k page faults and ~3.8 s of kernel time per iteration). A step
that saves memory then looks free or even faster: the demo once showed the rewritten
ResNet-152 step 25% *faster* than no AC, and +6.7% with freed memory kept. A GPU's caching
allocator keeps freed memory; so does acir, by default, wherever it reports a latency
(``acir-run --measure``, the ``profile`` pass, ``acir-bench``): :func:`ensure_malloc`, called
by every measuring function here and by the profile pass, keeps freed memory in the heap
unless the process chose otherwise (:func:`use_malloc`: ``acir-run --malloc default``,
``profile{malloc=default}``). Every figure says which (:func:`malloc_setting`:
``heap-retained`` or ``default``).

How: ``mallopt(M_MMAP_MAX, 0)`` (no block is mapped on its own: big ones come from the heap
too) and ``mallopt(M_TRIM_THRESHOLD, -1)`` (the heap is never trimmed; -1 "disables
trimming completely", mallopt(3)), called through ctypes when first needed. These are the
two parameters the tunables ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736``
(:data:`HEAP_RETAINED`, ../shared/TORCH-NOTES.md) set, but tunables are read only when a
process starts, so they need the CLI to re-execute itself: ``acir-bench`` does (its results
record the variable), but a re-executed process sets the variable for every child too, a
tool called in-process (``main(argv)``, the tests, ``acir.compile``) never gets it, and
re-execution must rebuild argv and the interpreter's flags exactly. ``mallopt`` is
documented glibc API, applies at once to every arena of the running process, and needs none
of that. Blocks mapped before the call stay mapped until freed; what the step allocates
afterwards is what is measured, and after a few iterations its page faults drop to none,
exactly as with the tunables (tests/test_run.py: a step of four 32-80 MiB blocks faults ~61k
pages per iteration with the defaults, none with the heap kept). The choice is process-wide
and cannot be undone (glibc has no call that restores its dynamic mmap threshold), so asking
for ``default`` once the heap is kept is an error rather than a silent mislabel. The cost is
that the process's resident memory stays at its high-water mark, as with a caching
allocator, plus what fragmentation adds in the first iterations before the heap settles.
Without glibc (``mallopt`` missing) nothing changes and the setting reads ``default``.
"""

from __future__ import annotations

import os
import statistics
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable

#: The glibc tunables that keep freed memory in the heap from process start (see ../shared/TORCH-NOTES.md).
HEAP_RETAINED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
#: The settings a figure can be measured with (``--malloc``, ``profile{malloc=...}``).
MALLOC_SETTINGS = ("heap-retained", "default")

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
_retained_by_mallopt = False
_chosen: str | None = None  # what this process asked for through use_malloc, if anything


def malloc_setting() -> str:
    """How this process's glibc malloc treats freed memory, for reports: ``heap-retained``
    (kept in the heap: tunables at start, or :func:`use_malloc`) or ``default``."""
    if _retained_by_mallopt or "mmap_max=0" in os.environ.get("GLIBC_TUNABLES", ""):
        return "heap-retained"
    return "default"


def _mallopt_retain() -> bool:
    """Keep freed memory in the heap from now on (module docstring); False without glibc's mallopt."""
    global _retained_by_mallopt
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1
    _retained_by_mallopt = _retained_by_mallopt or ok
    return ok


def use_malloc(setting: str) -> str:
    """Measure this process with ``setting`` (one of :data:`MALLOC_SETTINGS`); returns the
    setting in effect. ``default`` once the heap is retained (by this call earlier, or by
    ``GLIBC_TUNABLES``) is a :class:`~acir.errors.RunError`: it cannot be undone in-process."""
    global _chosen
    from acir.errors import RunError

    if setting not in MALLOC_SETTINGS:
        raise RunError(f"unknown malloc setting {setting!r}; use {' or '.join(MALLOC_SETTINGS)}")
    if setting == "heap-retained":
        if malloc_setting() != "heap-retained":
            _mallopt_retain()
    elif malloc_setting() == "heap-retained":
        why = ("GLIBC_TUNABLES keeps it (unset it)" if "mmap_max=0" in os.environ.get("GLIBC_TUNABLES", "")
               else "an earlier measurement in this process kept it (glibc cannot undo that; use a new process)")
        raise RunError(f"malloc 'default' asked for, but freed memory is already kept in the heap: {why}")
    _chosen = setting
    return malloc_setting()


def ensure_malloc() -> str:
    """The setting to measure with: the one this process chose, else ``heap-retained`` (applied
    now). Every measuring function calls it; returns :func:`malloc_setting`."""
    if _chosen is None:
        return use_malloc("heap-retained")
    return malloc_setting()


def _tracker_class():
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveStorageTracker(TorchDispatchMode):
        """Counts live tensor-storage bytes; ``peak`` is the maximum seen."""

        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, int] = {}
            self.current = 0
            self.peak = 0
            self.after_op: Callable[[Any, int], None] | None = None

        def _free(self, key: int) -> None:
            self.current -= self.live.pop(key, 0)

        def register(self, t) -> None:
            import torch

            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                return
            s = t.untyped_storage()
            key = id(s)
            if key in self.live:
                return
            n = s.nbytes()
            self.live[key] = n
            self.current += n
            weakref.finalize(s, self._free, key)
            if self.current > self.peak:
                self.peak = self.current

        def register_all(self, tensors: Iterable) -> None:
            for t in tensors:
                self.register(t)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                self.register(t)
            if self.after_op is not None:
                self.after_op(func, self.current)
            return out

    return LiveStorageTracker


def live_storage_tracker():
    """A fresh dispatch-level tracker (a ``TorchDispatchMode``; use it as a context manager)."""
    return _tracker_class()()


@dataclass(frozen=True)
class Measurement:
    peak_bytes: int
    latency_s: float
    latencies_s: tuple[float, ...]
    device: str
    malloc: str


def measure_peak(step: Callable[[], Any], persistent: Iterable, device: str = "cpu") -> int:
    """Peak live bytes of one call of ``step``; ``persistent`` are the tensors alive before it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    tracker = live_storage_tracker()
    tracker.register_all(persistent)
    with tracker:
        step()
    return tracker.peak


def measure_latency(step: Callable[[], Any], iters: int = 5, warmup: int = 1, device: str = "cpu",
                    done: Callable[[], None] | None = None) -> list[float]:
    """Wall time of ``iters`` calls of ``step`` after ``warmup`` calls (synchronised on CUDA), with
    the malloc setting :func:`ensure_malloc` gives; ``done`` is called after each call, off the clock."""
    import torch

    ensure_malloc()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    tick = done or (lambda: None)
    for _ in range(warmup):
        step()
        tick()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        tick()
    return times


def measure(step: Callable[[], Any], persistent_fn: Callable[[], Iterable], iters: int = 5, warmup: int = 1,
            device: str = "cpu") -> Measurement:
    """Latency over ``iters`` iterations after ``warmup``, then the peak of one more (a progress bar on stderr)."""
    from acir import progress

    with progress.bar("measure", total=warmup + iters + 1, unit="iter") as b:
        times = measure_latency(step, iters, warmup, device, lambda: b.update(1))
        peak = measure_peak(step, persistent_fn(), device)
        b.update(1)
    return Measurement(peak, statistics.median(times), tuple(times), device, malloc_setting())


def measure_interleaved(steps: dict[str, Callable[[], Any]], iters: int = 5, warmup: int = 1,
                        device: str = "cpu") -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall times and process CPU times of several steps run round-robin, one iteration each
    in turn, so that a drift of the machine (other load, heap growth, clocks) falls on all
    of them alike. On a shared CPU the CPU time (all threads of this process) is the figure
    that other processes disturb least; on CUDA only the wall time means anything. The
    malloc setting is :func:`ensure_malloc`'s; a progress bar on stderr names the round."""
    import torch

    from acir import progress

    ensure_malloc()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    with progress.bar("measure", total=(warmup + iters) * len(steps), unit="iter") as b:
        for it in range(warmup):
            for name, step in steps.items():
                b.set_description_str(f"measure: warm-up {it + 1}/{warmup}, {name}", refresh=False)
                step()
                b.update(1)
        sync()
        for it in range(iters):
            for name, step in steps.items():
                b.set_description_str(f"measure: round {it + 1}/{iters}, {name}", refresh=False)
                t0, c0 = time.perf_counter(), time.process_time()
                step()
                sync()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                b.update(1)
    return wall, cpu
